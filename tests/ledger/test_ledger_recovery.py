"""Start-up check and recovery: a damaged file is moved aside (never deleted), every record
that still verifies is salvaged (also after the damage), the new file continues the chain in
a new epoch with an ``event`` that declares exactly what was lost, and an alarm is raised."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger, salvage
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.pages import varint
from agent.ledger.verify import verify_lines
from tests.ledger.helpers import record

PAGE = 4096


async def make(path: Path, key: GatewayKey, count: int) -> list[str]:
    ledger = await Ledger.open(path, gateway_id="GW1", key=key)
    hashes = []
    for n in range(count):
        hashes.append((await ledger.append(record("charge_order", n=n, pad="x" * 200))).hash)
        if n % 50 == 49:
            await ledger.checkpoint()
    await ledger.ack("mqtt", min(30, count))
    await ledger.close()
    return hashes


async def reopen(path: Path, key: GatewayKey) -> tuple[Ledger, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    ledger = await Ledger.open(
        path, gateway_id="GW1", key=key, on_health=lambda h, m: seen.append((h, m))
    )
    return ledger, seen


def export_verifies(path: Path, key: GatewayKey) -> list[dict[str, object]]:
    import json

    conn = open_for_reading(path)
    try:
        lines = list(export_lines(conn))
    finally:
        conn.close()
    report = verify_lines(lines, [key.public])
    assert report.ok, report.problems[:5]
    return [json.loads(x) for x in lines if not x.startswith((b'{"checkpoint"', b'{"stub"'))]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_healthy_file_is_left_alone(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    await make(tmp_path / "l.db", key, 20)
    ledger, seen = await reopen(tmp_path / "l.db", key)
    assert ledger.health == "ok" and ledger.recovery is None and not seen
    assert ledger.last_seq == 20
    await ledger.close()
    assert not list(tmp_path.glob("*.corrupt-*"))


def seqs_on_pages(data: bytes, first: int, count: int) -> set[int]:
    """The seqs of the ``records`` rows held by pages ``first .. first+count-1`` (0-based)."""
    found = set()
    for index in range(first, first + count):
        page = data[index * PAGE : (index + 1) * PAGE]
        if page[0] != 0x0D:
            continue
        for i in range(struct.unpack_from(">H", page, 3)[0]):
            cell = struct.unpack_from(">H", page, 8 + 2 * i)[0]
            _size, pos = varint(page, cell)
            rowid, pos = varint(page, pos)
            if b'"kind":"charge_order"' in page[pos : pos + 4096]:
                found.add(rowid)
    return found


async def test_garbage_pages_are_moved_aside_and_all_else_is_salvaged(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    hashes = await make(path, key, 400)
    data = bytearray(path.read_bytes())
    middle = len(data) // PAGE // 2
    lost = seqs_on_pages(bytes(data), middle, 3)
    assert lost, "the garbage must hit pages of records for this test"
    data[middle * PAGE : (middle + 3) * PAGE] = b"\xa5" * (3 * PAGE)
    path.write_bytes(bytes(data))
    damaged = digest(path)

    ledger, seen = await reopen(path, key)
    rec = ledger.recovery
    assert rec is not None
    assert ledger.health == "recovered_from_corruption"
    assert seen and seen[0][0] == "recovered_from_corruption"
    assert rec.moved_to is not None and rec.moved_to.exists()
    assert digest(rec.moved_to) == damaged  # kept, untouched
    # exactly the records on the garbled pages are lost, and declared with their kind
    declared = {s for loss in rec.losses for s in range(loss.from_seq, loss.to_seq + 1)}
    assert declared == lost
    assert sum(loss.kinds.get("charge_order", 0) + loss.unknown_kind for loss in rec.losses) == len(
        lost
    )
    assert rec.last_good_seq == 400 and rec.event_seq == 401 and rec.epoch == 1
    assert await ledger.cursor("mqtt") == 30
    after = await ledger.append(record("charge_order", n=9999))
    assert (after.seq, after.id) == (403, "GW1:1:403")  # 401: recovery event, 402: alarm
    await ledger.close()

    records = export_verifies(path, key)
    by_seq = {r["seq"]: r for r in records}
    for seq in range(1, 401):
        if seq in lost:
            assert seq not in by_seq
        else:
            assert by_seq[seq]["hash"] == hashes[seq - 1]
    event = by_seq[401]
    assert event["kind"] == "event" and event["id"] == "GW1:1:401"
    body = event["body"]
    assert body["event"] == "ledger_recovered"  # type: ignore[index]
    assert event["prev"] == hashes[399] == body["last_good_hash"]  # type: ignore[index]
    assert body["previous_file"] == str(rec.moved_to)  # type: ignore[index]
    assert body["lost_count"] == len(lost)  # type: ignore[index]
    alarm = by_seq[402]
    assert alarm["kind"] == "alarm"
    assert alarm["body"]["code"] == "LEDGER_RECOVERED"  # type: ignore[index]


async def test_tampered_tail_row_is_caught_by_the_chain_check(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    hashes = await make(path, key, 60)
    conn = sqlite3.connect(path)
    data = conn.execute("SELECT data FROM records WHERE seq = 55").fetchone()[0]
    conn.execute(
        "UPDATE records SET data = ? WHERE seq = 55", (data.replace(b'"n":54', b'"n":99'),)
    )
    conn.commit()
    conn.close()
    ledger, _seen = await reopen(path, key)
    rec = ledger.recovery
    assert rec is not None and "record 55" in rec.reason
    assert (rec.lost_from_seq, rec.lost_to_seq, rec.lost) == (55, 55, 1)
    assert rec.losses[0].kinds == {"charge_order": 1}
    assert (rec.last_good_seq, rec.event_seq) == (60, 61)
    await ledger.close()
    records = export_verifies(path, key)
    assert [r["hash"] for r in records[:54]] == hashes[:54]
    assert [r["hash"] for r in records[54:59]] == hashes[55:60]  # kept after the bad one


async def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not sqlite" * 500)
    ledger, _seen = await reopen(path, key)
    rec = ledger.recovery
    assert rec is not None and rec.last_good_seq == 0 and rec.event_seq == 1
    assert rec.moved_to.read_bytes() == b"this is not sqlite" * 500
    assert (await ledger.append(record(n=1))).seq == 3
    await ledger.close()
    export_verifies(path, key)


async def test_a_long_salvage_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service turns these into systemd start-timeout extensions (it may take minutes)."""
    monkeypatch.setattr(salvage, "PROGRESS_EVERY_S", 0.0)
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    await make(path, key, 100)
    data = bytearray(path.read_bytes())
    data[:16] = bytes(16)
    path.write_bytes(bytes(data))
    told: list[str] = []
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, on_progress=told.append)
    assert ledger.recovery is not None and ledger.recovery.salvaged == 100
    await ledger.close()
    assert any(m.startswith("salvaging the damaged ledger: page") for m in told)
    assert any(m.startswith("rebuilding the damaged ledger: seq") for m in told)
