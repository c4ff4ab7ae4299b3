"""The T/CEC 102 uplink: ledger records → city platform notifications over HTTPS.

One loop reads the next batch after the ``cec`` cursor, maps each record to its notification
(:mod:`agent.uplink.cec.mapping`) and acknowledges the batch once every record in it was
accepted or parked:

- **registration first**: the batch's ``identity`` records go before anything else, and no
  connector lane sends until the station's current identity is accepted (at every start the
  newest identity is confirmed once); a record answered ``Status 1`` (discarded) is sent
  again once after a re-registration, then parked with the reason;
- then the records of each connector strictly in order, connectors in parallel over pooled
  keep-alive connections;
- transport errors, non-200, answers that are late, too long, unreadable, badly signed or
  not bound to their request (:mod:`agent.uplink.cec.client`), ``Ret -1`` and ``Ret 500``
  are retried forever with capped, fully jittered backoff;
- ``Ret 4002``: a new token, resend once; a second 4002 backs off (the record stays queued);
- ``Ret 4001`` (our Sig refused): back off, never park, and alarm 27 at once;
- a code in ``park_peer_on`` (4003) parks the **platform** (:mod:`agent.uplink.cec.peer`):
  probes every ``probe_interval_s``, then the queue resumes in order;
- ``Ret 4004`` and any other code park the **record** with the platform's message and an
  ``uplink_record_parked`` event; ``evgw uplink resend`` releases it
  (:mod:`agent.uplink.cec.resend`).

Alarm 27 is raised when the platform has failed for ``link_alarm_after_s`` and cleared when
it accepts again. The timed pushes are in :mod:`agent.uplink.cec.periodic`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from agent.records.bodies import BodyError, EventBody, body_to_dict, decode_body
from agent.records.envelope import Record, StoredRecord, iso_ts, parse_iso_ts
from agent.uplink.base import UplinkStats
from agent.uplink.cec.client import Answer, CecClient, Unusable
from agent.uplink.cec.mapping import STATION_INFO, MappingContext, Notification, notification_for
from agent.uplink.cec.peer import LinkWatch, PeerGate, link_alarm_records
from agent.uplink.cec.periodic import CecCounters, Periodic
from agent.uplink.cec.queries import Queries
from agent.uplink.cec.reconcile import DoneMarks, Reconciler
from agent.uplink.cec.resend import Resender
from agent.uplink.cec.server import QueryServer, ServeSettings
from agent.uplink.cec.settings import CecSettings
from agent.uplink.cec.token import TokenManager, TokenUnavailable
from agent.uplink.retry import Backoff, RetryState

if TYPE_CHECKING:
    from agent.ledger import Ledger

__all__ = ["CecSettings", "CecUplink"]

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DISCARDED = "discarded"
    """``Ret 0`` with ``Status 1``: the platform dropped it (not retried by the standard)."""
    PARKED = "parked"


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
        serve: ServeSettings | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.uplink_name
        self.stats = UplinkStats()
        self.counters = CecCounters()
        self._ledger = ledger
        self._clock = clock

        self.sleep = sleep
        """How the uplink sleeps (injected by tests)."""
        self._rng = rng or random.Random()
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_cap_s)
        self._ctx = MappingContext(
            operator_id=settings.operator_id,
            equipment_owner_id=settings.equipment_owner_id or settings.operator_id,
            station_name=settings.station_name,
            integer_status_values=settings.integer_status_values,
            unknown_fields_member=settings.unknown_fields_member,
            project_carriers=settings.project_carriers,
        )
        self.client = CecClient(settings, self.stats, clock)
        self.tokens = TokenManager(
            self.client.fetch_token, clock, settings.token_retry_s, settings.token_refresh_margin_s
        )
        self.peer = PeerGate()
        self.link = LinkWatch(settings.link_alarm_after_s)
        self.registered = STATION_INFO not in settings.interfaces
        self.parked_now = 0
        """Records parked for this uplink in the ledger (kept up to date as they change)."""
        self._parked_identities: set[int] = set()
        reconciler = Reconciler(
            ledger,
            self._ctx,
            self._one_shot,
            self.record_event,
            DoneMarks(settings.reconcile_marks, settings.catch_up_days),
            settings.catch_up_days,
        )
        self.periodic = Periodic(
            settings.interfaces,
            settings.charge_status_interval_s,
            self._ctx,
            self._one_shot,
            self.counters,
            reconciler,
            settings.cadence_file,
        )
        self.resender = Resender(self, ledger)
        tariff_of = serve.tariff_of if serve else None
        queries = Queries(ledger, self._ctx, settings.station_id, settings.connectors,
                          self.set_frequency, tariff_of, clock)  # fmt: skip
        self.queries = QueryServer(serve, queries, clock) if serve else None
        """The server of the platform's queries, when ``serve_listen`` is set."""

    def status(self) -> dict[str, Any]:
        """Counters, registration and peer state, refused answers, the token's life left."""
        token = self.tokens.token
        valid_s = round(token.expires_at - self._clock()) if token is not None else None
        return {
            **self.stats.as_dict(),
            "parked_now": self.parked_now,
            "registered": self.registered,
            "peer": "open" if self.peer.is_open else "parked",
            "peer_parked_reason": self.peer.reason,
            "link_alarm": self.link.raised,
            "token_valid_s": valid_s,
            "answers_refused": dict(self.client.refused),
        }

    async def parked_records(self) -> dict[str, Any]:
        """``evgw uplink parked``: the records parked for this uplink, with the reasons."""
        return await self.resender.parked()

    async def resend(self, request: dict[str, Any]) -> dict[str, Any]:
        """``evgw uplink resend``: release and queue the selected records (ValueError if the
        selection is wrong); the loop sends them and records the outcome as an event."""
        return await self.resender.request(request)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> CecUplink:
        await self.client.open()
        if self._ledger is not None:  # `evgw check` asks for a token without a ledger
            self.link.restore(await self._ledger.find("alarm", limit=500, newest_first=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def run(self) -> None:
        """Drain the ledger to the platform until cancelled."""
        async with self:
            self._start_queries()
            ticker = asyncio.create_task(self._ticker(), name=f"{self.name}-ticker")
            try:
                await self._drain_forever()
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                if self.queries is not None:
                    self.queries.stop()

    def _start_queries(self) -> None:
        """Serve the platform's queries; a port in use or a bad certificate is logged and
        costs the queries only, never the uplink."""
        if self.queries is None:
            return
        try:
            self.queries.start()
        except (OSError, ssl.SSLError) as exc:
            s = self.queries.settings
            log.error("cannot serve T/CEC queries on %s:%d: %s", s.host, s.port, exc)
            self.queries = None

    async def _drain_forever(self) -> None:
        self.stats.backlog = await self._ledger.backlog(self.name)
        self.parked_now = await self._ledger.parked_count(self.name)
        while True:
            await self.resender.run_pending()
            if not await self.drain_once():
                await self._ledger.wait_appended(self._ledger.last_seq, self.settings.poll_s)

    async def drain_once(self) -> bool:
        """Send and acknowledge one batch; False when there was nothing to send."""
        batch = await self._ledger.read_batch(self.name, self.settings.batch_size)
        if not batch:
            self.stats.backlog = await self._ledger.backlog(self.name)
            return False
        await self._deliver_batch(list(batch))
        await self._ledger.ack(self.name, batch[-1].seq)
        self.stats.acked += len(batch)
        self.stats.backlog = await self._ledger.backlog(self.name)
        return True

    # -- batches, registration, lanes --------------------------------------------------------

    async def _deliver_batch(self, batch: list[StoredRecord]) -> None:
        for record in (r for r in batch if r.kind == "identity"):
            outcome = await self.deliver(record)
            if outcome is Outcome.PARKED:
                self._parked_identities.add(record.seq)
            if outcome is not None:
                self.registered = outcome is Outcome.ACCEPTED
        await self._register()
        rest = [r for r in batch if r.kind != "identity"]
        lanes: dict[str, list[StoredRecord]] = {}
        for record in rest:
            lane = record.connector_id or record.equipment_id or "station"
            lanes.setdefault(lane, []).append(record)
        gate = asyncio.Semaphore(max(1, self.settings.lanes_in_parallel))
        discarded: list[StoredRecord] = []

        async def run_lane(records: list[StoredRecord]) -> None:
            async with gate:
                for record in records:
                    if await self.deliver(record) is Outcome.DISCARDED:
                        discarded.append(record)

        await asyncio.gather(*(run_lane(records) for records in lanes.values()))
        if discarded:
            await self._deliver_discarded(sorted(discarded, key=lambda r: r.seq))
        for record in rest:
            if record.kind == "connector_status" and record.connector_id:
                body = decode_body("connector_status", record.body)
                self.counters.live[record.connector_id] = (parse_iso_ts(record.ts), body)

    async def _register(self) -> None:
        """Until the station's newest identity is accepted (nothing to do if it is)."""
        while not self.registered:
            newest = await self._ledger.find("identity", newest_first=True, limit=1)
            if not newest:
                self.registered = True
                return
            record = newest[0]
            outcome = await self.deliver(record, park=record.seq not in self._parked_identities)
            if outcome is Outcome.ACCEPTED or outcome is None:
                self.registered = True
                return
            if outcome is Outcome.PARKED:
                self._parked_identities.add(record.seq)
            reason = f"station not registered: identity {record.id} {outcome.value}"
            self.stats.error(reason, self._clock())
            self._link_failing(reason)
            await self.resender.nap(self.settings.probe_interval_s)
            await self.resender.run_pending()

    async def _deliver_discarded(self, records: list[StoredRecord]) -> None:
        """Re-register, send each discarded record once more, park what is dropped again."""
        self.registered = False
        await self._register()
        for record in records:
            if await self.deliver(record) is Outcome.DISCARDED:
                await self._park(
                    record, "discarded by the platform (Status 1), again after re-registration"
                )

    async def deliver(self, record: StoredRecord, *, park: bool = True) -> Outcome | None:
        """Send one record until accepted, discarded or parked; None: not for this platform."""
        try:
            note = notification_for(record, self._ctx)
        except BodyError as exc:
            await self._park(record, f"record body breaks its schema: {exc}")
            return Outcome.PARKED
        if note is None or note.interface not in self.settings.interfaces:
            return None
        self.stats.sent += 1
        answer = await self._send(record, note)
        what = f"{note.interface} {record.id}: Ret {answer.ret} {answer.msg!r}"
        if answer.ret != 0:
            if park:
                await self._park(record, what)
            return Outcome.PARKED
        reply = answer.reply if isinstance(answer.reply, dict) else {}
        if reply.get("ConfirmResult") not in (None, 0):
            self.counters.disputed_orders += 1
            log.warning("T/CEC %s: order ConfirmResult %s (disputed)", what, reply["ConfirmResult"])
        if reply.get("Status") == 1:
            self.counters.discarded += 1
            log.warning("T/CEC %s: the platform answered Status 1 (discarded)", what)
            return Outcome.DISCARDED
        return Outcome.ACCEPTED

    # -- one notification --------------------------------------------------------------------

    async def _send(self, record: StoredRecord, note: Notification) -> Answer:
        """Until a final answer: ``Ret 0`` or a code that parks the record."""
        retry = RetryState(self._backoff, self._rng)
        refreshed = False
        probed: Answer | None = None
        while True:
            if probed is not None:
                answer, probed = probed, None
            else:
                await self.peer.wait_open()
                token: str | None = None
                try:
                    token = await self.tokens.get()
                    answer = await self.client.post(
                        note.interface, note.data, token, note.record_id
                    )
                except (Unusable, TokenUnavailable) as exc:
                    problem = exc.problem if isinstance(exc, Unusable) else "token"
                    message = f"{note.interface} {record.id}: {exc}"
                    await self._wait_retry(retry, f"{note.interface}:{problem}", message)
                    continue
            if answer.ret == 0:
                self._link_ok()
                return answer
            what = f"{note.interface} {record.id}: Ret {answer.ret} {answer.msg!r}"
            key = f"{note.interface}:Ret {answer.ret}"
            if answer.ret == 4002:
                if token is not None:
                    self.tokens.invalidate(token)
                if not refreshed:
                    refreshed = True
                    self.stats.retries += 1
                    continue
                refreshed = False
                await self._wait_retry(retry, key, f"{what}: token refused again after a refresh")
            elif answer.ret in (-1, 500):
                await self._wait_retry(retry, key, what)
            elif answer.ret == 4001:
                hint = "the platform refused our Sig: check sig_secret (and iv_equals_key)"
                self._link_failing(f"{what}: {hint}", at_once=True)
                await self._wait_retry(retry, key, f"{what}: {hint}")
            elif answer.ret in self.settings.park_peer_on:
                probed = await self._park_peer(note, what)  # None: another lane probes
                token = None
            else:
                return answer

    async def _park_peer(self, note: Notification, what: str) -> Answer | None:
        """Park the platform and probe until it answers otherwise; None if another lane did."""
        now = self._clock()
        if not self.peer.park(what, now):
            return None  # the loop waits for the gate, then sends again
        self.stats.error(f"platform parked: {what}", now)
        log.error(
            "T/CEC platform parked (%s); probing every %g s", what, self.settings.probe_interval_s
        )
        await self.record_event(
            "uplink_peer_parked", f"{self.name} platform parked: {what}", reason=what
        )
        self._link_failing(what)
        while True:
            await self.sleep(self.settings.probe_interval_s)
            try:
                token = await self.tokens.get()
                answer = await self.client.post(note.interface, note.data, token, note.record_id)
            except (Unusable, TokenUnavailable) as exc:
                self._link_failing(f"probe: {exc}")
                continue
            if answer.ret == 4002:
                self.tokens.invalidate(token)
                continue
            if answer.ret in self.settings.park_peer_on:
                self._link_failing(f"probe: Ret {answer.ret} {answer.msg!r}")
                continue
            break
        self.peer.resume()
        log.warning("T/CEC platform answers again (Ret %s): queue resumes", answer.ret)
        await self.record_event(
            "uplink_peer_resumed", f"{self.name} platform resumed after: {what}", reason=what
        )
        return answer

    async def _wait_retry(self, retry: RetryState, key: str, message: str) -> None:
        """Count, note and log (once a minute per ``key``) a failure, then back off."""
        self.stats.retries += 1
        now = self._clock()
        self.stats.error(message, now)
        self._link_failing(message)
        delay = retry.next_delay()
        self.client.log_limiter.log(
            logging.WARNING, key, "T/CEC retry in %.1f s: %s", delay, message
        )
        await self.sleep(delay)

    # -- alarm 27, parking, events -----------------------------------------------------------

    def _link_failing(self, reason: str, *, at_once: bool = False) -> None:
        if self.link.failing(self._clock(), reason, at_once=at_once):
            self._link_alarm("raised", reason)

    def _link_ok(self) -> None:
        if self.link.ok():
            self._link_alarm("cleared", "the platform accepts requests again")

    def _link_alarm(self, status: Literal["raised", "cleared"], reason: str) -> None:
        """Alarm 27 on every connector (the back-end link serves them all)."""
        s = self.settings
        for record in link_alarm_records(
            status, reason, s.link_alarm_after_s, s.station_id, s.connectors, self._clock()
        ):
            self._ledger.append_nowait(record)

    async def _park(self, record: StoredRecord, reason: str) -> None:
        await self._ledger.park(self.name, record.seq, reason)
        self.stats.parked += 1
        self.parked_now = await self._ledger.parked_count(self.name)
        self.stats.error(f"parked {record.id}: {reason}", self._clock())
        log.error("T/CEC parked %s (%s): %s", record.id, record.kind, reason)
        await self.record_event(
            "uplink_record_parked",
            f"{self.name} uplink parked record {record.id}: {reason}",
            seq=record.seq,
            kind=record.kind,
            reason=reason,
        )

    async def record_event(self, event: str, message: str, **details: Any) -> None:
        """An ``event`` record about this uplink (parking, resends) in the ledger."""
        body = EventBody(
            event=event, message=message[:255], details={"uplink": self.name, **details}
        )
        await self._ledger.append(
            Record(
                kind="event",
                ts=iso_ts(self._clock()),
                station_id=self.settings.station_id,
                body=body_to_dict(body),
            )
        )

    # -- periodic pushes ---------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await self.sleep(self.periodic.interval_s)
            try:
                if self.link.check(self._clock()):
                    self._link_alarm("raised", self.link.reason)
                if self.peer.is_open and self.registered:
                    await self.periodic.tick(self._clock())
            except Exception:  # a bug in a periodic push must not stop record delivery
                log.exception("T/CEC periodic push failed")

    async def set_frequency(self, seconds: int) -> bool:
        """``query_frequency``: the platform sets the push cadence (kept across restarts)."""
        before = self.periodic.interval_s
        if not self.periodic.set_interval(seconds):
            return False
        await self.record_event(
            "push_frequency_changed",
            f"{self.name}: the platform set the push cadence to {seconds} s (was {before:g} s)",
            interval_s=seconds,
            previous_s=before,
        )
        return True

    async def push_charge_status(self) -> int:
        """``notification_equip_charge_status`` for every connector charging now."""
        return await self.periodic.push_charge_status(self._clock())

    async def reconcile_orders(self, now: float | None = None) -> bool:
        """``check_charge_orders`` for the previous China-time day; True once accepted."""
        return await self.periodic.reconcile_day_before(self._clock() if now is None else now)

    async def _one_shot(self, interface: str, data: dict[str, Any]) -> Any:
        """One push (again only after a 4002 and a token refresh): the reply, or None."""
        for _ in range(2):
            try:
                token = await self.tokens.get()
                answer = await self.client.post(interface, data, token, None)
            except (Unusable, TokenUnavailable) as exc:
                self.stats.error(f"{interface}: {exc}", self._clock())
                return None
            if answer.ret == 4002:
                self.tokens.invalidate(token)
                continue
            if answer.ret != 0:
                self.stats.error(f"{interface}: Ret {answer.ret} {answer.msg!r}", self._clock())
                return None
            return answer.reply if answer.reply is not None else {}
        return None
