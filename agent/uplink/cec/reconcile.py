"""Daily reconciliation that catches up (``check_charge_orders``, spec §13.12, §16).

- **Which days.** At start and every hour, every China-time day of the last
  ``catch_up_days`` that is over and has no done-marker is sent, oldest first — so a day
  the gateway was off between 00:00 and 03:00 is reconciled when it is back. Days before
  the ledger's first record are skipped.
- **Done-markers** are durable: one file beside the ledger (``cec-reconciled.json``),
  rewritten atomically (temporary file, fsync, rename) after the platform accepted a day.
- **Orders** are found without scanning: the seq at a point in time is found by bisection
  over the primary key (records are appended in time order; ``SEARCH`` by rowid), and the
  orders of the day are read from that seq range through the ``(kind, seq)`` index, with a
  margin for orders written late (a session closed after a restart).
- **Disputes** in the reply are kept: an ``orders_reconciled`` event records the day, the
  totals sent and every disputed order with its reason.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agent.records.envelope import StoredRecord, parse_iso_ts
from agent.uplink.cec.codec import CHINA_TZ
from agent.uplink.cec.mapping import CHECK_ORDERS, MappingContext, check_charge_orders
from agent.uplink.cec.state_file import read_json, write_json

if TYPE_CHECKING:
    from agent.ledger import Ledger

log = logging.getLogger("agent.uplink.cec")

MARKS_FILE: Final = "cec-reconciled.json"
WRITTEN_LATE_S: Final = 2 * 86400.0
"""How long after its end an order may still be appended (a session closed after a restart)."""
PAGE: Final = 500
KEPT_DISPUTES: Final = 200


class DoneMarks:
    """The days already reconciled, kept in a small JSON file (or in memory only)."""

    def __init__(self, path: Path | None, keep_days: int) -> None:
        self._path = path
        self._keep = keep_days
        data = read_json(path, "reconciliation markers")
        days = data.get("days", []) if isinstance(data, dict) else []
        self.days: set[str] = {d for d in days if isinstance(d, str)}

    def add(self, day: _dt.date, today: _dt.date) -> None:
        """Mark ``day`` (in memory at once; on disk unless the disk refuses: then it is sent
        again after a restart, which the platform dedupes by CheckOrderSeq)."""
        oldest = (today - _dt.timedelta(days=self._keep + 1)).isoformat()
        self.days = {d for d in self.days if d >= oldest} | {day.isoformat()}
        write_json(self._path, {"days": sorted(self.days)}, "reconciliation markers")


async def seq_at(ledger: Ledger, epoch_s: float) -> int:
    """The first seq whose record is at or after ``epoch_s`` (last seq + 1 if none)."""
    lo, hi = 1, ledger.last_seq + 1
    while lo < hi:
        mid = (lo + hi) // 2
        found = await ledger.read_after(mid - 1, 1)
        if not found or found[0].seq >= hi:
            hi = mid
        elif parse_iso_ts(found[0].ts) < epoch_s:
            lo = found[0].seq + 1
        else:
            hi = mid
    return lo


async def orders_ended_between(ledger: Ledger, start_s: float, end_s: float) -> list[StoredRecord]:
    """The ``charge_order`` records of the seq range that can hold orders ending in
    ``[start_s, end_s)``: bounded by two bisections and read through the kind index."""
    first = await seq_at(ledger, start_s)
    last = await seq_at(ledger, end_s + WRITTEN_LATE_S)
    orders: list[StoredRecord] = []
    after = first - 1
    while after < last - 1:
        page = await ledger.read_after(after, PAGE, kinds={"charge_order"})
        orders += [r for r in page if r.seq < last]
        if len(page) < PAGE or page[-1].seq >= last:
            break
        after = page[-1].seq
    return orders


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


class Reconciler:
    """Sends the due days through ``one_shot`` and records their outcome."""

    def __init__(
        self,
        ledger: Ledger,
        ctx: MappingContext,
        one_shot: Callable[[str, dict[str, Any]], Awaitable[Any]],
        record_event: Callable[..., Awaitable[None]],
        marks: DoneMarks,
        catch_up_days: int,
    ) -> None:
        self._ledger = ledger
        self._ctx = ctx
        self._one_shot = one_shot
        self._record_event = record_event
        self.marks = marks
        self.catch_up_days = catch_up_days
        self.sent = 0

    async def due_days(self, now: float) -> list[_dt.date]:
        today = _dt.datetime.fromtimestamp(now, tz=CHINA_TZ).date()
        first = await self._ledger.read_after(0, 1)
        if not first:
            return []
        born = _dt.datetime.fromtimestamp(parse_iso_ts(first[0].ts), tz=CHINA_TZ).date()
        days = [today - _dt.timedelta(days=n) for n in range(self.catch_up_days, 0, -1)]
        return [d for d in days if d >= born and d.isoformat() not in self.marks.days]

    async def catch_up(self, now: float) -> int:
        """Every due day, oldest first, until one is not accepted; how many were."""
        done = 0
        today = _dt.datetime.fromtimestamp(now, tz=CHINA_TZ).date()
        for day in await self.due_days(now):
            if not await self.reconcile(day):
                break
            self.marks.add(day, today)
            done += 1
        return done

    async def reconcile(self, day: _dt.date) -> bool:
        start = _dt.datetime.combine(day, _dt.time(), tzinfo=CHINA_TZ).timestamp()
        end = start + 86400.0
        orders = await orders_ended_between(self._ledger, start, end)
        data = check_charge_orders(orders, start, end, self._ctx)
        reply = await self._one_shot(CHECK_ORDERS, data)
        if reply is None:
            return False
        self.sent += 1
        disputes = reply.get("DisputeOrders", []) if isinstance(reply, dict) else []
        disputes = disputes if isinstance(disputes, list) else []
        kept = [
            {k: _plain(v) for k, v in d.items()}
            for d in disputes[:KEPT_DISPUTES]
            if isinstance(d, dict)
        ]
        if kept:
            log.warning("T/CEC check_charge_orders %s: %d disputed orders", day, len(disputes))
        await self._record_event(
            "orders_reconciled",
            f"check_charge_orders {day}: {data['OrderCount']} orders sent, "
            f"{len(disputes)} disputed",
            day=day.isoformat(),
            check_order_seq=data["CheckOrderSeq"],
            order_count=data["OrderCount"],
            total_power_kwh=str(data["TotalOrderPower"]),
            total_money_yuan=str(data["TotalOrderMoney"]),
            disputed=len(disputes),
            disputes=kept,
        )
        return True
