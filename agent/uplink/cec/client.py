"""One T/CEC 102 exchange over HTTP, hardened against a hostile or broken platform.

:meth:`CecClient.post` seals a request, sends it and returns the opened :class:`Answer`, or
raises :class:`Unusable` — a failure worth retrying, with a ``problem`` that is counted:

- ``deadline``: the whole exchange (connect, send, every byte of the answer) took longer than
  ``timeout_s``, so an answer dripping one byte every few seconds never stalls the uplink;
- ``too_large``: the answer is longer than ``max_response_bytes`` (declared or while it
  streams in; it is never held whole), or compressed (``Accept-Encoding: identity`` is asked);
- ``transport``, ``http_status``; the codec's ``envelope``, ``sig``, ``base64``, ``length``,
  ``padding``, ``utf8``, ``json`` (depth and number bombs included:
  :mod:`agent.uplink.cec.safejson`);
- ``binding``: a ``Ret 0`` answer that is not an answer to this request
  (:mod:`agent.uplink.cec.binding`).

Repeated refusals are logged at most once a minute per kind (:class:`LogLimiter`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from agent.uplink.base import UplinkStats
from agent.uplink.cec.binding import reply_problem
from agent.uplink.cec.codec import (
    RECORD_ID_HEADER,
    CecCodecError,
    SeqExhausted,
    SeqGenerator,
    decode_business,
    encode_business,
    envelope_bytes,
    open_response,
    parse_envelope,
    seal_request,
)
from agent.uplink.cec.settings import CecSettings
from agent.uplink.log_limit import LogLimiter

log = logging.getLogger("agent.uplink.cec")


class Unusable(Exception):
    """No usable answer (transport, deadline, size, envelope, Sig, binding): retry."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class TokenRefused(Exception):
    """``query_token`` answered but refused (wrong OperatorID/secret, SuccStat 1)."""


@dataclass(frozen=True, slots=True)
class Answer:
    ret: int
    msg: str
    reply: Any
    """The decoded business reply, None for ``Data ""`` (or undecodable ``Data`` on an error)."""


class CecClient:
    """Pooled keep-alive HTTP/1.1 connections to one platform, one request at a time each."""

    def __init__(
        self,
        settings: CecSettings,
        stats: UplinkStats,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.refused: Counter[str] = Counter()
        """Unusable answers by problem (``evgw status``: ``answers_refused``)."""
        self.log_limiter = LogLimiter(log)
        self._stats = stats
        self._clock = clock
        self._secrets = settings.secrets()
        self._seq = SeqGenerator()
        self._http: httpx.AsyncClient | None = None

    def _make_client(self) -> httpx.AsyncClient:
        s = self.settings
        verify: ssl.SSLContext | bool = True
        if s.base_url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.client_cert is not None:
                ctx.load_cert_chain(str(s.client_cert), str(s.client_key) if s.client_key else None)
            verify = ctx
        return httpx.AsyncClient(
            base_url=s.base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(s.timeout_s, connect=min(s.connect_timeout_s, s.timeout_s)),
            limits=httpx.Limits(max_connections=max(2, s.lanes_in_parallel + 1)),
            verify=verify,
        )

    async def open(self) -> None:
        self._http = self._make_client()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _unusable(self, problem: str, message: str) -> Unusable:
        self.refused[problem] += 1
        return Unusable(problem, message)

    async def post(
        self, interface: str, data: dict[str, Any], token: str | None, record_id: str | None
    ) -> Answer:
        """One attempt: a fresh ``TimeStamp``/``Seq``/``Sig``, the answer opened and bound."""
        if self._http is None:
            raise RuntimeError("CecClient used before open()")
        try:
            stamp, seq = self._seq.next(self._clock())
        except SeqExhausted as exc:
            raise Unusable("seq", str(exc)) from None
        s = self.settings
        envelope = seal_request(
            encode_business(data),
            operator_id=s.operator_id,
            timestamp=stamp,
            seq=seq,
            secrets=self._secrets,
        )
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "Accept-Encoding": "identity",
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if record_id is not None and s.send_record_id_header:
            headers[RECORD_ID_HEADER] = record_id
        body = await self._exchange(interface, envelope_bytes(envelope), headers)
        try:
            opened = open_response(
                parse_envelope(body),
                self._secrets,
                accept_lowercase_sig=s.accept_lowercase_sig,
                verify_sig=s.verify_response_sig,
            )
        except CecCodecError as exc:
            raise self._unusable(exc.problem, f"unusable answer ({exc.problem}): {exc}") from None
        reply = self._reply(opened.ret, opened.plaintext)
        if opened.ret == 0:
            problem = reply_problem(
                interface, data, reply, (stamp, seq), echo_required=s.reply_echoes_seq
            )
            if problem is not None:
                raise self._unusable("binding", f"answer refused: {problem}")
        return Answer(opened.ret, opened.msg, reply)

    def _reply(self, ret: int, plaintext: bytes | None) -> Any:
        if plaintext is None:
            return None
        try:
            return decode_business(plaintext)
        except CecCodecError as exc:
            if ret != 0:
                return None  # the error code is the answer; its Data is only a courtesy
            raise self._unusable(exc.problem, f"Ret 0 with unusable reply Data: {exc}") from None

    async def _exchange(self, interface: str, body: bytes, headers: dict[str, str]) -> bytes:
        """POST and read the whole answer within the deadline and the size limit."""
        assert self._http is not None
        s = self.settings
        limit = s.max_response_bytes
        try:
            async with asyncio.timeout(s.timeout_s):
                async with self._http.stream(
                    "POST", interface, content=body, headers=headers
                ) as response:
                    self._stats.connected = True
                    if response.status_code != 200:
                        raise self._unusable(
                            "http_status", f"HTTP {response.status_code} from {response.url}"
                        )
                    encoding = response.headers.get("Content-Encoding", "identity").lower()
                    if encoding != "identity":
                        raise self._unusable(
                            "too_large", f"answer compressed ({encoding}), identity was asked"
                        )
                    declared = response.headers.get("Content-Length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise self._unusable(
                            "too_large",
                            f"answer of {int(declared)} bytes declared, at most {limit} read",
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > limit:
                            raise self._unusable(
                                "too_large", f"answer longer than {limit} bytes: aborted"
                            )
                        chunks.append(chunk)
                    return b"".join(chunks)
        except TimeoutError:
            raise self._unusable(
                "deadline", f"transport error: no complete answer within {s.timeout_s:g} s, aborted"
            ) from None
        except (httpx.HTTPError, OSError) as exc:  # ssl.SSLError can escape httpx
            self._stats.connected = False
            raise self._unusable(
                "transport", f"transport error {type(exc).__name__}: {exc}"
            ) from None

    async def fetch_token(self) -> tuple[str, float]:
        """``query_token``: ``(AccessToken, TokenAvailableTime)`` or an exception that says why."""
        request = {
            "OperatorID": self.settings.operator_id,
            "OperatorSecret": self.settings.operator_secret,
        }
        try:
            answer = await self.post("query_token", request, None, None)
        except Unusable as exc:
            raise Unusable(exc.problem, f"query_token: {exc}") from None
        if answer.ret != 0:
            hint = (
                " (wrong OperatorID or OperatorSecret, or operator not registered)"
                if answer.ret == 4003
                else ""
            )
            raise TokenRefused(f"query_token answered Ret {answer.ret} {answer.msg!r}{hint}")
        reply = answer.reply if isinstance(answer.reply, dict) else {}
        token = reply.get("AccessToken")
        if reply.get("SuccStat") != 0 or not isinstance(token, str) or not token:
            raise TokenRefused(
                f"query_token refused: SuccStat {reply.get('SuccStat', '?')}, "
                f"FailReason {reply.get('FailReason', '?')}"
            )
        lifetime = reply.get("TokenAvailableTime")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
            raise TokenRefused(f"query_token answered an unusable TokenAvailableTime {lifetime!r}")
        return token, float(lifetime)
