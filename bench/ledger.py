"""Ledger benchmark: durable appends, batch read + acknowledge, verify — against persist-queue.

Run: ``.venv/bin/python bench/ledger.py [--records N] [--peer-records N] [--dir DIR]``

Both stores write SQLite in WAL mode with ``synchronous=FULL`` on the same filesystem, with
the same record (a ``meter_sample`` envelope with a realistic body). persist-queue's
``SQLiteAckQueue`` commits every ``put`` and every ``ack`` (that is its durability model);
the ledger group-commits and additionally hashes every record and signs a checkpoint every
1,000 records (as an uplink batch would ask for).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines
from agent.ledger.verify import verify_lines
from agent.records.envelope import Record

BATCH = 1000


def sample(n: int) -> Record:
    return Record(
        kind="meter_sample",
        ts="2026-03-01T10:00:00.000Z",
        station_id="4403000001",
        equipment_id="EQ0001",
        connector_id=f"EQ0001-{n % 2 + 1}",
        body={
            "meter_id": "M1",
            "power_kw": 59.8 + (n % 100) / 10,
            "energy_kwh": 10432.25 + n / 100,
            "voltage_v": 398.6,
            "current_a": 150.2,
            "session_id": f"S{n // 5000:06d}",
        },
    )


async def ledger_appends(path: Path, key: GatewayKey, records: list[Record]) -> float:
    """append_nowait at full speed, a signed checkpoint every 1,000 records, then flush."""
    ledger = await Ledger.open(path, gateway_id="BENCH-GW", key=key)
    start = time.perf_counter()
    for i, rec in enumerate(records):
        ledger.append_nowait(rec)
        if i % BATCH == BATCH - 1:
            await asyncio.sleep(0)  # let commits land, as a live loop does
            await ledger.checkpoint()
    await ledger.flush()
    await ledger.checkpoint()
    elapsed = time.perf_counter() - start
    await ledger.close()
    return len(records) / elapsed


async def ledger_awaited_appends(path: Path, key: GatewayKey, records: list[Record]) -> float:
    """``await append()`` from 1,000 concurrent producers: each returns only once durable."""
    ledger = await Ledger.open(path, gateway_id="BENCH-GW", key=key)
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):
        await asyncio.gather(*(ledger.append(r) for r in records[i : i + BATCH]))
        await ledger.checkpoint()
    elapsed = time.perf_counter() - start
    await ledger.close()
    return len(records) / elapsed


async def ledger_read_ack(path: Path, key: GatewayKey) -> tuple[float, int]:
    ledger = await Ledger.open(path, gateway_id="BENCH-GW", key=key)
    count = 0
    start = time.perf_counter()
    while batch := await ledger.read_batch("mqtt", BATCH):
        await ledger.checkpoint()
        await ledger.ack("mqtt", batch[-1].seq)
        count += len(batch)
    elapsed = time.perf_counter() - start
    await ledger.close()
    return count / elapsed, count


def verify_rate(path: Path, key: GatewayKey) -> tuple[float, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    start = time.perf_counter()
    report = verify_lines(export_lines(conn), [key.public])
    elapsed = time.perf_counter() - start
    conn.close()
    assert report.ok, report.problems[:3]
    return report.records / elapsed, report.records


def peer_queue(directory: Path):  # type: ignore[no-untyped-def]
    from persistqueue import SQLiteAckQueue

    queue = SQLiteAckQueue(str(directory), auto_commit=True, multithreading=True)
    for conn in (getattr(queue, "_putter", None), getattr(queue, "_getter", None)):
        if conn is not None:
            conn.execute("PRAGMA synchronous=FULL")
    return queue


def peer_put(directory: Path, items: list[dict[str, object]]) -> float:
    queue = peer_queue(directory)
    start = time.perf_counter()
    for item in items:
        queue.put(item)
    elapsed = time.perf_counter() - start
    queue.close()
    return len(items) / elapsed


def peer_get_ack(directory: Path, count: int) -> float:
    queue = peer_queue(directory)
    start = time.perf_counter()
    for _ in range(count):
        item = queue.get(block=False)
        queue.ack(item)
    elapsed = time.perf_counter() - start
    queue.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="records for the ledger")
    parser.add_argument(
        "--peer-records", type=int, default=5_000, help="records for persist-queue (slower)"
    )
    parser.add_argument("--dir", type=Path, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="evgw-bench-", dir=args.dir))
    try:
        key = GatewayKey.generate()
        records = [sample(n) for n in range(args.records)]
        peer_items = [msgspec.structs.asdict(sample(n)) for n in range(args.peer_records)]

        append_rate = asyncio.run(ledger_appends(base / "a.db", key, records))
        awaited_rate = asyncio.run(
            ledger_awaited_appends(base / "b.db", key, records[: args.records // 2])
        )
        read_rate, read_count = asyncio.run(ledger_read_ack(base / "a.db", key))
        verify_speed, verified = verify_rate(base / "a.db", key)
        peer_put_rate = peer_put(base / "pq", peer_items)
        peer_get_rate = peer_get_ack(base / "pq", args.peer_records)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def row(label: str, rate: float) -> None:
        print(f"  {label:<64}{rate:>10,.0f}/s")

    print(f"ledger benchmark — SQLite WAL, synchronous=FULL, filesystem of {base.parent}")
    print(f"  records: ledger {args.records:,}, persist-queue {args.peer_records:,}")
    row("durable appends (append_nowait + flush, hash, checkpoint per 1k)", append_rate)
    row("durable appends (await append, 1k concurrent, checkpoint per 1k)", awaited_rate)
    row("persist-queue SQLiteAckQueue.put", peer_put_rate)
    print(f"    ratio append_nowait / put: {append_rate / peer_put_rate:,.1f}x (goal >= 10x)")
    print(f"    ratio await append / put:  {awaited_rate / peer_put_rate:,.1f}x")
    row(f"read_batch(1000) + checkpoint + ack ({read_count:,} records)", read_rate)
    row("persist-queue get + ack", peer_get_rate)
    print(f"    ratio: {read_rate / peer_get_rate:,.1f}x (goal >= 20x)")
    row(f"verify: export + chain + signatures ({verified:,} records)", verify_speed)
    print(f"  peak RSS: {rss_mib:,.0f} MiB (includes the pre-built record lists)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
