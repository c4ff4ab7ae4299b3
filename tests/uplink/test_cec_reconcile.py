"""Reconciliation that catches up (#15 item 4): every missed day of the last catch_up_days,
durable done-markers, orders found by bounded indexed reads, disputes kept."""

from __future__ import annotations

import json
from pathlib import Path

from agent.ledger import Ledger
from agent.records.bodies import decode_body
from agent.records.envelope import Record
from agent.uplink.cec.reconcile import MARKS_FILE, orders_ended_between, seq_at
from sim.platform import PlatformServer
from tests.uplink.conftest import T0, FakeClock, order_record, status_record
from tests.uplink.test_cec_uplink import make_uplink

DAY = 86400.0
CHECK = "check_charge_orders"


def ended(session: str, at_s: float) -> Record:
    """An order ending at ``T0 + at_s``, appended then (as the station writes it)."""
    return order_record(session, end_offset_s=at_s)


async def test_missed_days_are_caught_up_once_and_for_good(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    for day in range(4):  # 2025-01-01 … 01-04, with busy filler between the orders
        for n in range(50):
            ledger.append_nowait(status_record(offset_s=day * DAY + n * 60))
        ledger.append_nowait(ended(f"S-{day}-a", day * DAY + 4000))
        ledger.append_nowait(ended(f"S-{day}-b", day * DAY + 5000))
    await ledger.flush()
    clock.advance(4 * DAY + 3 * 3600)  # 2025-01-05 14:00: the night window long gone
    marks = tmp_path / MARKS_FILE
    uplink, _ = make_uplink(platform, ledger, clock, reconcile_marks=marks, catch_up_days=7)
    async with uplink:
        await uplink.periodic.tick(clock())
        checks = [r["data"] for r in platform.receiver.accepted(CHECK)]
        assert [c["StartTime"][:10] for c in checks] == [
            "2025-01-01",
            "2025-01-02",
            "2025-01-03",
            "2025-01-04",
        ]  # fmt: skip  (nothing before the ledger's first record; today is not over)
        assert all(c["OrderCount"] == 2 for c in checks)
        await uplink.periodic.tick(clock())  # the same hour: nothing due
    assert json.loads(marks.read_text())["days"] == [
        "2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"
    ]  # fmt: skip
    clock.advance(2 * 3600)
    again, _ = make_uplink(platform, ledger, clock, reconcile_marks=marks)  # a restart
    async with again:
        await again.periodic.tick(clock())
    assert len(platform.receiver.requests(CHECK)) == 4
    assert uplink.counters.reconciliations == 4


async def test_a_refused_day_is_tried_again_at_the_next_catch_up(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    await ledger.append(ended("S-1", 3600))
    clock.advance(DAY)
    uplink, _ = make_uplink(platform, ledger, clock, reconcile_marks=tmp_path / MARKS_FILE)
    platform.receiver.inject("ret", 500, count=1, interface=CHECK)
    async with uplink:
        await uplink.periodic.tick(clock())
        assert platform.receiver.accepted(CHECK) == []
        clock.advance(3600)
        await uplink.periodic.tick(clock())
    assert [r["ret"] for r in platform.receiver.requests(CHECK)] == [500, 0]


async def test_yesterday_is_found_behind_ten_thousand_older_orders(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    """The old code read the oldest 10,000 orders and filtered in Python."""
    for n in range(10_200):
        ledger.append_nowait(ended(f"OLD-{n}", n * 600.0))  # ~71 busy days
        if n % 2000 == 1999:
            await ledger.flush()
    last = 10_200 * 600.0
    yesterday = (last // DAY + 2) * DAY  # a quiet day between: only the new orders end then
    ledger.append_nowait(ended("NEW-1", yesterday + 100))
    ledger.append_nowait(ended("NEW-2", yesterday + 200))
    await ledger.flush()
    clock.advance(yesterday + DAY)
    uplink, _ = make_uplink(platform, ledger, clock)
    async with uplink:
        assert await uplink.reconcile_orders()
    check = platform.receiver.accepted(CHECK)[0]["data"]
    assert check["OrderCount"] == 2
    start = T0 + yesterday - (T0 + yesterday + 8 * 3600) % DAY
    orders = await orders_ended_between(ledger, start, start + DAY)
    assert len(orders) < 200  # a bounded range, not every order in the ledger


async def test_seq_at_bisects_by_time(ledger: Ledger) -> None:
    for n in range(300):
        ledger.append_nowait(status_record(offset_s=n * 10.0))
    await ledger.flush()
    assert await seq_at(ledger, T0 - 1) == 1
    assert await seq_at(ledger, T0 + 1000) == 101
    assert await seq_at(ledger, T0 + 10_000) == 301


async def test_disputes_are_kept_in_an_event(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.append(ended("NEVER-SENT", 3600))  # the platform has never seen this order
    clock.advance(DAY)
    uplink, _ = make_uplink(platform, ledger, clock, interfaces=frozenset({CHECK}))
    async with uplink:
        assert await uplink.reconcile_orders()
    events = [decode_body("event", r.body) for r in await ledger.find("event")]
    (done,) = [e for e in events if e.event == "orders_reconciled"]
    assert done.details["day"] == "2025-01-01" and done.details["disputed"] == 1
    assert done.details["disputes"][0]["DisputeReason"] == 1
    assert done.details["disputes"][0]["TotalPower"] == "30.13"
