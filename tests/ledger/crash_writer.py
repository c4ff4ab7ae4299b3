"""The process the crash test kills: appends as fast as it can and reports what is durable.

Usage: ``python tests/ledger/crash_writer.py LEDGER KEY``. Lines on stdout:

- ``S <last_seq>``: opened; ``A <seq> <hash>``: ``append`` returned (the record is durable);
- ``C`` before and ``c <seq>`` after a checkpoint; ``K <seq>`` before and ``k <seq>`` after
  acknowledging uplink ``up`` up to ``seq``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.ledger import GatewayKey, Ledger
from agent.records.envelope import Record


def say(text: str) -> None:
    os.write(1, text.encode())


async def main(ledger_path: Path, key_path: Path) -> None:
    ledger = await Ledger.open(
        ledger_path, gateway_id="CRASH", key=GatewayKey.load(key_path), commit_interval_s=0.01
    )
    cursor = await ledger.cursor("up")
    say(f"S {ledger.last_seq}\n")
    rng = random.Random()
    n = 0
    while True:
        burst = rng.randint(1, 300)
        records = [
            Record(
                kind=rng.choice(("meter_sample", "bms_process", "charge_order")),
                ts="2026-03-01T10:00:00.000Z",
                station_id="ST1",
                connector_id=str(n % 2 + 1),
                body={"n": n + i, "energy_kwh": (n + i) / 10, "pad": "x" * rng.randint(0, 200)},
            )
            for i in range(burst)
        ]
        n += burst
        stored = await asyncio.gather(*(ledger.append(r) for r in records))
        say("".join(f"A {s.seq} {s.hash}\n" for s in stored))
        if rng.random() < 0.3:
            say("C\n")
            cp = await ledger.checkpoint()
            say(f"c {cp.seq}\n")
        if rng.random() < 0.3:
            upto = rng.randint(cursor, ledger.last_seq)
            say(f"K {upto}\n")
            await ledger.ack("up", upto)
            cursor = max(cursor, upto)
            say(f"k {upto}\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
