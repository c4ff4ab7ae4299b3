"""The running agent's footprint on the default demo station: RSS and CPU per connector.

The simulated station (meters over Modbus TCP, GB/T sessions on virtual CAN buses) runs in
this process; the gateway runs as a real ``evgw run`` subprocess, so its RSS and CPU time
(from /proc) are its own. Measured twice in the same run: with the station idle (the peer:
what an agent costs doing nothing), then while both DC connectors and the AC connector
charge. Goals: RSS <= 60 MB; CPU <= 1 % of a core per charging connector.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.demo.station import DemoStation, write_demo_config

CLK_TCK = os.sysconf("SC_CLK_TCK")
CHARGING_CONNECTORS = 3


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def window(pid: int, seconds: float) -> float:
    """CPU use of ``pid`` over ``seconds``, as a percentage of one core."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def main(args: argparse.Namespace) -> int:
    state = Path(tempfile.mkdtemp(prefix="evgw-footprint-"))
    station = DemoStation()
    port = await station.start_meters()
    config = write_demo_config(state, port)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "RUNTIME_DIRECTORY": str(state)},
    )
    try:
        await asyncio.sleep(args.warmup)
        idle_cpu = await window(proc.pid, args.window)
        idle_rss = rss_mb(proc.pid)
        station.start_sessions()
        await asyncio.sleep(12.0)  # handshakes done, all three connectors charging
        busy_cpu = await window(proc.pid, args.window)
        busy_rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)
        await station.stop()
    # conservative: the whole agent's CPU while charging, idle overhead included, per connector
    per_connector = busy_cpu / CHARGING_CONNECTORS
    print(
        f"agent footprint, demo station, {CHARGING_CONNECTORS} connectors, "
        f"{args.window:.0f} s windows"
    )
    print(f"  idle (peer):      RSS {idle_rss:6.1f} MB   CPU {idle_cpu:5.2f} % of a core")
    print(f"  charging:         RSS {busy_rss:6.1f} MB   CPU {busy_cpu:5.2f} % of a core")
    print(f"  RSS goal <= 60 MB: {'PASS' if busy_rss <= 60 else 'FAIL'} ({busy_rss:.1f} MB)")
    print(
        f"  CPU per charging connector (whole agent / connectors): {per_connector:.2f} % "
        f"(goal <= 1 %: {'PASS' if per_connector <= 1.0 else 'FAIL'}); "
        f"ratio charging/idle CPU {busy_cpu / idle_cpu if idle_cpu else float('inf'):.1f}x"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per measurement")
    sys.exit(asyncio.run(main(parser.parse_args())))
