"""`make bench`: run every benchmark in turn, then print one summary table.

Each benchmark prints its own figures (and measures its peer in the same run); the table
collects the lines that state a ratio, a goal or a verdict.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = (
    "can_decode",
    "modbus_poll",
    "dlt645_poll",
    "ledger",
    "ledger_startup",
    "station",
    "uplink",
    "agent_footprint",
)
KEYWORDS = ("ratio", "goal", "target", "PASS", "FAIL", "peak RSS", "/s")


def main() -> int:
    rows: list[tuple[str, str, str]] = []
    failed = False
    for name in ORDER:
        print(f"\n=== bench/{name}.py ===", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(BENCH / f"{name}.py")], capture_output=True, text=True
        )
        print(result.stdout, end="")
        if result.returncode != 0:
            failed = True
            print(result.stderr, end="")
        took = f"{time.monotonic() - started:.0f} s"
        picked = [
            line.strip() for line in result.stdout.splitlines() if any(k in line for k in KEYWORDS)
        ]
        for i, line in enumerate(picked or [f"exit {result.returncode}"]):
            rows.append((name if i == 0 else "", took if i == 0 else "", line))
    width = max(len(r[0]) for r in rows)
    print("\n=== summary ===")
    for name, took, line in rows:
        print(f"{name:<{width}}  {took:>5}  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
