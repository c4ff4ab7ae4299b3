"""Chaos: the agent is SIGKILLed at random moments and restarted (as systemd would), the
broker is restarted and the T/CEC receiver answers errors for a while (Ret -1, HTTP 500,
dropped connections) while the simulated station keeps charging.

After a final clean run has drained the backlog and stopped with SIGTERM: nothing is lost
(every record of the export reached the broker, and the receiver for the kinds it takes),
nothing is out of order (per connector at the receiver, per topic at the broker, after
dedupe on the record id), the chain verifies, and every charging session the ledger knows
has exactly one order — a session cut by a kill gets one interrupted order, never two.

The random moments come from a seeded generator; the seed is printed (set
``EVGW_CHAOS_SEED`` to replay a run).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from agent.records.envelope import parse_iso_ts
from agent.uplink.cec.mapping import ALL_INTERFACES
from sim.charging import Fault, FaultKind, VehicleProfile
from sim.station import PlayedSession, SessionPlan
from tests.e2e.helpers import (
    Rig,
    broker_copy_verifies,
    cec_accepted,
    cec_expected_ids,
    delivered_everywhere,
    export_and_verify,
    ledger_records,
    orders,
    per_lane_order_violations,
    wait_for_broker,
    wait_until,
)

STOP_REASON = {(): 0, ("insulation",): 2, ("emergency_stop",): 3}
#: the station closes a session's order up to this long after its last frame (statistics
#: linger, then up to two meter polls for the end reading)
ORDER_SETTLE_S = 15.0
NOTIFICATIONS = sorted(
    i for i in ALL_INTERFACES if i.startswith("notification_") and "charge_status" not in i
)


def session_plans(connector_index: int, count: int) -> list[SessionPlan]:
    faults = ((), (FaultKind.INSULATION,), (), (FaultKind.EMERGENCY_STOP,))
    return [
        SessionPlan(
            VehicleProfile(
                vin=f"LCHAOS{connector_index:02d}{n:09d}", max_current_a=120.0, soc_start_pct=35
            ),
            faults=tuple(Fault(kind, at_s=3.0) for kind in faults[(n + connector_index) % 4]),
            charge_s=5.0,
            idle_before_s=1.5,
        )
        for n in range(count)
    ]


@dataclass
class Chaos:
    """Does the damage and remembers when, for the assertions and for a failure report."""

    rig: Rig
    rng: random.Random
    t0: float = field(default_factory=time.time)
    down: list[tuple[float, float]] = field(default_factory=list)
    """(killed at, ready again at) of every kill, wall clock."""
    journal: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.journal.append(f"t+{time.time() - self.t0:6.2f} s  {what}")

    def sleep_until(self, t_s: float) -> None:
        delay = self.t0 + t_s - time.time()
        if delay > 0:
            time.sleep(delay)

    def kill_and_restart(self) -> None:
        killed = time.time()
        self.rig.agent.kill()
        self.note(f"SIGKILL agent (run {self.rig.agent.runs}); restart")
        self.rig.agent.start()
        self.rig.agent.wait_ready(self.rig.connectors)
        self.down.append((killed, time.time()))
        self.note("agent ready again")

    def restart_broker(self) -> None:
        self.note("broker restart")
        self.rig.broker.restart()
        self.note("broker back")

    def platform_errors(self, action: str, value: float, duration_s: float) -> None:
        receiver = self.rig.platform.receiver
        for interface in NOTIFICATIONS:
            receiver.inject(action, value, count=1_000_000, interface=interface)
        self.note(f"receiver answers {action} {value:g} for {duration_s:.1f} s")
        time.sleep(duration_s)
        receiver.clear_faults()
        self.note("receiver healthy")

    def random_kill(self, low_s: float, high_s: float) -> None:
        self.sleep_until(self.rng.uniform(low_s, high_s))
        self.kill_and_restart()


def order_start(order: dict) -> float:
    return parse_iso_ts(order["body"]["start_ts"])


def seen_during(order: dict, truth: PlayedSession, late_s: float) -> bool:
    """The order's session was seen while ``truth`` was played on its connector. Frames
    written while the agent was down wait in the pty and reach the next run in a burst, so
    an order may start up to ``late_s`` (the longest downtime) after the session ended."""
    return (
        order["connector_id"] == truth.connector_id
        and truth.start_ts - 1.0 <= order_start(order) <= truth.end_ts + late_s
    )


def session_ids_seen(records: list[dict]) -> set[str]:
    return {
        r["body"]["session_id"]
        for r in records
        if r["kind"] in ("connector_status", "bms_process") and r["body"].get("session_id")
    }


def settled(rig: Rig, played: list[PlayedSession]) -> bool:
    """Every played session and every session the ledger knows has its order, and both
    uplinks caught up."""
    records = ledger_records(rig.ledger_path)
    done = orders(records)
    ordered = {o["body"]["session_id"] for o in done}
    return (
        session_ids_seen(records) <= ordered
        and all(any(seen_during(o, t, late_s=5.0) for o in done) for t in played)
        and delivered_everywhere(rig)
    )


def check_everything(rig: Rig, chaos: Chaos, sessions: int) -> None:
    played = rig.station.played
    assert len(played) == sessions
    wait_until(lambda: settled(rig, played), 60, "every session's order, delivered")
    assert rig.agent.terminate() == 0, "the final clean run must stop cleanly"
    chaos.note("SIGTERM: final run stopped")
    records = export_and_verify(rig)
    by_id = {r["id"]: r for r in records}

    # nothing lost: the broker got every record, the receiver every record it takes
    ids = set(by_id)
    wait_for_broker(rig, records)
    assert rig.consumer.bad_messages == []
    assert rig.consumer.received_ids() == ids
    broker_copy_verifies(rig, records[-1]["seq"])
    accepted = cec_accepted(rig)
    assert {a["record_id"] for a in accepted} == cec_expected_ids(records)

    # nothing out of order, after dedupe: per connector at the receiver (its lanes), per
    # topic (kind) and connector at the broker
    cec_arrivals = [by_id[a["record_id"]] for a in accepted]
    assert (
        per_lane_order_violations(
            cec_arrivals, lambda r: r["connector_id"] or r["equipment_id"] or "station"
        )
        == []
    )
    assert (
        per_lane_order_violations(
            rig.consumer.first_arrivals(),
            lambda r: f"{r['connector_id'] or 'station'}/{r['kind']}",
        )
        == []
    )

    # the damage really happened and was retried through
    rets = Counter(r["ret"] for r in rig.platform.receiver.requests())
    assert rets[-1] > 0, rets
    assert rig.consumer.copies() >= len(ids)

    # one order per session the ledger knows, no order without a played session, every
    # played session has its order(s)
    all_orders = orders(records)
    per_session = Counter(o["body"]["session_id"] for o in all_orders)
    assert [s for s, n in per_session.items() if n != 1] == []
    assert session_ids_seen(records) <= set(per_session)
    late_s = 1.0 + max(ready - killed for killed, ready in chaos.down)
    for order in all_orders:
        assert any(seen_during(order, t, late_s) for t in played), order["body"]
        if order["body"]["interrupted"]:
            assert order["body"]["end_reason"] in ("gateway_restart", "lost"), order["body"]
            assert order["body"]["stop_reason"] == 4
    cut = clean = 0
    for truth in played:
        mine = [o for o in all_orders if seen_during(o, truth, late_s)]
        assert mine, f"no order for {truth.vin} on {truth.connector_id}"
        # a kill during the session: the part before it is closed as interrupted
        kills = [k for k, _ in chaos.down if truth.start_ts + 2 < k < truth.end_ts]
        if kills:
            cut += 1
            assert any(o["body"]["interrupted"] and order_start(o) < kills[0] for o in mine), (
                f"{truth.vin} was cut by a kill but has no interrupted order"
            )
        # no downtime from just before it to its order: exactly its truth
        untouched = all(
            ready < truth.start_ts - 1.0 or killed > truth.end_ts + ORDER_SETTLE_S
            for killed, ready in chaos.down
        )
        if untouched:
            clean += 1
            (order,) = [o for o in mine if order_start(o) <= truth.end_ts]
            body = order["body"]
            assert body["vin"] == truth.vin and body["interrupted"] is False
            assert body["stop_reason"] == STOP_REASON[truth.faults]
            assert abs(body["energy_kwh"] - truth.meter_delta_kwh) <= 0.02
    assert cut >= 1, "no kill landed inside a session: the schedule missed its purpose"
    assert clean >= 1, "no session ran without a kill: the schedule left nothing to compare"


def run_chaos(
    rig: Rig, sessions_per_connector: int, damage: Callable[[Chaos], None], seed: int
) -> Chaos:
    chaos = Chaos(rig, random.Random(seed))
    print(f"chaos seed {seed} (EVGW_CHAOS_SEED={seed} replays it)")
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    rig.station.play(
        {cid: session_plans(n, sessions_per_connector) for n, cid in enumerate(rig.connectors, 1)}
    )
    chaos.t0 = time.time()
    try:
        damage(chaos)
        rig.station.wait(timeout_s=240)
        chaos.note("all sessions played")
        check_everything(rig, chaos, sessions_per_connector * len(rig.connectors))
    finally:
        print("\n".join(chaos.journal))
    return chaos


def chaos_seed() -> int:
    return int(os.environ.get("EVGW_CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))


def test_chaos_kills_broker_restart_platform_errors(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(2)

    def damage(chaos: Chaos) -> None:
        # sessions start 1.5 s after play and charge from ~4.3 s to ~9.3 s
        chaos.random_kill(5.0, 8.0)
        chaos.platform_errors("ret", -1, 2.5)
        chaos.restart_broker()
        chaos.random_kill(13.0, 19.0)
        chaos.platform_errors("http", 500, 2.0)
        chaos.platform_errors("drop", 0, 1.5)
        chaos.random_kill(24.0, 27.0)
        # the fourth sessions (from ~33 s) run untouched, to compare with the truth

    run_chaos(rig, 4, damage, chaos_seed())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chaos_long(make_rig: Callable[..., Rig]) -> None:
    """Four connectors, twelve kills over about three minutes, errors in between; the last
    sessions run untouched."""
    rig = make_rig(4)

    def damage(chaos: Chaos) -> None:
        for n in range(12):
            chaos.random_kill(5.0 + 14.0 * n, 14.0 + 14.0 * n)
            if n % 3 == 0:
                action, value = (("ret", -1), ("http", 500), ("drop", 0))[n // 3 % 3]
                chaos.platform_errors(action, value, 2.0)
            if n % 4 == 1:
                chaos.restart_broker()

    run_chaos(rig, 20, damage, chaos_seed())
