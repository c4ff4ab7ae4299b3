"""Serving the platform's queries (spec §11, §13.4–§13.5, §15.3), off by default.

Where the city platform can reach the gateway, ``serve_listen = "host:port"`` opens a
threaded HTTP/1.1 server (HTTPS with ``serve_cert_file``/``serve_key_file``, mutual TLS with
``serve_client_ca_file``) that answers, with the same envelope, the **inbound** secret set
(``inbound_*`` in ``[cec]`` of secrets.toml, issued by the gateway's operator to the
platform) and bearer tokens of its own:

- ``query_token`` (the platform's OperatorID and the inbound OperatorSecret), and the
  queries of :mod:`agent.uplink.cec.queries`: station info, station status (both
  spellings), BMS info, alarms, events, station / charge / discharge statistics and
  ``query_frequency``.

Checks in the receiver's order: unknown interface → HTTP 404, a body over
64 KiB → 413; not JSON or a member missing → 4003; another OperatorID → 4003; a bad token →
4002; a bad Sig → 4001; Data that does not decrypt → 4003; a request the interface cannot
use → 4004. A ``TimeStamp``/``Seq`` seen before is logged (spec §9: duplicates are logged,
not refused). Every answer is signed; nothing a caller sends reaches a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as _secrets
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from agent.uplink.cec.codec import (
    CecCodecError,
    CecSecrets,
    decode_business,
    encode_business,
    envelope_bytes,
    open_request,
    parse_envelope,
    seal_response,
)
from agent.uplink.cec.queries import Queries, TariffOf
from agent.uplink.log_limit import LogLimiter

log = logging.getLogger("agent.uplink.cec.server")

MAX_BODY_BYTES: Final = 64 * 1024
TOKEN_LIFETIME_S: Final = 7200
ANSWER_WITHIN_S: Final = 10.0
SEEN_SEQS: Final = 4096


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str
    port: int
    base_path: str
    platform_operator_id: str
    operator_secret: str
    """The inbound OperatorSecret the platform presents in ``query_token``."""
    secrets: CecSecrets
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    tariff_of: TariffOf | None = None
    """The tariff in force for a connector at a time (``query_equip_business_policy``)."""


class QueryServer:
    """The server; :meth:`start` from the uplink's loop, :meth:`stop` when it ends."""

    def __init__(
        self,
        settings: ServeSettings,
        queries: Queries,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.answered: dict[int, int] = {}
        """Answers by ``Ret`` (HTTP-level refusals are not counted here)."""
        self._queries = queries
        self.interfaces = frozenset(("query_token", *queries.handlers))
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._trouble = LogLimiter(log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if s.cert_file is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
            if s.client_ca_file is not None:
                ctx.load_verify_locations(cafile=str(s.client_ca_file))
                ctx.verify_mode = ssl.CERT_REQUIRED
        server = _Server((s.host, s.port), _Handler)
        server.queries = self
        if (
            ctx is not None
        ):  # the handshake runs in the handler thread: a stalled client blocks no one
            server.socket = ctx.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="cec-queries", daemon=True
        )
        self._thread.start()
        log.info("T/CEC queries served on %s:%d%s", s.host, self.port, s.base_path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- called from the handler threads --

    def answer_blocking(self, interface: str, body: bytes, authorization: str | None) -> bytes:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            self.answer(interface, body, authorization), self._loop
        )
        return envelope_bytes(future.result(ANSWER_WITHIN_S))

    def trouble(self, key: str, message: str, *args: object) -> None:
        self._trouble.log(logging.WARNING, key, message, *args)

    # -- on the loop --

    def _reply(self, ret: int, msg: str, reply: Any = None) -> dict[str, Any]:
        with self._lock:
            self.answered[ret] = self.answered.get(ret, 0) + 1
        plaintext = None if reply is None else encode_business(reply)
        if ret != 0:
            self.trouble(f"ret {ret}", "T/CEC query refused (Ret %d): %s", ret, msg)
        return seal_response(ret, msg, plaintext, self.settings.secrets)

    async def answer(
        self, interface: str, body: bytes, authorization: str | None
    ) -> dict[str, Any]:
        s = self.settings
        try:
            envelope = parse_envelope(body)
        except CecCodecError as exc:
            return self._reply(4003, f"POST参数不合法: {exc}")
        if envelope.get("OperatorID") != s.platform_operator_id:
            return self._reply(4003, "OperatorID没有注册")
        if interface != "query_token" and not self._token_ok(authorization):
            return self._reply(4002, "Token错误")
        try:
            opened = open_request(envelope, s.secrets)
            data = decode_business(opened.plaintext)
        except CecCodecError as exc:
            return self._reply(
                exc.ret, f"{'签名错误' if exc.ret == 4001 else '数据项Data解密失败'}: {exc}"
            )
        self._note_seq(opened.timestamp, opened.seq)
        if not isinstance(data, dict):
            return self._reply(4004, "请求的业务参数不合法: Data is not an object")
        if interface == "query_token":
            return self._issue_token(data)
        try:
            reply = await self._queries.handlers[interface](data)
        except ValueError as exc:
            return self._reply(4004, f"请求的业务参数不合法: {exc}")
        return self._reply(0, "", reply)

    def _token_ok(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            expires = self._tokens.get(authorization[7:])
        return expires is not None and expires > self._clock()

    def _note_seq(self, stamp: str, seq: str) -> None:
        with self._lock:
            again = (stamp, seq) in self._seen
            self._seen[(stamp, seq)] = None
            while len(self._seen) > SEEN_SEQS:
                self._seen.popitem(last=False)
        if again:
            self.trouble("seq", "T/CEC query with a TimeStamp/Seq seen before: %s/%s", stamp, seq)

    def _issue_token(self, data: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        if (
            data.get("OperatorID") != s.platform_operator_id
            or data.get("OperatorSecret") != s.operator_secret
        ):
            return self._reply(4003, "Data里的OperatorID或运营商密钥不对")
        token = _secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + TOKEN_LIFETIME_S
        reply = {
            "OperatorID": s.platform_operator_id,
            "SuccStat": 0,
            "AccessToken": token,
            "TokenAvailableTime": TOKEN_LIFETIME_S,
            "FailReason": 0,
        }
        return self._reply(0, "", reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    queries: QueryServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken connection (TLS handshake, reset): one line a minute, no traceback."""
        exc = sys.exc_info()[1]
        self.queries.trouble(
            "connection", "T/CEC query connection from %s failed: %r", client_address[0], exc
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 15.0
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10.0)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        queries = self.server.queries
        base = queries.settings.base_path
        path = self.path.split("?", 1)[0]
        interface = path[len(base) :] if path.startswith(base) else ""
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isdigit() else -1
        if interface not in queries.interfaces:
            self._send(404, b"unknown interface\n", close=length < 0 or length > MAX_BODY_BYTES)
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            queries.trouble("size", "T/CEC query of %s bytes refused (413)", declared)
            self._send(413, b"request too large\n", close=True)
            return
        body = self.rfile.read(length)
        try:
            payload = queries.answer_blocking(interface, body, self.headers.get("Authorization"))
        except Exception as exc:  # the loop is stopping or too slow: no answer, no traceback
            queries.trouble("failed", "T/CEC query %s not answered: %s", interface, exc)
            self._send(503, b"not answered\n", close=True)
            return
        self._send(200, payload, "application/json;charset=utf-8")

    def _send(
        self, status: int, payload: bytes, content_type: str = "text/plain", close: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)
