"""Start-up check and recovery: a damaged file is moved aside (never deleted), a new ledger
continues the old chain from its last good hash with an ``event``, and an alarm is raised."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.verify import verify_lines
from tests.ledger.helpers import record


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


async def test_garbage_pages_are_moved_aside_and_the_good_prefix_continues(
    tmp_path: Path,
) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    hashes = await make(path, key, 400)
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + 3 * page] = b"\xa5" * (3 * page)
    path.write_bytes(bytes(data))
    damaged = digest(path)

    ledger, seen = await reopen(path, key)
    rec = ledger.recovery
    assert rec is not None
    assert ledger.health == "recovered_from_corruption"
    assert seen and seen[0][0] == "recovered_from_corruption"
    assert rec.moved_to.exists() and digest(rec.moved_to) == damaged  # kept, untouched
    assert 0 < rec.last_good_seq < 400
    assert rec.event_seq == 401 and (rec.lost_from_seq, rec.lost_to_seq) == (
        rec.last_good_seq + 1,
        400,
    )
    assert await ledger.cursor("mqtt") == 30
    after = await ledger.append(record("charge_order", n=9999))
    assert after.seq == 403  # 401: recovery event, 402: alarm
    await ledger.close()

    records = export_verifies(path, key)
    by_seq = {r["seq"]: r for r in records}
    assert [by_seq[s]["hash"] for s in range(1, rec.last_good_seq + 1)] == hashes[
        : rec.last_good_seq
    ]
    event = by_seq[401]
    assert event["kind"] == "event"
    assert event["body"]["event"] == "ledger_recovered"  # type: ignore[index]
    assert event["prev"] == hashes[rec.last_good_seq - 1]
    assert event["body"]["previous_file"] == str(rec.moved_to)  # type: ignore[index]
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
    assert rec.last_good_seq == 54
    assert (rec.lost_from_seq, rec.lost_to_seq, rec.event_seq) == (55, 60, 61)
    await ledger.close()
    records = export_verifies(path, key)
    assert [r["hash"] for r in records[:54]] == hashes[:54]


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
