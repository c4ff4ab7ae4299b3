"""Retention under a small size cap with uplinks that acknowledge nothing, some, everything."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.store import used_bytes
from agent.ledger.verify import verify_lines
from tests.ledger.helpers import record

CAP = 288 * 1024
"""Small enough that 1,100 records overflow it; each row costs its skeleton and three index entries."""
MIX = ["meter_sample", "meter_sample", "bms_process", "charge_order", "alarm", "meter_sample"]


async def fill(ledger: Ledger, count: int, acks: dict[str, float]) -> None:
    """Append ``count`` records; each uplink acknowledges its share of what is stored."""
    for n in range(count):
        kind = MIX[n % len(MIX)]
        pad = "p" * 300 if kind in ("meter_sample", "bms_process") else ""
        ledger.append_nowait(record(kind, n=n, pad=pad))
        if n % 100 == 99:
            await ledger.flush()
            await ledger.checkpoint()
            for uplink, share in acks.items():
                upto = int(ledger.last_seq * share)
                if upto:
                    await ledger.ack(uplink, upto)
    await ledger.flush()


def rows(path: Path) -> list[tuple[int, str, bool]]:
    conn = sqlite3.connect(path)
    try:
        return [
            (seq, kind, data is not None)
            for seq, kind, data in conn.execute("SELECT seq, kind, data FROM records ORDER BY seq")
        ]
    finally:
        conn.close()


def size_in_use(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return used_bytes(conn)
    finally:
        conn.close()


def retention_events(path: Path) -> list[dict[str, object]]:
    conn = open_for_reading(path)
    try:
        return [
            json.loads(line)["body"]
            for line in export_lines(conn, kinds=["event"])
            if b'"retention_dropped"' in line
        ]
    finally:
        conn.close()


async def run(tmp_path: Path, acks: dict[str, float], count: int) -> tuple[GatewayKey, Path]:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, size_cap_bytes=CAP)
    for uplink in acks:
        await ledger.register_uplink(uplink)
    await fill(ledger, count, acks)
    health = ledger.health
    await ledger.close()
    assert health == "ok"
    return key, path


def verifies(path: Path, key: GatewayKey) -> None:
    conn = open_for_reading(path)
    try:
        report = verify_lines(export_lines(conn), [key.public])
    finally:
        conn.close()
    assert report.ok, report.problems[:5]


async def test_everything_acknowledged_deletes_old_records_only(tmp_path: Path) -> None:
    key, path = await run(tmp_path, {"mqtt": 1.0, "cec": 1.0}, count=3000)
    stored = rows(path)
    assert stored[0][0] > 1, "nothing was deleted"
    assert all(has_data for _seq, _kind, has_data in stored), "dropped instead of deleting"
    assert stored[-1][0] == 3000
    assert [s for s, _k, _d in stored] == list(range(stored[0][0], 3001))
    assert size_in_use(path) <= CAP
    assert retention_events(path) == []
    conn = sqlite3.connect(path)
    anchors = {r[0] for r in conn.execute("SELECT seq FROM checkpoints")}
    conn.close()
    assert stored[0][0] in anchors  # the chain starts at a signed checkpoint
    verifies(path, key)


async def test_nothing_acknowledged_drops_samples_then_bms_never_orders(tmp_path: Path) -> None:
    key, path = await run(tmp_path, {"mqtt": 0.0}, count=1100)
    stored = rows(path)
    assert [s for s, _k, _d in stored] == list(range(1, len(stored) + 1))  # nothing deleted
    stored = [row for row in stored if row[1] != "event"]  # the retention events themselves
    assert len(stored) == 1100
    by_kind: dict[str, list[bool]] = {}
    for _seq, kind, has_data in stored:
        by_kind.setdefault(kind, []).append(has_data)
    assert all(by_kind["charge_order"]) and all(by_kind["alarm"])
    assert not any(by_kind["meter_sample"]), "samples must go first"
    dropped_bms = by_kind["bms_process"].count(False)
    assert dropped_bms > 0
    # oldest first: the bms records still kept are the newest ones
    flags = by_kind["bms_process"]
    assert flags == [False] * dropped_bms + [True] * (len(flags) - dropped_bms)
    events = retention_events(path)
    assert events, "drops were not recorded"
    declared = {}
    for body in events:
        for item in body["dropped"]:  # type: ignore[union-attr]
            declared[item["kind"]] = declared.get(item["kind"], 0) + item["count"]
    assert declared == {"meter_sample": len(by_kind["meter_sample"]), "bms_process": dropped_bms}
    assert set(declared) <= {"meter_sample", "bms_process"}
    verifies(path, key)


async def test_some_acknowledged_deletes_then_drops(tmp_path: Path) -> None:
    key, path = await run(tmp_path, {"mqtt": 1.0, "cec": 0.5}, count=2000)
    stored = rows(path)
    first = stored[0][0]
    assert first > 1  # what both acknowledged went first
    kept = [(kind, has_data) for _s, kind, has_data in stored]
    assert all(d for k, d in kept if k in ("charge_order", "alarm"))
    assert any(not d for k, d in kept if k == "meter_sample")
    verifies(path, key)


async def test_over_cap_with_only_orders_keeps_them_and_raises(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    seen: list[tuple[str, str]] = []
    ledger = await Ledger.open(
        path,
        gateway_id="GW1",
        key=key,
        size_cap_bytes=64 * 1024,
        on_health=lambda h, m: seen.append((h, m)),
    )
    await ledger.register_uplink("mqtt")
    for n in range(400):
        await ledger.append(record("charge_order", n=n, pad="o" * 300))
    assert ledger.health == "over_cap"
    assert seen and seen[0][0] == "over_cap" and "size cap" in seen[0][1]
    await ledger.close()
    stored = rows(path)
    orders = [s for s in stored if s[1] == "charge_order"]
    assert len(orders) == 400 and all(d for _s, _k, d in orders)
    alarms = [s for s in stored if s[1] == "alarm"]
    assert alarms, "the over-cap alarm was not recorded"
