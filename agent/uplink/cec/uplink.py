"""The T/CEC 102 uplink: ledger records → city platform notifications over HTTPS.

One loop reads the next batch after the ``cec`` cursor, maps each record to its notification
(:mod:`agent.uplink.cec.mapping`), sends the records of each connector strictly in order
(connectors in parallel, one pooled HTTP/1.1 connection each), and acknowledges the batch
once every record in it got ``Ret 0`` or was parked:

- transport errors, non-200, unreadable or badly signed answers, ``Ret -1`` and ``Ret 500``
  are retried forever with capped, fully jittered backoff;
- ``Ret 4002``: drop the token, fetch a new one, resend once; a second 4002 alarms and backs
  off (the record stays queued);
- ``Ret 4001`` (our Sig refused) is a configuration problem that affects every record: alarm
  and back off, never park;
- ``Ret 4003``, ``4004`` and any other code park the record in the ledger with the reason and
  append an ``event`` record (``uplink_record_parked``) so the operator sees it; later
  records are not blocked.

A ticker pushes ``notification_equip_charge_status`` every 50 s for connectors that are
charging, and once a day between 00:00 and 03:00 China time sends ``check_charge_orders``
for the previous day.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from agent.config.section import default_of
from agent.records.bodies import (
    BodyError,
    ConnectorStatusBody,
    EventBody,
    body_to_dict,
    decode_body,
)
from agent.records.envelope import Record, StoredRecord, iso_ts, parse_iso_ts
from agent.uplink.base import UplinkStats
from agent.uplink.cec.codec import (
    CHINA_TZ,
    RECORD_ID_HEADER,
    CecCodecError,
    CecSecrets,
    OpenedResponse,
    SeqExhausted,
    SeqGenerator,
    decode_business,
    encode_business,
    envelope_bytes,
    open_response,
    parse_envelope,
    seal_request,
)
from agent.uplink.cec.config import CecSection
from agent.uplink.cec.mapping import (
    ALL_INTERFACES,
    CHARGE_STATUS,
    CHECK_ORDERS,
    MappingContext,
    Notification,
    check_charge_orders,
    china_day_bounds,
    equip_charge_status,
    notification_for,
)
from agent.uplink.cec.token import FAILURE_BACKOFF_S, TokenManager, TokenUnavailable
from agent.uplink.retry import Backoff, RetryState

if TYPE_CHECKING:
    from agent.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CecSettings:
    """Everything the T/CEC uplink needs; the plug-in fills it from ``[uplinks.cec]``, whose
    defaults these are (one set of defaults: :func:`agent.config.section.default_of`)."""

    base_url: str
    """Platform base including its version path, e.g. ``https://host/shevcs/v1.0/``."""
    operator_id: str
    """Own OperatorID (9 characters)."""
    platform_operator_id: str
    operator_secret: str
    data_secret: str
    data_iv: str
    sig_secret: str
    station_id: str
    station_name: str
    equipment_owner_id: str = ""
    """Defaults to ``operator_id``."""
    interfaces: frozenset[str] = frozenset(default_of(CecSection, "interfaces"))
    connect_timeout_s: float = 5.0
    timeout_s: float = default_of(CecSection, "request_timeout_s")
    batch_size: int = default_of(CecSection, "batch_size")
    lanes_in_parallel: int = 4
    poll_s: float = 1.0
    charge_status_interval_s: float = default_of(CecSection, "status_interval_s")
    retry_initial_s: float = 1.0
    retry_cap_s: float = default_of(CecSection, "retry_max_s")
    token_retry_s: tuple[float, ...] = FAILURE_BACKOFF_S
    key_as_iv: bool = default_of(CecSection, "iv_equals_key")
    """Shenzhen 2020 quirk: the DataSecret is also the IV."""
    accept_lowercase_sig: bool = default_of(CecSection, "accept_lowercase_sig")
    verify_response_sig: bool = True
    integer_status_values: bool = True
    send_record_id_header: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    uplink_name: str = "cec"

    def __post_init__(self) -> None:
        if len(self.operator_id) != 9:
            raise ValueError(f"operator_id must be 9 characters, got {self.operator_id!r}")
        unknown = self.interfaces - ALL_INTERFACES
        if unknown:
            raise ValueError(
                f"unknown interfaces {sorted(unknown)}; known: {sorted(ALL_INTERFACES)}"
            )

    def secrets(self) -> CecSecrets:
        iv = self.data_secret if self.key_as_iv else self.data_iv
        return CecSecrets(self.data_secret, iv, self.sig_secret)


class _Transient(Exception):
    """A failure worth retrying: transport, HTTP status, unreadable or badly signed answer."""


class _TokenRefused(Exception):
    """``query_token`` answered but refused (wrong OperatorID/secret, SuccStat 1)."""


@dataclass(slots=True)
class CecCounters:
    charge_status_pushes: int = 0
    reconciliations: int = 0
    disputed_orders: int = 0
    discarded: int = 0
    """Pushes the platform accepted with ``Status 1`` (discarded, do not retry)."""
    live: dict[str, tuple[float, ConnectorStatusBody]] = field(default_factory=dict)


class CecUplink:
    """The T/CEC 102 client loop; ``run()`` until cancelled, ``stats`` for status/metrics."""

    def __init__(
        self,
        settings: CecSettings,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.uplink_name
        self.stats = UplinkStats()
        self.counters = CecCounters()
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._transport = transport
        self._secrets = settings.secrets()
        self._seq = SeqGenerator()
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_cap_s)
        self._ctx = MappingContext(
            operator_id=settings.operator_id,
            equipment_owner_id=settings.equipment_owner_id or settings.operator_id,
            station_name=settings.station_name,
            integer_status_values=settings.integer_status_values,
        )
        self.tokens = TokenManager(self._fetch_token, clock, settings.token_retry_s)
        self._http: httpx.AsyncClient | None = None
        self._last_reconciled_day: _dt.date | None = None

    def status(self) -> dict[str, Any]:
        """Counters plus how long the current token stays valid."""
        token = self.tokens.token
        valid_s = round(token.expires_at - self._clock()) if token is not None else None
        return {**self.stats.as_dict(), "token_valid_s": valid_s}

    # -- lifecycle ---------------------------------------------------------------------------

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
            timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            limits=httpx.Limits(max_connections=max(2, s.lanes_in_parallel + 1)),
            verify=verify,
            transport=self._transport,
        )

    async def __aenter__(self) -> CecUplink:
        self._http = self._make_client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def run(self) -> None:
        """Drain the ledger to the platform until cancelled."""
        async with self:
            ticker = asyncio.create_task(self._ticker(), name=f"{self.name}-ticker")
            try:
                await self._drain_forever()
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)

    async def _drain_forever(self) -> None:
        self.stats.backlog = await self._ledger.backlog(self.name)
        while True:
            if not await self.drain_once():
                await self._ledger.wait_appended(self._ledger.last_seq, self.settings.poll_s)

    async def drain_once(self) -> bool:
        """Send and acknowledge one batch; False when there was nothing to send."""
        batch = await self._ledger.read_batch(self.name, self.settings.batch_size)
        if not batch:
            self.stats.backlog = await self._ledger.backlog(self.name)
            return False
        await self._deliver_batch(batch)
        await self._ledger.ack(self.name, batch[-1].seq)
        self.stats.acked += len(batch)
        self.stats.backlog = await self._ledger.backlog(self.name)
        return True

    # -- batches and lanes -------------------------------------------------------------------

    async def _deliver_batch(self, batch: list[StoredRecord]) -> None:
        lanes: dict[str, list[tuple[StoredRecord, Notification]]] = {}
        for record in batch:
            try:
                note = notification_for(record, self._ctx)
            except BodyError as exc:
                await self._park(record, f"record body breaks its schema: {exc}")
                continue
            if note is None or note.interface not in self.settings.interfaces:
                continue
            lanes.setdefault(note.lane, []).append((record, note))
        gate = asyncio.Semaphore(max(1, self.settings.lanes_in_parallel))

        async def run_lane(items: list[tuple[StoredRecord, Notification]]) -> None:
            async with gate:
                for record, note in items:
                    await self._deliver(record, note)

        await asyncio.gather(*(run_lane(items) for items in lanes.values()))
        for record in batch:
            if record.kind == "connector_status" and record.connector_id:
                body = decode_body("connector_status", record.body)
                self.counters.live[record.connector_id] = (parse_iso_ts(record.ts), body)

    async def _deliver(self, record: StoredRecord, note: Notification) -> None:
        """Send one notification until it is acknowledged or parked."""
        plaintext = encode_business(note.data)
        self.stats.sent += 1
        retry = RetryState(self._backoff, self._rng)
        refreshed = False
        while True:
            token: str | None = None
            try:
                token = await self.tokens.get()
                resp = await self._post(note.interface, plaintext, token, note.record_id)
            except (_Transient, TokenUnavailable) as exc:
                await self._wait_retry(retry, f"{note.interface} {record.id}: {exc}")
                continue
            if resp.ret == 0:
                self._check_business_reply(note.interface, record.id, resp)
                return
            what = f"{note.interface} {record.id}: Ret {resp.ret} {resp.msg!r}"
            if resp.ret == 4002:
                self.tokens.invalidate(token)
                if not refreshed:
                    refreshed = True
                    self.stats.retries += 1
                    continue
                refreshed = False
                await self._wait_retry(retry, f"{what}: token refused again after a refresh")
            elif resp.ret in (-1, 500):
                await self._wait_retry(retry, what)
            elif resp.ret == 4001:
                await self._wait_retry(
                    retry, f"{what}: the platform refused our Sig; check sig_secret (and key_as_iv)"
                )
            else:
                await self._park(record, what)
                return

    async def _wait_retry(self, retry: RetryState, message: str) -> None:
        self.stats.retries += 1
        self.stats.error(message, self._clock())
        delay = retry.next_delay()
        log.warning("T/CEC retry in %.1f s: %s", delay, message)
        await self._sleep(delay)

    def _check_business_reply(self, interface: str, record_id: str, resp: OpenedResponse) -> None:
        if resp.plaintext is None:
            return
        try:
            reply = decode_business(resp.plaintext)
        except CecCodecError as exc:
            log.warning(
                "T/CEC %s %s: reply Data unreadable (%s); counted as delivered",
                interface,
                record_id,
                exc,
            )
            return
        if not isinstance(reply, dict):
            return
        if reply.get("Status") == 1:
            self.counters.discarded += 1
            log.info(
                "T/CEC %s %s: platform answered Status 1 (discarded, not retried)",
                interface,
                record_id,
            )
        if reply.get("ConfirmResult") not in (None, 0):
            self.counters.disputed_orders += 1
            log.warning(
                "T/CEC %s %s: order ConfirmResult %s (disputed)",
                interface,
                record_id,
                reply["ConfirmResult"],
            )

    async def _park(self, record: StoredRecord, reason: str) -> None:
        await self._ledger.park(self.name, record.seq, reason)
        self.stats.parked += 1
        self.stats.error(f"parked {record.id}: {reason}", self._clock())
        log.error("T/CEC parked %s (%s): %s", record.id, record.kind, reason)
        event = EventBody(
            event="uplink_record_parked",
            message=f"{self.name} uplink parked record {record.id}: {reason}"[:255],
            details={"uplink": self.name, "seq": record.seq, "kind": record.kind, "reason": reason},
        )
        await self._ledger.append(
            Record(
                kind="event",
                ts=iso_ts(self._clock()),
                station_id=self.settings.station_id,
                body=body_to_dict(event),
            )
        )

    # -- HTTP --------------------------------------------------------------------------------

    async def _post(
        self, interface: str, plaintext: bytes, token: str | None, record_id: str | None
    ) -> OpenedResponse:
        if self._http is None:
            raise RuntimeError("CecUplink used outside `async with` / run()")
        try:
            stamp, seq = self._seq.next(self._clock())
        except SeqExhausted as exc:
            raise _Transient(str(exc)) from None
        envelope = seal_request(
            plaintext,
            operator_id=self.settings.operator_id,
            timestamp=stamp,
            seq=seq,
            secrets=self._secrets,
        )
        headers = {"Content-Type": "application/json;charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if record_id is not None and self.settings.send_record_id_header:
            headers[RECORD_ID_HEADER] = record_id
        try:
            response = await self._http.post(
                interface, content=envelope_bytes(envelope), headers=headers
            )
        except (httpx.HTTPError, OSError) as exc:  # ssl.SSLError can escape httpx
            self.stats.connected = False
            raise _Transient(f"transport error {type(exc).__name__}: {exc}") from None
        self.stats.connected = True
        if response.status_code != 200:
            raise _Transient(f"HTTP {response.status_code} from {response.url}")
        try:
            return open_response(
                parse_envelope(response.content),
                self._secrets,
                accept_lowercase_sig=self.settings.accept_lowercase_sig,
                verify_sig=self.settings.verify_response_sig,
            )
        except CecCodecError as exc:
            raise _Transient(f"unusable answer ({exc.problem}): {exc}") from None

    async def _fetch_token(self) -> tuple[str, float]:
        request = {
            "OperatorID": self.settings.operator_id,
            "OperatorSecret": self.settings.operator_secret,
        }
        try:
            resp = await self._post("query_token", encode_business(request), None, None)
        except _Transient as exc:
            raise _Transient(f"query_token: {exc}") from None
        if resp.ret != 0:
            hint = (
                " (wrong OperatorID or OperatorSecret, or operator not registered)"
                if resp.ret == 4003
                else ""
            )
            raise _TokenRefused(f"query_token answered Ret {resp.ret} {resp.msg!r}{hint}")
        reply = decode_business(resp.plaintext or b"{}")
        token = reply.get("AccessToken") if isinstance(reply, dict) else None
        if not isinstance(reply, dict) or reply.get("SuccStat") != 0 or not token:
            succ = reply.get("SuccStat") if isinstance(reply, dict) else "?"
            reason = reply.get("FailReason") if isinstance(reply, dict) else "?"
            raise _TokenRefused(f"query_token refused: SuccStat {succ}, FailReason {reason}")
        lifetime = reply.get("TokenAvailableTime")
        if not isinstance(lifetime, int) or lifetime <= 0:
            raise _TokenRefused(f"query_token answered an unusable TokenAvailableTime {lifetime!r}")
        return str(token), float(lifetime)

    # -- periodic pushes ---------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await self._sleep(self.settings.charge_status_interval_s)
            try:
                await self.push_charge_status()
                now = self._clock()
                today = _dt.datetime.fromtimestamp(now, tz=CHINA_TZ)
                due = today.hour < 3 and self._last_reconciled_day != today.date()
                if due and await self.reconcile_orders(now):
                    self._last_reconciled_day = today.date()
            except Exception:  # a bug in a periodic push must not stop record delivery
                log.exception("T/CEC periodic push failed")

    async def push_charge_status(self) -> int:
        """``notification_equip_charge_status`` for every connector charging now; returns the
        number of pushes accepted. One attempt each: the next sample supersedes a lost one."""
        if CHARGE_STATUS not in self.settings.interfaces:
            return 0
        now = self._clock()
        fresh_s = 3 * self.settings.charge_status_interval_s
        accepted = 0
        for connector_id, (ts, body) in list(self.counters.live.items()):
            data = equip_charge_status(connector_id, body, now, self._ctx)
            if data is None or now - ts > fresh_s:
                continue
            if await self._one_shot(CHARGE_STATUS, data):
                accepted += 1
                self.counters.charge_status_pushes += 1
        return accepted

    async def reconcile_orders(self, now: float | None = None) -> bool:
        """Send ``check_charge_orders`` for the previous China-time day; True once accepted."""
        if CHECK_ORDERS not in self.settings.interfaces:
            return True
        start, end = china_day_bounds(self._clock() if now is None else now)
        orders = await self._ledger.find("charge_order")
        data = check_charge_orders(orders, start, end, self._ctx)
        if not await self._one_shot(CHECK_ORDERS, data):
            return False
        self.counters.reconciliations += 1
        return True

    async def _one_shot(self, interface: str, data: dict[str, Any]) -> bool:
        plaintext = encode_business(data)
        for _ in range(2):  # a second round only after a 4002 and a token refresh
            try:
                token = await self.tokens.get()
                resp = await self._post(interface, plaintext, token, None)
            except (_Transient, TokenUnavailable) as exc:
                self.stats.error(f"{interface}: {exc}", self._clock())
                return False
            if resp.ret == 4002:
                self.tokens.invalidate(token)
                continue
            if resp.ret != 0:
                self.stats.error(f"{interface}: Ret {resp.ret} {resp.msg!r}", self._clock())
                return False
            if interface == CHECK_ORDERS and resp.plaintext:
                reply = decode_business(resp.plaintext)
                disputed = reply.get("TotalDisputeOrder", 0) if isinstance(reply, dict) else 0
                if disputed:
                    log.warning(
                        "T/CEC check_charge_orders: %s disputed orders: %s",
                        disputed,
                        reply.get("DisputeOrders"),
                    )
            return True
        return False
