"""What counts as an unhealthy first minute after an update."""

from __future__ import annotations

from agent.ops.health import Baseline, problems

BEFORE = {
    "tasks": {"uplink mqtt": {"state": "running", "restarts": 0, "last_error": None}},
    "ledger": {"health": "ok"},
    "can_buses": {"C1": {"state": "open"}, "C2": {"state": "down"}},
    "meters": {"m1": {"online": True}, "m2": {"online": False}},
}


def test_same_as_before_is_healthy() -> None:
    finished = {**BEFORE, "tasks": {"retention": {"state": "finished", "restarts": 0}}}
    assert problems(Baseline.of(BEFORE), BEFORE) == []
    assert problems(Baseline.of(BEFORE), finished) == []


def test_what_worked_before_must_work_after() -> None:
    after = {
        "tasks": {"uplink mqtt": {"state": "restarting", "restarts": 2, "last_error": "boom"}},
        "ledger": {"health": "disk_full"},
        "can_buses": {"C1": {"state": "down"}, "C2": {"state": "open"}},
        "meters": {"m1": {"online": False}, "m2": {"online": True}},
    }
    assert problems(Baseline.of(BEFORE), after) == [
        "task uplink mqtt restarting: boom",
        "ledger disk_full",
        "CAN bus of C1 no longer open",
        "meter m1 no longer online",
    ]
    # a bus or meter that did not work before is no reason to roll back
    assert Baseline.of(BEFORE) == Baseline(frozenset({"C1"}), frozenset({"m1"}))
