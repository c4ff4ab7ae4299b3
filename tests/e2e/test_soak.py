"""Soak: a busy simulated station for ``EVGW_SOAK_S`` seconds (default 600) with the real
``evgw run``, watching the agent's resident memory and open file descriptors.

Six DC connectors play short sessions back to back (one in four with a fault), meters are
polled every second, battery samples every two seconds, both uplinks forward everything.
Every few seconds the test reads ``/proc/PID/status`` (VmRSS) and ``/proc/PID/fd``; after
the warm-up (two minutes, or less for short runs) neither may grow beyond a small tolerance.
At the end the agent stops cleanly, the ledger verifies, every session has exactly one
order and both platforms got everything.

Slow: ``make test-all`` runs it. ``EVGW_SOAK_S=90 .venv/bin/python -m pytest -m slow
tests/e2e/test_soak.py -s`` is a short check; ``-s`` prints the samples.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.charging import Fault, FaultKind, VehicleProfile
from sim.station import SessionPlan
from tests.e2e.helpers import (
    Rig,
    cec_accepted,
    cec_expected_ids,
    delivered_everywhere,
    export_and_verify,
    ledger_records,
    orders,
    wait_for_broker,
    wait_until,
)

SOAK_S = float(os.environ.get("EVGW_SOAK_S", "600"))
WARM_UP_S = min(120.0, 0.3 * SOAK_S)
SAMPLE_EVERY_S = 5.0
RSS_TOLERANCE = 0.10
FD_TOLERANCE = 5
CONNECTORS = 6
SESSION_S = 8.0  # at least: the generator's session with 4 s of charging, plus the idle second
SOAK_SAMPLING = """
bms_process_interval_s = 2
status_heartbeat_s = 5
meter_sample_interval_s = 5
"""


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float
    rss_kib: int
    fds: int


def sample(pid: int, t_s: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Sample(t_s, rss, len(os.listdir(f"/proc/{pid}/fd")))


def soak_plans(connector_index: int, count: int) -> list[SessionPlan]:
    faults = (
        (),
        (Fault(FaultKind.INSULATION, at_s=2.0),),
        (),
        (Fault(FaultKind.EMERGENCY_STOP, at_s=2.0),),
    )
    return [
        SessionPlan(
            VehicleProfile(
                vin=f"LSOAK{connector_index:02d}{n:010d}", max_current_a=100.0, soc_start_pct=30
            ),
            faults=faults[(n + connector_index) % len(faults)],
            charge_s=4.0,
            idle_before_s=1.0,
        )
        for n in range(count)
    ]


@pytest.mark.slow
@pytest.mark.timeout(int(SOAK_S) + 600)
def test_soak_memory_and_descriptors_stay_flat(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(CONNECTORS, SOAK_SAMPLING)
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    per_connector = max(1, math.floor(SOAK_S / SESSION_S))
    rig.station.play({cid: soak_plans(n, per_connector) for n, cid in enumerate(rig.connectors, 1)})
    t0 = time.monotonic()
    samples: list[Sample] = []
    while rig.station.busy:
        assert rig.agent.proc is not None and rig.agent.proc.poll() is None, "the agent died"
        samples.append(sample(rig.agent.pid, time.monotonic() - t0))
        print(f"t+{samples[-1].t_s:6.1f} s  rss {samples[-1].rss_kib} KiB  fds {samples[-1].fds}")
        time.sleep(SAMPLE_EVERY_S)
    rig.station.wait(timeout_s=60)
    played = rig.station.played
    assert len(played) == per_connector * CONNECTORS

    # after the warm-up, memory and descriptors stay where they were
    after = [s for s in samples if s.t_s >= WARM_UP_S]
    assert len(after) >= 3, "the soak was too short to compare anything"
    base = after[:3]
    base_rss = max(s.rss_kib for s in base)
    base_fds = max(s.fds for s in base)
    peak_rss = max(s.rss_kib for s in after)
    peak_fds = max(s.fds for s in after)
    print(f"after warm-up: rss {base_rss} -> peak {peak_rss} KiB, fds {base_fds} -> {peak_fds}")
    assert peak_rss <= base_rss * (1 + RSS_TOLERANCE), (base_rss, peak_rss)
    assert peak_fds <= base_fds + FD_TOLERANCE, (base_fds, peak_fds)

    # and the station's work was all done: every session ordered, everything delivered
    def every_session_ordered() -> bool:
        records = ledger_records(rig.ledger_path)
        return len(orders(records)) >= len(played) and delivered_everywhere(rig)

    wait_until(every_session_ordered, 60, "every order, delivered")
    assert rig.agent.terminate() == 0
    records = export_and_verify(rig)
    all_orders = orders(records)
    assert sorted(o["body"]["vin"] for o in all_orders) == sorted(p.vin for p in played)
    per_session = Counter(o["body"]["session_id"] for o in all_orders)
    assert set(per_session.values()) == {1}
    assert not [o for o in all_orders if o["body"]["interrupted"]]
    ids = {r["id"] for r in records}
    wait_for_broker(rig, records)
    assert rig.consumer.received_ids() == ids
    assert {a["record_id"] for a in cec_accepted(rig)} == cec_expected_ids(records)
