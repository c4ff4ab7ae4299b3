"""A T/CEC 102 (Shenzhen flavour) test receiver: plays the city platform on loopback.

Serves ``query_token`` and every notification the gateway pushes, with the checks of spec
§19 in this order: unknown interface → HTTP 404; body not JSON or a member missing → 4003;
unknown OperatorID → 4003; bad or expired token → 4002; Sig mismatch → 4001; Data that does
not decrypt or parse → 4003; business object breaking the interface schema → 4004 naming the
member. Accepted objects go to SQLite, deduplicated by record identity (the gateway's record
id from the ``X-Evgw-Record-Id`` header, else the business key of spec §9). Every decoded
request is logged for tests. Faults can be injected: a forced ``Ret``, HTTP errors, dropped
connections, slow answers, lowercase or wrong Sig.

It binds 127.0.0.1 only: it is a test tool, not a platform.
"""

from __future__ import annotations

import json
import logging
import secrets as _secrets
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent.uplink.cec.codec import (
    CecCodecError,
    CecSecrets,
    decode_business,
    encode_business,
    open_request,
    parse_envelope,
    seal_response,
)
from agent.uplink.cec.rules import validate
from sim.platform_http import Handler, Server
from sim.platform_schemas import SCHEMAS, business_key, money_problem

log = logging.getLogger(__name__)


# --- configuration and faults -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """Who may call the receiver and how it answers."""

    operators: dict[str, str]
    """OperatorID → OperatorSecret of every gateway allowed to call."""
    secrets: CecSecrets
    """The secret set the platform issued to the gateways (used both ways)."""
    db_path: Path
    base_path: str = "/evcs/v1/"
    token_lifetime_s: float = 7200.0
    accept_lowercase_sig: bool = True
    unknown_operator_ret: int = 4003
    host: str = "127.0.0.1"
    port: int = 0
    tls_cert: Path | None = None
    """Serve HTTPS with this certificate chain (PEM) and ``tls_key``."""
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """Require client certificates signed by this CA (mutual TLS, as Shenzhen does)."""
    echo_seq: bool = False
    """Echo the request's ``TimeStamp`` and ``Seq`` inside every reply ``Data`` (signed and
    encrypted with it), so a gateway with ``reply_echoes_seq`` can refuse replayed answers."""


@dataclass(slots=True)
class Fault:
    """One injected fault, applied to the next ``count`` matching requests.

    ``action``: ``ret`` (answer a signed envelope with ``Ret value``), ``http`` (HTTP status
    ``value``), ``drop`` (close the connection without an answer), ``delay`` (sleep ``value``
    seconds, then answer normally), ``lowercase_sig``, ``wrong_sig``, ``status1`` (a valid
    request answered ``Ret 0`` with ``{"Status": 1}``: discarded, not stored).
    """

    action: str
    value: float = 0
    count: int = 1
    interface: str | None = None


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    """Record ids that arrived again with other content (a gateway reusing an id)."""
    rets: dict[int, int] = field(default_factory=dict)


class PlatformReceiver:
    """The receiver's logic and storage, independent of the HTTP server around it."""

    def __init__(self, settings: PlatformSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._tokens: dict[str, tuple[str, float]] = {}
        self._db = sqlite3.connect(settings.db_path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS accepted (
                identity TEXT PRIMARY KEY, interface TEXT NOT NULL, operator_id TEXT NOT NULL,
                record_id TEXT, data TEXT NOT NULL, received_at REAL NOT NULL,
                copies INTEGER NOT NULL DEFAULT 1, n INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS conflicts (
                n INTEGER PRIMARY KEY, identity TEXT NOT NULL, record_id TEXT NOT NULL,
                data TEXT NOT NULL, received_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS requests (
                n INTEGER PRIMARY KEY, interface TEXT NOT NULL, operator_id TEXT, time_stamp TEXT,
                seq TEXT, data TEXT, ret INTEGER NOT NULL, msg TEXT, received_at REAL NOT NULL);
            """
        )

    # -- knobs used by tests and technicians --

    def inject(
        self, action: str, value: float = 0, count: int = 1, interface: str | None = None
    ) -> None:
        with self._lock:
            self._faults.append(Fault(action, value, count, interface))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- queries for assertions --

    def accepted(self, interface: str | None = None) -> list[dict[str, Any]]:
        """Accepted business objects in arrival order (one per identity)."""
        sql = "SELECT interface, record_id, data, copies FROM accepted"
        args: tuple[Any, ...] = ()
        if interface is not None:
            sql, args = sql + " WHERE interface = ?", (interface,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY n", args).fetchall()
        return [
            {"interface": i, "record_id": r, "data": decode_business(d.encode()), "copies": c}
            for i, r, d, c in rows
        ]

    def requests(self, interface: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT interface, ret, msg, data FROM requests"
        args: tuple[Any, ...] = ()
        if interface is not None:
            sql, args = sql + " WHERE interface = ?", (interface,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY n", args).fetchall()
        return [{"interface": i, "ret": r, "msg": m, "data": d} for i, r, m, d in rows]

    # -- request handling --

    def take_fault(self, interface: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.interface in (None, interface) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _reply(
        self,
        ret: int,
        msg: str,
        reply: Any,
        fault: Fault | None,
        request: tuple[str, str, str, str, str],
    ) -> dict[str, Any]:
        interface, operator_id, stamp, seq, data = request
        if reply is not None and self.settings.echo_seq:
            reply = {**reply, "TimeStamp": stamp, "Seq": seq}
        plaintext = None if reply is None else encode_business(reply)
        envelope = seal_response(ret, msg, plaintext, self.settings.secrets)
        if fault is not None and fault.action == "lowercase_sig":
            envelope["Sig"] = envelope["Sig"].lower()
        elif fault is not None and fault.action == "wrong_sig":
            envelope["Sig"] = "0" * 32
        with self._lock:
            self.stats.requests += 1
            self.stats.rets[ret] = self.stats.rets.get(ret, 0) + 1
            self._db.execute(
                "INSERT INTO requests"
                " (interface, operator_id, time_stamp, seq, data, ret, msg, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (interface, operator_id, stamp, seq, data, ret, msg, self.clock()),
            )
        return envelope

    def handle(
        self,
        interface: str,
        body: bytes,
        authorization: str | None,
        record_id: str | None,
        fault: Fault | None,
    ) -> dict[str, Any]:
        """Answer one request (the HTTP layer already routed it and applied transport faults)."""
        meta = (interface, "", "", "", "")
        try:
            envelope = parse_envelope(body)
        except CecCodecError as exc:
            return self._reply(4003, f"POST参数不合法: {exc}", None, fault, meta)
        missing = [
            m
            for m in ("OperatorID", "Data", "TimeStamp", "Seq", "Sig")
            if not isinstance(envelope.get(m), str) or not envelope.get(m)
        ]
        if missing:
            return self._reply(
                4003, f"POST参数不合法: missing {', '.join(missing)}", None, fault, meta
            )
        operator_id = envelope["OperatorID"]
        meta = (interface, operator_id, envelope["TimeStamp"], envelope["Seq"], "")
        if operator_id not in self.settings.operators:
            return self._reply(
                self.settings.unknown_operator_ret, "OperatorID没有注册", None, fault, meta
            )
        if fault is not None and fault.action == "ret":
            return self._reply(int(fault.value), "injected fault", None, fault, meta)
        if interface != "query_token" and not self._token_ok(authorization, operator_id):
            return self._reply(4002, "Token错误", None, fault, meta)
        try:
            opened = open_request(
                envelope,
                self.settings.secrets,
                accept_lowercase_sig=self.settings.accept_lowercase_sig,
            )
        except CecCodecError as exc:
            if exc.problem == "sig":
                return self._reply(4001, f"签名错误: {exc}", None, fault, meta)
            return self._reply(4003, f"数据项Data解密失败: {exc}", None, fault, meta)
        text = opened.plaintext.decode("utf-8", "replace")
        meta = (interface, operator_id, opened.timestamp, opened.seq, text)
        try:
            data = decode_business(opened.plaintext)
        except CecCodecError as exc:
            return self._reply(4003, f"数据项Data解密失败: {exc}", None, fault, meta)
        problem = validate(data, SCHEMAS[interface]) or money_problem(interface, data)
        if problem:
            return self._reply(4004, f"请求的业务参数不合法: {problem}", None, fault, meta)
        if interface == "query_token":
            return self._issue_token(data, operator_id, fault, meta)
        if fault is not None and fault.action == "status1":
            return self._reply(0, "", {"Status": 1}, fault, meta)
        identity = (
            f"{interface}|{record_id}"
            if record_id
            else f"{interface}|{business_key(interface, data, opened.plaintext)}"
        )
        self._store(identity, interface, operator_id, record_id, text)
        return self._reply(0, "", self._business_reply(interface, data), fault, meta)

    def _token_ok(self, authorization: str | None, operator_id: str) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            entry = self._tokens.get(authorization[7:])
        return entry is not None and entry[0] == operator_id and entry[1] > self.clock()

    def _issue_token(
        self,
        data: dict[str, Any],
        operator_id: str,
        fault: Fault | None,
        meta: tuple[str, str, str, str, str],
    ) -> dict[str, Any]:
        if (
            data["OperatorID"] != operator_id
            or self.settings.operators.get(operator_id) != data["OperatorSecret"]
        ):
            return self._reply(4003, "Data里的OperatorID或运营商密钥不对", None, fault, meta)
        token = _secrets.token_urlsafe(32)
        lifetime = self.settings.token_lifetime_s
        with self._lock:
            now = self.clock()
            self._tokens = {t: e for t, e in self._tokens.items() if e[1] > now}
            self._tokens[token] = (operator_id, now + lifetime)
        reply = {
            "OperatorID": operator_id,
            "SuccStat": 0,
            "AccessToken": token,
            "TokenAvailableTime": int(lifetime),
            "FailReason": 0,
        }
        return self._reply(0, "", reply, fault, meta)

    def _store(
        self, identity: str, interface: str, operator_id: str, record_id: str | None, text: str
    ) -> None:
        with self._lock:
            known = self._db.execute(
                "SELECT data FROM accepted WHERE identity = ?", (identity,)
            ).fetchone()
            if known is not None and record_id and known[0] != text:
                # dedupe is on the record id: the same id with other content is not a copy
                self.stats.conflicts += 1
                self._db.execute(
                    "INSERT INTO conflicts (identity, record_id, data, received_at)"
                    " VALUES (?, ?, ?, ?)",
                    (identity, record_id, text, self.clock()),
                )
                log.warning("record id %s arrived again with other content (kept both)", record_id)
                return
            self._db.execute(
                "INSERT INTO accepted"
                " (identity, interface, operator_id, record_id, data, received_at, n)"
                " VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(n), 0) + 1 FROM accepted))"
                " ON CONFLICT(identity) DO UPDATE SET copies = copies + 1",
                (identity, interface, operator_id, record_id, text, self.clock()),
            )
            copies = self._db.execute(
                "SELECT copies FROM accepted WHERE identity = ?", (identity,)
            ).fetchone()[0]
            if copies > 1:
                self.stats.duplicates += 1
                log.info("duplicate %s (%d copies)", identity, copies)
            else:
                self.stats.accepted += 1

    def _business_reply(self, interface: str, data: dict[str, Any]) -> dict[str, Any]:
        if interface == "notification_charge_order_info":
            return {
                "StartChargeSeq": data["StartChargeSeq"],
                "ConnectorID": data["ConnectorID"],
                "ConfirmResult": 0,
            }
        if interface == "notification_equip_charge_status":
            return {"StartChargeSeq": data["StartChargeSeq"], "SuccStat": 0}
        if interface == "check_charge_orders":
            with self._lock:
                known = {
                    json.loads(row[0])["StartChargeSeq"]
                    for row in self._db.execute(
                        "SELECT data FROM accepted"
                        " WHERE interface = 'notification_charge_order_info'"
                    )
                }
            disputes = [
                {
                    "StartChargeSeq": o["StartChargeSeq"],
                    "TotalPower": o["TotalPower"],
                    "TotalMoney": o["TotalMoney"],
                    "DisputeReason": 1,
                }
                for o in data["ChargeOrders"]
                if o["StartChargeSeq"] not in known
            ]
            return {
                "CheckOrderSeq": data["CheckOrderSeq"],
                "StartTime": data["StartTime"],
                "EndTime": data["EndTime"],
                "TotalDisputeOrder": len(disputes),
                "TotalDisputePower": sum((d["TotalPower"] for d in disputes), Decimal(0)),
                "TotalDisputeMoney": sum((d["TotalMoney"] for d in disputes), Decimal(0)),
                "DisputeOrders": disputes,
            }
        return {"Status": 0}


class PlatformServer:
    """The receiver behind a threaded HTTP/1.1 server on 127.0.0.1 (keep-alive supported)."""

    def __init__(self, settings: PlatformSettings, clock: Callable[[], float] = time.time) -> None:
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the test receiver binds loopback only, not {settings.host}")
        self.receiver = PlatformReceiver(settings, clock)
        self._server = Server((settings.host, settings.port), Handler)
        self._server.receiver = self.receiver
        if settings.tls_cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(
                str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None
            )
            if settings.tls_client_ca is not None:
                ctx.load_verify_locations(cafile=str(settings.tls_client_ca))
                ctx.verify_mode = ssl.CERT_REQUIRED
            # the handshake runs in the handler thread, so a stalled client blocks no one
            self._server.socket = ctx.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.receiver.settings.tls_cert is not None else "http"
        return f"{scheme}://{self.receiver.settings.host}:{self.port}{self.receiver.settings.base_path}"

    def start(self) -> PlatformServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cec-platform", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
        self.receiver.close()
