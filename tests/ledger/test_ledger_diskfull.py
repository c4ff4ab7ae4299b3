"""ENOSPC on a real small filesystem (a size-limited tmpfs): alarm, no crash, no loss."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
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
