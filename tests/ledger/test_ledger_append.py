"""Append, chain, group commit, checkpoints, cursors, parking and indexed reads."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3
from pathlib import Path

import msgspec
import pytest

from agent.errors import UserError
from agent.ledger import GatewayKey, Ledger
from agent.ledger.chain import checkpoint_signature_ok, recompute_hash
from agent.ledger.reader import _BATCH_KIND
from agent.records.envelope import StoredRecord, canonical_json
from tests.ledger.helpers import record


async def open_ledger(path: Path, key: GatewayKey | None = None, **kw: object) -> Ledger:
    return await Ledger.open(path, gateway_id="GW1", key=key or GatewayKey.generate(), **kw)


async def test_append_returns_chained_durable_record(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    first = await ledger.append(record(n=1))
    second = await ledger.append(record("charge_order", n=2, session_id="S1"))
    assert (first.seq, first.id) == (1, "GW1:1")
    assert first.prev == "0" * 64
    assert second.prev == first.hash
    fields = msgspec.structs.asdict(first)
    unchained = {k: v for k, v in fields.items() if k not in ("prev", "hash")}
    expected = hashlib.sha256(bytes(32) + canonical_json(unchained)).hexdigest()
    assert first.hash == expected
    assert recompute_hash(fields) == expected
    assert ledger.last_seq == 2
    await ledger.close()
    # durable: a raw reader of the file sees both rows with the same digests
    conn = sqlite3.connect(tmp_path / "l.db")
    rows = conn.execute("SELECT seq, kind, hash FROM records ORDER BY seq").fetchall()
    assert rows == [
        (1, "meter_sample", bytes.fromhex(first.hash)),
        (2, "charge_order", bytes.fromhex(second.hash)),
    ]


async def test_nowait_appends_are_gap_free_and_continue_after_reopen(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await open_ledger(tmp_path / "l.db", key)
    for n in range(500):
        ledger.append_nowait(record(n=n))
    assert await ledger.flush() == 500
    await ledger.close()
    ledger = await open_ledger(tmp_path / "l.db", key)
    assert ledger.last_seq == 500
    nxt = await ledger.append(record(n=500))
    assert nxt.seq == 501
    batch = await ledger.read_batch("mqtt", 1000)
    assert [r.seq for r in batch] == list(range(1, 502))
    for before, after in itertools.pairwise(batch):
        assert after.prev == before.hash
        assert recompute_hash(msgspec.structs.asdict(after)) == after.hash
    await ledger.close()


async def test_concurrent_appends_keep_call_order(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    stored = await asyncio.gather(*(ledger.append(record(n=n)) for n in range(300)))
    assert [s.seq for s in stored] == list(range(1, 301))
    assert [s.body["n"] for s in stored] == list(range(300))
    await ledger.close()


async def test_bad_records_are_refused_without_using_a_seq(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    with pytest.raises(ValueError, match="unknown record kind"):
        ledger.append_nowait(record("nonsense"))
    with pytest.raises(TypeError):
        ledger.append_nowait(record(n=1, blob=object()))
    assert (await ledger.append(record(n=2))).seq == 1
    await ledger.close()


async def test_checkpoint_signs_last_durable_record(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await open_ledger(tmp_path / "l.db", key)
    last = None
    for n in range(10):
        last = await ledger.append(record(n=n))
    assert last is not None
    cp = await ledger.checkpoint()
    assert (cp.gateway_id, cp.seq, cp.hash, cp.key_id) == ("GW1", 10, last.hash, key.fingerprint)
    assert checkpoint_signature_ok(cp, key.public)
    assert not checkpoint_signature_ok(cp, GatewayKey.generate().public)
    assert await ledger.checkpoint() is cp  # nothing new: the same checkpoint
    await ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    assert conn.execute("SELECT seq, key_id FROM checkpoints").fetchall() == [(10, key.fingerprint)]


async def test_periodic_checkpoint_without_anyone_asking(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db", checkpoint_interval_s=0.0)
    await ledger.append(record(n=1))
    await ledger.append(record(n=2))
    await ledger.flush()
    conn = sqlite3.connect(tmp_path / "l.db")
    seqs = [r[0] for r in conn.execute("SELECT seq FROM checkpoints")]
    assert seqs and max(seqs) == 2
    await ledger.close()


async def test_cursors_ack_park_and_backlog(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await open_ledger(tmp_path / "l.db", key)
    for n in range(10):
        await ledger.append(record("charge_order" if n % 3 == 0 else "meter_sample", n=n))
    assert await ledger.cursor("cec") == 0
    assert await ledger.backlog("cec") == 10
    first = await ledger.read_batch("cec", 4)
    assert [r.seq for r in first] == [1, 2, 3, 4]
    await ledger.park("cec", 5, "4003 invalid connector")
    await ledger.ack("cec", 4)
    await ledger.ack("cec", 2)  # never backwards
    assert await ledger.cursor("cec") == 4
    assert [r.seq for r in await ledger.read_batch("cec", 3)] == [6, 7, 8]
    assert await ledger.backlog("cec") == 5  # 6..10, 5 parked
    with pytest.raises(ValueError, match="only holds records up to 10"):
        await ledger.ack("cec", 11)
    # kinds filter: only orders after the cursor
    orders = await ledger.read_batch("cec", 10, kinds=["charge_order"])
    assert [r.seq for r in orders] == [7, 10]
    mixed = await ledger.read_batch("cec", 3, kinds={"charge_order", "meter_sample"})
    assert [r.seq for r in mixed] == [6, 7, 8]
    await ledger.close()
    ledger = await open_ledger(tmp_path / "l.db", key)
    assert await ledger.cursor("cec") == 4
    assert [r.seq for r in await ledger.read_batch("cec", 2)] == [6, 7]
    await ledger.close()


async def test_kind_filtered_batches_use_the_kind_index(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    await ledger.append(record(n=1))
    await ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    plan = " ".join(
        str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + _BATCH_KIND, (0, "x", "u", 5))
    )
    assert "records_kind" in plan
    assert "TEMP B-TREE" not in plan


async def test_find_by_session_and_connector(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    for n in range(6):
        await ledger.append(record("bms_process", n=n, session_id=f"S{n % 2}"))
    found = await ledger.find("bms_process", session_id="S1")
    assert [r.body["n"] for r in found] == [1, 3, 5]
    assert all(isinstance(r, StoredRecord) for r in found)
    by_connector = await ledger.find("bms_process", connector_id="1")
    assert [r.body["n"] for r in by_connector] == [0, 2, 4]
    newest = await ledger.find("bms_process", connector_id="1", limit=2, newest_first=True)
    assert [r.body["n"] for r in newest] == [4, 2]
    await ledger.close()


async def test_wait_appended_wakes_on_commit(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "l.db")
    assert await ledger.wait_appended(0, timeout_s=0.01) == 0
    waiter = asyncio.create_task(ledger.wait_appended(0, timeout_s=30))
    await asyncio.sleep(0)
    ledger.append_nowait(record(n=1))
    assert await waiter == 1
    await ledger.close()


async def test_second_writer_and_foreign_gateway_are_refused(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await open_ledger(tmp_path / "l.db", key)
    with pytest.raises(UserError, match="open for writing by another process"):
        await open_ledger(tmp_path / "l.db", key)
    await ledger.close()
    with pytest.raises(UserError, match="belongs to gateway 'GW1'"):
        await Ledger.open(tmp_path / "l.db", gateway_id="OTHER", key=key)
    with pytest.raises(UserError, match="is new: give the gateway id"):
        await Ledger.open(tmp_path / "new.db", gateway_id=None, key=key)
    reopened = await Ledger.open(tmp_path / "l.db", gateway_id=None, key=key)
    assert reopened.gateway_id == "GW1"
    await reopened.close()
