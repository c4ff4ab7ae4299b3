"""The T/CEC 102 uplink: ledger records → city platform notifications over HTTPS.

One loop reads the next batch after the ``cec`` cursor, maps each record to its notification
(:mod:`agent.uplink.cec.mapping`), sends the records of each connector strictly in order
(connectors in parallel, one pooled HTTP/1.1 connection each), and acknowledges the batch
once every record in it got ``Ret 0`` or was parked:

- transport errors, non-200, answers that are late, too long, unreadable, badly signed or
  not bound to their request (:mod:`agent.uplink.cec.client`), ``Ret -1`` and ``Ret 500``
  are retried forever with capped, fully jittered backoff;
- ``Ret 4002``: drop the token, fetch a new one, resend once; a second 4002 alarms and backs
  off (the record stays queued);
- ``Ret 4001`` (our Sig refused) is a configuration problem that affects every record: alarm
  and back off, never park;
- ``Ret 4003``, ``4004`` and any other code park the record in the ledger with the reason and
  append an ``event`` record (``uplink_record_parked``) so the operator sees it; later
  records are not blocked.

The timed pushes (live session samples, daily reconciliation) are in
:mod:`agent.uplink.cec.periodic`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.records.bodies import BodyError, EventBody, body_to_dict, decode_body
from agent.records.envelope import Record, StoredRecord, iso_ts, parse_iso_ts
from agent.uplink.base import UplinkStats
from agent.uplink.cec.client import Answer, CecClient, Unusable
from agent.uplink.cec.mapping import MappingContext, Notification, notification_for
from agent.uplink.cec.periodic import CecCounters, Periodic
from agent.uplink.cec.settings import CecSettings
from agent.uplink.cec.token import TokenManager, TokenUnavailable
from agent.uplink.retry import Backoff, RetryState

if TYPE_CHECKING:
    from agent.ledger import Ledger

__all__ = ["CecSettings", "CecUplink"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self.settings = settings
        self.name = settings.uplink_name
        self.stats = UplinkStats()
        self.counters = CecCounters()
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_cap_s)
        self._ctx = MappingContext(
            operator_id=settings.operator_id,
            equipment_owner_id=settings.equipment_owner_id or settings.operator_id,
            station_name=settings.station_name,
            integer_status_values=settings.integer_status_values,
        )
        self.client = CecClient(settings, self.stats, clock)
        self.tokens = TokenManager(self.client.fetch_token, clock, settings.token_retry_s)
        self.periodic = Periodic(
            settings.interfaces,
            settings.charge_status_interval_s,
            self._ctx,
            ledger,
            self._one_shot,
            self.counters,
        )

    def status(self) -> dict[str, Any]:
        """Counters, refused answers by problem, how long the current token stays valid."""
        token = self.tokens.token
        valid_s = round(token.expires_at - self._clock()) if token is not None else None
        return {
            **self.stats.as_dict(),
            "token_valid_s": valid_s,
            "answers_refused": dict(self.client.refused),
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> CecUplink:
        await self.client.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

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
        self.stats.sent += 1
        retry = RetryState(self._backoff, self._rng)
        refreshed = False
        while True:
            token: str | None = None
            try:
                token = await self.tokens.get()
                answer = await self.client.post(note.interface, note.data, token, note.record_id)
            except (Unusable, TokenUnavailable) as exc:
                problem = exc.problem if isinstance(exc, Unusable) else "token"
                await self._wait_retry(
                    retry, f"{note.interface}:{problem}", f"{note.interface} {record.id}: {exc}"
                )
                continue
            if answer.ret == 0:
                self._note_business_reply(note.interface, record.id, answer)
                return
            what = f"{note.interface} {record.id}: Ret {answer.ret} {answer.msg!r}"
            key = f"{note.interface}:Ret {answer.ret}"
            if answer.ret == 4002:
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
                hint = "the platform refused our Sig; check sig_secret (and key_as_iv)"
                await self._wait_retry(retry, key, f"{what}: {hint}")
            else:
                await self._park(record, what)
                return

    async def _wait_retry(self, retry: RetryState, key: str, message: str) -> None:
        """Count, note and log (once a minute per ``key``) a failure, then back off."""
        self.stats.retries += 1
        now = self._clock()
        self.stats.error(message, now)
        delay = retry.next_delay()
        self.client.log_limiter.log(
            log, logging.WARNING, key, now, "T/CEC retry in %.1f s: %s", delay, message
        )
        await self._sleep(delay)

    def _note_business_reply(self, interface: str, record_id: str, answer: Answer) -> None:
        reply = answer.reply
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

    # -- periodic pushes ---------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await self._sleep(self.settings.charge_status_interval_s)
            try:
                await self.periodic.tick(self._clock())
            except Exception:  # a bug in a periodic push must not stop record delivery
                log.exception("T/CEC periodic push failed")

    async def push_charge_status(self) -> int:
        """``notification_equip_charge_status`` for every connector charging now."""
        return await self.periodic.push_charge_status(self._clock())

    async def reconcile_orders(self, now: float | None = None) -> bool:
        """``check_charge_orders`` for the previous China-time day; True once accepted."""
        return await self.periodic.reconcile_orders(self._clock() if now is None else now)

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
