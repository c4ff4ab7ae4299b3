"""Every query the ledger runs while the service runs is indexed (issue 15 §7).

A realistic workload — appends of every kind, checkpoints, cursors, parks (listed, counted,
released), batch reads with
and without kinds, read-ahead, backlog, the station's start-up lookups, retention under a
small cap, a key rotation, a reopen and the background integrity check — runs with every
SQLite connection traced. Each distinct query is then explained (``EXPLAIN QUERY PLAN``) on a
copy of the ledger; the test fails if a plan scans a table. Only the few-row tables (``meta``,
``cursors``, ``keys``, the schema) may be read whole.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import msgspec
import pytest

from agent.ledger import GatewayKey, Ledger
from agent.records.envelope import Record
from tests.ledger.helpers import record

SMALL: frozenset[str] = frozenset({"meta", "cursors", "keys", "sqlite_master", "sqlite_schema"})
KINDS = ("meter_sample", "bms_process", "charge_order", "connector_status", "alarm", "event")
_VERB = re.compile(r"^\s*(SELECT|UPDATE|DELETE|INSERT INTO \w+ (\(.*?\) )?SELECT)", re.I | re.S)


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    seen: set[str] = set()
    real = sqlite3.connect

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(seen.add)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return seen


async def workload(path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await Ledger.open(
        path, gateway_id="GW1", key=key, size_cap_bytes=160 * 1024, integrity_delay_s=0
    )
    for uplink in ("mqtt", "cec"):
        await ledger.register_uplink(uplink)
    for n in range(900):
        kind = KINDS[n % len(KINDS)]
        ledger.append_nowait(record(kind, n=n, session_id=f"S{n // 50}", pad="p" * 200))
        if n % 150 == 149:
            await ledger.flush()
            await ledger.checkpoint()
            await ledger.ack("mqtt", ledger.last_seq)
            await ledger.ack("cec", ledger.last_seq - 100)
            await ledger.park("cec", ledger.last_seq - 3, "4004")
    await ledger.read_batch("cec", 100)
    await ledger.read_batch("cec", 100, kinds={"charge_order", "alarm"})
    await ledger.read_after(ledger.last_seq - 50, 100, uplink="mqtt")
    await ledger.backlog("cec")
    for seq in (ledger.last_seq - 2, ledger.last_seq - 1):
        await ledger.park("cec", seq, "4004 refused")
    parked = await ledger.parked("cec", 10)
    held = await ledger.parked_count("cec")
    assert len(parked) == held >= 2 and parked[-1].reason == "4004 refused"
    assert await ledger.unpark("cec", [p.seq for p in parked[-2:]] + [1]) == 2
    assert await ledger.parked_count("cec") == held - 2
    await ledger.find("connector_status", session_id="S17", limit=10)
    await ledger.find("charge_order", limit=10, newest_first=True)
    await ledger.find("charge_order", connector_id="1", limit=5)
    await ledger.rotate_key(GatewayKey.generate())
    await ledger.integrity_checked()
    await ledger.close()
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, integrity_delay_s=0)
    await ledger.integrity_checked()
    await ledger.close()


def scans(conn: sqlite3.Connection, sql: str) -> list[str]:
    plan = [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    found = []
    for step in plan:
        match = re.match(r"SCAN (\w+)", step)
        if match and match.group(1) not in SMALL | {"CONSTANT"} and "(subquery" not in step:
            found.append(step)
    return found


async def test_no_run_time_query_scans_a_table(tmp_path: Path, traced: set[str]) -> None:
    path = tmp_path / "l.db"
    await workload(path)
    queries = sorted(q for q in traced if _VERB.match(q) and "sqlite_master" not in q)
    assert len(queries) > 25, queries
    assert any(q.startswith("DELETE FROM records") for q in queries), "retention never deleted"
    conn = sqlite3.connect(path)
    try:
        bad = {q: found for q in queries if (found := scans(conn, q))}
    finally:
        conn.close()
    assert not bad, "\n".join(f"{found}: {q[:300]}" for q, found in bad.items())


def at(r: Record, connector_id: str | None) -> Record:
    return msgspec.structs.replace(r, connector_id=connector_id)


async def test_per_connector_lookups_use_their_index(tmp_path: Path) -> None:
    """The newest record of one connector is found through ``records_connector``, also when
    that connector has none of the kind (a DC connector without a meter: no walk through
    every meter sample); a ledger made before the index gets it once, after the open, while
    records keep being written."""
    path = tmp_path / "l.db"
    key = GatewayKey.generate()
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, integrity_delay_s=None)
    for n in range(300):
        ledger.append_nowait(at(record("meter_sample", n=n), "C1" if n % 3 else None))
    await ledger.flush()
    assert await ledger.find("meter_sample", connector_id="C2", limit=1, newest_first=True) == []
    newest = await ledger.find("meter_sample", connector_id="C1", limit=1, newest_first=True)
    assert [r.seq for r in newest] == [300]
    await ledger.close()

    conn = sqlite3.connect(path)
    sql = (
        "SELECT seq FROM records WHERE kind = 'meter_sample' AND data IS NOT NULL "
        "AND connector_id = 'C2' ORDER BY seq DESC LIMIT 1"
    )
    plan = " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
    assert "records_connector" in plan, plan
    conn.execute("DROP INDEX records_connector")  # as a ledger of an older release
    conn.commit()
    conn.close()

    ledger = await Ledger.open(path, gateway_id="GW1", key=key, integrity_delay_s=None)
    ledger.append_nowait(at(record("meter_sample", n=300), "C2"))
    await ledger.flush()
    found = await ledger.find("meter_sample", connector_id="C2", limit=1, newest_first=True)
    assert [r.seq for r in found] == [301]
    await ledger.close()
    conn = sqlite3.connect(path)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "records_connector" in names
