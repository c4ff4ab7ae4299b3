"""Is a freshly started release healthy? Asked from outside, over the status socket.

READY is the status socket answering from a process younger than the restart (the service
opens it once the ledger and the devices are built, just before ``READY=1``). Healthy is
READY followed by a first minute in which the socket keeps answering from the same process,
no task restarts or is stopped (one that finished its work is fine), the ledger stays
``ok``, and every CAN bus that was open and every meter that was online before the update
is so again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.service.status_socket import query_status


@dataclass(frozen=True, slots=True)
class Baseline:
    """What worked before the update, and must work after it."""

    buses_open: frozenset[str]
    meters_online: frozenset[str]

    @classmethod
    def of(cls, snapshot: dict[str, Any] | None) -> Baseline:
        if snapshot is None:
            return cls(frozenset(), frozenset())
        buses = snapshot.get("can_buses") or {}
        meters = snapshot.get("meters") or {}
        return cls(
            frozenset(b for b, row in buses.items() if row.get("state") == "open"),
            frozenset(m for m, row in meters.items() if row.get("online")),
        )


def ask(path: Path) -> dict[str, Any] | None:
    """The service's snapshot, or None when it does not answer."""
    try:
        return query_status(path, timeout_s=3.0)
    except (OSError, ValueError):
        return None


def problems(before: Baseline, snapshot: dict[str, Any]) -> list[str]:
    """What is worse in ``snapshot`` than in ``before`` (empty when healthy)."""
    found = []
    for name, task in (snapshot.get("tasks") or {}).items():
        if task.get("restarts") or task.get("state") not in ("running", "finished"):
            found.append(f"task {name} {task.get('state')}: {task.get('last_error')}")
    ledger = (snapshot.get("ledger") or {}).get("health")
    if ledger != "ok":
        found.append(f"ledger {ledger}")
    after = Baseline.of(snapshot)
    found += [
        f"CAN bus of {b} no longer open" for b in sorted(before.buses_open - after.buses_open)
    ]
    found += [
        f"meter {m} no longer online" for m in sorted(before.meters_online - after.meters_online)
    ]
    return found


def wait_ready(
    path: Path, restarted: float, timeout_s: float, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any] | None:
    """The first snapshot of a process started after ``restarted`` (a ``clock`` time)."""
    deadline = restarted + timeout_s
    while clock() < deadline:
        snapshot = ask(path)
        if snapshot is not None and snapshot.get("uptime_s", 1e18) <= clock() - restarted + 1:
            return snapshot
        time.sleep(0.5)
    return None


def watch(
    path: Path,
    before: Baseline,
    health_s: float,
    *,
    settle_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Watch the first ``health_s`` seconds; the reason it is unhealthy, or None.

    Buses and meters get ``settle_s`` (within the window) to come back before they count.
    """
    start = clock()
    uptime = 0.0
    last: dict[str, Any] | None = None
    while clock() - start < health_s:
        snapshot = ask(path)
        if snapshot is None:
            return "the service stopped answering on its status socket"
        if snapshot.get("uptime_s", 0.0) < uptime:
            return "the service restarted during its first minute"
        uptime, last = snapshot.get("uptime_s", 0.0), snapshot
        early = problems(Baseline.of(None), snapshot)
        if early:
            return "; ".join(early)
        time.sleep(min(1.0, max(0.0, health_s - (clock() - start))))
    if last is None:
        return "the service never answered during its first minute"
    if health_s < settle_s:
        time.sleep(settle_s - health_s)
        last = ask(path) or last
    found = problems(before, last)
    return "; ".join(found) if found else None
