"""ENOSPC on a real small filesystem (a size-limited tmpfs): alarm, no crash, nothing lost
silently — opening on a full disk, a bounded memory buffer, a stop that cannot write, and a WAL
that is folded back into the main file so the size cap holds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.store import size_on_disk
from agent.ledger.verify import verify_lines
from tests.ledger.helpers import record


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs; skipped where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def until(condition: object, what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition()`` (the ledger reports asynchronously); fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def fill_disk(directory: Path) -> Path:
    """Take every free byte of the filesystem with one file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


async def test_full_disk_raises_alarm_keeps_running_and_loses_nothing(small_fs: Path) -> None:
    key = GatewayKey.generate()
    health: list[str] = []
    ledger = await Ledger.open(
        small_fs / "l.db", gateway_id="GW1", key=key, on_health=lambda h, _m: health.append(h)
    )
    durable = [await ledger.append(record("charge_order", n=n)) for n in range(50)]
    await ledger.ack("mqtt", 20)
    filler = fill_disk(small_fs)

    # the disk is full: appends are accepted into memory, the ledger raises disk_full
    for n in range(50, 1050):
        ledger.append_nowait(record("meter_sample", n=n, pad="m" * 200))
    pending_order = asyncio.create_task(ledger.append(record("charge_order", n=1050)))
    await until(lambda: ledger.health == "disk_full", "the disk_full health state")
    assert health[0] == "disk_full"
    assert "disk_full" in ledger.conditions
    assert not pending_order.done()  # not reported durable while it is not
    assert await ledger.cursor("mqtt") == 20

    # space comes back: the ledger retries on its own and everything lands, in order
    filler.unlink()
    stored = await asyncio.wait_for(pending_order, 60)
    await until(lambda: ledger.health == "ok", "health back to ok")
    assert health[-1] == "ok"
    await ledger.flush()
    batch = await ledger.read_batch("audit", 10_000)
    await ledger.close()

    seqs = [r.seq for r in batch]
    assert seqs == list(range(1, len(batch) + 1))
    assert [r.hash for r in batch[:50]] == [r.hash for r in durable]
    ns = [r.body["n"] for r in batch if "n" in r.body]
    assert ns == list(range(1051))
    assert batch[stored.seq - 1].hash == stored.hash
    alarms = [r.body for r in batch if r.kind == "alarm"]
    assert [(a["code"], a["status"]) for a in alarms] == [
        ("LEDGER_DISK_FULL", "raised"),
        ("LEDGER_DISK_FULL", "cleared"),
    ]
    conn = open_for_reading(small_fs / "l.db")
    try:
        report = verify_lines(export_lines(conn), [key.public])
    finally:
        conn.close()
    assert report.ok, report.problems[:5]
    assert os.path.exists(small_fs / "l.db")


def verified(path: Path, key: GatewayKey) -> list[dict[str, object]]:
    conn = open_for_reading(path)
    try:
        lines = list(export_lines(conn))
    finally:
        conn.close()
    report = verify_lines(lines, [key.public])
    assert report.ok, report.problems[:5]
    return [json.loads(x) for x in lines if x.startswith(b'{"body"')]


async def test_opens_on_a_full_disk_reads_and_keeps_new_records(small_fs: Path) -> None:
    key = GatewayKey.generate()
    path = small_fs / "l.db"
    ledger = await Ledger.open(path, gateway_id="GW1", key=key)
    orders = [await ledger.append(record("charge_order", n=n, session_id="S1")) for n in range(20)]
    await ledger.close()
    filler = fill_disk(small_fs)

    opened = asyncio.create_task(Ledger.open(path, gateway_id="GW1", key=key))
    ledger = await asyncio.wait_for(opened, 10)  # never hangs before the service is ready
    assert [r.hash for r in await ledger.read_batch("mqtt", 100)] == [r.hash for r in orders]
    found = await ledger.find("charge_order", session_id="S1", newest_first=True, limit=1)
    assert found[0].seq == 20
    for n in range(20, 60):
        ledger.append_nowait(record("charge_order", n=n))
    await until(lambda: ledger.health == "disk_full", "the disk_full health state")
    filler.unlink()
    assert await asyncio.wait_for(ledger.flush(), 60) >= 60
    await until(lambda: ledger.health == "ok", "health back to ok")
    await ledger.close()
    ns = [r["body"]["n"] for r in verified(path, key) if r["kind"] == "charge_order"]  # type: ignore[index]
    assert ns == list(range(60))


async def test_memory_is_bounded_by_dropping_old_samples_never_orders(small_fs: Path) -> None:
    key = GatewayKey.generate()
    path = small_fs / "l.db"
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, memory_bound_bytes=64 * 1024)
    await ledger.append(record("charge_order", n=0))
    filler = fill_disk(small_fs)
    for n in range(1, 2001):
        kind = "charge_order" if n % 50 == 0 else "meter_sample"
        ledger.append_nowait(record(kind, n=n, pad="m" * 300))
    await until(lambda: ledger.health == "disk_full", "the disk_full health state")
    filler.unlink()
    await asyncio.wait_for(ledger.flush(), 60)
    await until(lambda: ledger.health == "ok", "health back to ok")
    await ledger.close()

    records = verified(path, key)  # every stub is declared by an event
    orders = [r["body"]["n"] for r in records if r["kind"] == "charge_order"]  # type: ignore[index]
    assert orders == list(range(0, 2001, 50))
    kept = [r for r in records if r["kind"] == "meter_sample"]
    events = [r["body"] for r in records if r["kind"] == "event"]
    drops = [e for e in events if e["event"] == "buffer_dropped"]  # type: ignore[index]
    assert drops, "nothing was dropped from memory"
    dropped = sum(d["count"] for e in drops for d in e["dropped"])  # type: ignore[index]
    assert len(kept) + dropped == 2000 - 40
    assert dropped > 0 and kept


async def test_a_stop_on_a_full_disk_declares_exactly_what_it_could_not_write(
    small_fs: Path,
) -> None:
    key = GatewayKey.generate()
    path = small_fs / "l.db"
    ledger = await Ledger.open(path, gateway_id="GW1", key=key)
    durable = await ledger.append(record("charge_order", n=0))
    filler = fill_disk(small_fs)
    pending = [ledger.append_nowait(record("charge_order", n=n)) for n in range(1, 31)]
    assert len(pending) == 30
    await until(lambda: ledger.health == "disk_full", "the disk_full health state")
    await ledger.close(timeout_s=0.5)
    filler.unlink()

    ledger = await Ledger.open(path, gateway_id="GW1", key=key)
    after = await ledger.append(record("charge_order", n=99))
    await ledger.close()
    records = verified(path, key)
    by_seq = {int(r["seq"]): r for r in records}  # type: ignore[call-overload]
    lost_events = [
        r for r in records if r["kind"] == "event" and r["body"]["event"] == "records_lost"
    ]  # type: ignore[index]
    assert len(lost_events) == 1
    (loss,) = lost_events[0]["body"]["lost"]  # type: ignore[index]
    lost = set(range(loss["from_seq"], loss["to_seq"] + 1))
    written = [r["body"]["n"] for r in records if r["kind"] == "charge_order"]  # type: ignore[index]
    # every order handed over is either written or in the declared loss, never both
    assert not lost & set(by_seq)
    assert written[0] == 0 and written[-1] == 99
    assert len(written) - 2 + loss["kinds"].get("charge_order", 0) == 30
    assert sum(loss["kinds"].values()) == loss["count"] == len(lost)
    assert after.seq > max(lost) and durable.seq in by_seq


async def test_the_wal_is_folded_in_so_the_cap_holds(small_fs: Path) -> None:
    key = GatewayKey.generate()
    cap = 1024 * 1024
    path = small_fs / "l.db"
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, size_cap_bytes=cap)
    await ledger.register_uplink("mqtt")
    biggest = 0
    for n in range(6000):
        ledger.append_nowait(record("meter_sample", n=n, pad="w" * 300))
        if n % 200 == 199:
            await ledger.flush()
            await ledger.checkpoint()
            await ledger.ack("mqtt", ledger.last_seq)
            biggest = max(biggest, size_on_disk(path))
    health = ledger.health
    await ledger.close()
    assert health == "ok"
    assert biggest <= 2 * cap, f"ledger and WAL took {biggest} bytes under a cap of {cap}"
    verified(path, key)
