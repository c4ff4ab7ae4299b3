"""Ledger damage under a live ``evgw run`` with both uplinks (issue 12): the agent is
SIGKILLed while the station charges, its ledger is damaged on disk, and it is restarted.

In every case the service is READY again and keeps recording; every record that was in the
ledger before the damage is there unchanged or declared lost by the recovery event; no
record id reaches the broker or the T/CEC receiver with two contents; a second and a third
restart change nothing (no new recovery, nothing dropped); ``evgw ledger verify`` passes
and names what was lost.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.charging import VehicleProfile
from sim.station import SessionPlan
from tests.e2e.helpers import Rig, delivered_everywhere, ledger_records, run_cli, wait_until
from tests.ledger.damage import DAMAGE

CASES = ("delete_wal", "truncate_half", "flip_old_record")
"""Run by `make test`; the rest of the matrix runs in `make test-all` (about a minute each)."""
NO_LOSS = {"garble_signature", "garble_keys"}
"""Set aside without a recovery: nothing is lost, no new epoch."""
MAY_BE_HARMLESS = {"truncate_one_page"}
"""The page cut off may have a newer copy in the WAL."""
NEEDS_CHECKPOINTED_PAGES = {"flip_middle_page", "flip_tail"}
"""Damage to record pages of the main file: a run of a few minutes keeps its rows in the WAL,
so for these two the killed ledger is checkpointed first, as SQLite's auto-checkpoint does
every 1,000 pages in a longer run."""
MATRIX = [pytest.param(d, marks=() if d in CASES else pytest.mark.slow) for d in sorted(DAMAGE)]


def plans(first: int) -> list[SessionPlan]:
    return [
        SessionPlan(
            VehicleProfile(vin=f"LDAMAGE0{first + n:010d}", max_current_a=100.0),
            charge_s=4.0,
            idle_before_s=1.0,
        )
        for n in range(2)
    ]


def checkpoint(ledger: Path) -> None:
    """Move the WAL's pages into the main file, as SQLite does on its own in a longer run."""
    with contextlib.closing(sqlite3.connect(ledger)) as db:
        busy, _log, moved = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0 and moved >= 0


def declared_lost(records: list[dict[str, Any]]) -> set[int]:
    lost: set[int] = set()
    for r in records:
        if r["kind"] == "event" and r["body"]["event"] in ("ledger_recovered", "records_lost"):
            for item in r["body"]["lost"]:
                lost.update(range(item["from_seq"], item["to_seq"] + 1))
    return lost


def recoveries(records: list[dict[str, Any]]) -> int:
    return sum(r["kind"] == "event" and r["body"]["event"] == "ledger_recovered" for r in records)


def one_content_per_id(rig: Rig) -> None:
    """Every id reached the broker with one content, and the receiver saw no conflict."""
    hashes: dict[str, set[str]] = {}
    for record in list(rig.consumer.arrivals):
        hashes.setdefault(record["id"], set()).add(record["hash"])
    assert [i for i, h in hashes.items() if len(h) > 1] == []
    assert rig.platform.receiver.stats.conflicts == 0


def settle(rig: Rig) -> None:
    wait_until(lambda: delivered_everywhere(rig), 90, "both uplinks to catch up")


def verify_cli(rig: Rig) -> str:
    shown = run_cli("keys", "show", "--config", str(rig.config))
    pub = rig.directory / "gateway.pub"
    pub.write_text(shown.stdout)
    done = run_cli("ledger", "verify", str(rig.ledger_path), "--pubkey", str(pub))
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("damage", MATRIX)
def test_live_agent_survives_ledger_damage(damage: str, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(1)
    (cid,) = rig.connectors
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    rig.station.play({cid: plans(0)})
    rig.station.wait(timeout_s=120)
    settle(rig)
    rig.station.play({cid: plans(10)})
    wait_until(lambda: len(rig.station.played) >= 3, 60, "a session after the first ones")
    rig.agent.kill()
    before = {r["seq"]: r["hash"] for r in ledger_records(rig.ledger_path)}
    if damage in NEEDS_CHECKPOINTED_PAGES:
        checkpoint(rig.ledger_path)
    DAMAGE[damage](rig.ledger_path)

    rig.agent.start()
    rig.agent.wait_ready(rig.connectors, timeout_s=60)
    rig.station.wait(timeout_s=120)
    rig.station.play({cid: plans(20)})
    rig.station.wait(timeout_s=120)
    settle(rig)
    if damage not in NO_LOSS | MAY_BE_HARMLESS:  # at open, or by the background check
        wait_until(
            lambda: recoveries(ledger_records(rig.ledger_path)) >= 1, 90, "the damage declared"
        )
        settle(rig)
    assert rig.agent.terminate() == 0

    records = ledger_records(rig.ledger_path)
    by_seq = {r["seq"]: r for r in records}
    lost = declared_lost(records)
    expected = recoveries(records) if damage in MAY_BE_HARMLESS else int(damage not in NO_LOSS)
    assert recoveries(records) == expected
    for seq, digest in before.items():
        if seq in by_seq:
            assert by_seq[seq]["hash"] == digest, f"seq {seq} changed content"
        else:
            assert seq in lost, f"record {seq} vanished without a declaration"
    assert max(by_seq) > max(before), "nothing recorded after the damage"
    one_content_per_id(rig)

    # a second and a third restart change nothing
    asides = sorted(p.name for p in Path(rig.directory).glob("ledger.db.corrupt-*"))
    for _ in range(2):
        rig.agent.start()
        rig.agent.wait_ready(rig.connectors, timeout_s=60)
        settle(rig)
        assert rig.agent.terminate() == 0
        again = ledger_records(rig.ledger_path)
        assert recoveries(again) == expected
        assert {r["seq"]: r["hash"] for r in again if r["seq"] in by_seq} == {
            s: r["hash"] for s, r in by_seq.items()
        }
    assert sorted(p.name for p in Path(rig.directory).glob("ledger.db.corrupt-*")) == asides
    one_content_per_id(rig)
    out = verify_cli(rig)
    if lost:
        assert "declared lost" in out, out
    assert json.loads(json.dumps(rig.platform.receiver.stats.rets))
