"""Modbus meter driver benchmark.

1. RTU at 9600 baud through a socat pty pair (two simulated meters on one line, the
   simulator in its own process): reads per second against the line's physical limit —
   every request and reply byte at 11 bits, plus the 3.5-character silent interval before
   each frame. A pty does not throttle to the baud rate, so this measures the driver's own
   waits (pacing, timeouts, sleeps); the goal is >= 0.8 of the limit.
2. CPU per poll over Modbus TCP (simulator in its own process), against the peer: the same
   block reads and value decoding with plain pymodbus calls, in the same run. Goal: the
   driver costs <= 1.3x bare pymodbus.

Run: .venv/bin/python bench/modbus_poll.py [--seconds S] [--polls N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.decode import plan_reads
from drivers.modbus.link import SerialLineSpec, TcpLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles

REPO = Path(__file__).resolve().parent.parent

BITS_PER_BYTE = 11
BAUD = 9600


def start_sim(args: list[str], module: str = "sim.meter") -> tuple[subprocess.Popen[str], str]:
    """A simulator in its own process, once it said ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def wire_time_s(count: int) -> float:
    """One FC03/FC04 transaction at 9600 baud: 8-byte request, 5 + 2n byte reply, and the
    3.5-character silent interval before each of the two frames."""
    frame_bytes = 8 + 5 + 2 * count
    gap_chars = 2 * 3.5
    return (frame_bytes + gap_chars) * BITS_PER_BYTE / BAUD


def pty_pair() -> tuple[subprocess.Popen[bytes], Path]:
    """A socat pty pair ``<tmp>/a`` – ``<tmp>/b``; the folder is returned."""
    tmp = Path(tempfile.mkdtemp(prefix="evgw-bench-"))
    socat = subprocess.Popen(
        [
            shutil.which("socat") or "socat",
            f"pty,raw,echo=0,link={tmp}/a",
            f"pty,raw,echo=0,link={tmp}/b",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not ((tmp / "a").exists() and (tmp / "b").exists()):
        if time.monotonic() > deadline:
            raise SystemExit("socat did not create the pty pair")
        time.sleep(0.01)
    return socat, tmp


async def rtu_rate(seconds: float) -> dict[str, float]:
    profiles = load_profiles()
    socat, tmp = pty_pair()
    sim, _ = start_sim(
        [
            "--serial",
            str(tmp / "b"),
            "--baud",
            str(BAUD),
            "--meter",
            "djsf1352:1",
            "--meter",
            "dtsu666:2",
            "--power-w",
            "20000",
        ]
    )
    meters = [MeterSpec("dc", 1, "djsf1352"), MeterSpec("ac", 2, "dtsu666")]
    poller = LinePoller(SerialLineSpec(str(tmp / "a"), baud=BAUD, timeout_s=0.5), meters, profiles)
    plans = {m.meter_id: plan_reads(profiles[m.profile].resolve()) for m in meters}
    try:
        await poller.poll_line(0.0)  # open the port, warm up
        requests = 0
        wire = 0.0
        polls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            readings = await poller.poll_line(time.time())
            if len(readings) != 2:
                raise SystemExit("a poll failed during the benchmark")
            for plan in plans.values():
                requests += len(plan.blocks)
                wire += sum(wire_time_s(b.count) for b in plan.blocks)
            polls += 2
        elapsed = time.perf_counter() - start
    finally:
        poller.close()
        stop(sim)
        stop(socat)
    limit_rps = requests / wire
    rps = requests / elapsed
    return {
        "requests": requests,
        "polls": polls,
        "elapsed_s": elapsed,
        "reads_per_s": rps,
        "limit_reads_per_s": limit_rps,
        "ratio": rps / limit_rps,
    }


async def tcp_cpu(polls: int, rounds: int) -> dict[str, float]:
    profiles = load_profiles()
    profile = profiles["sdm630"]
    resolved = profile.resolve()
    plan = plan_reads(resolved)
    sim, ready = start_sim(["--tcp", "127.0.0.1:0", "--meter", "sdm630:1", "--power-w", "11000"])
    port = int(ready.rsplit(":", 1)[1])
    poller = LinePoller(
        TcpLineSpec("127.0.0.1", port, timeout_s=1.0),
        [MeterSpec("m", 1, "sdm630", rated_power_w=22_000)],
        profiles,
        lambda item: None,
    )
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=port, framer=FramerType.SOCKET, timeout=1.0, retries=0, reconnect_delay=0
    )
    await client.connect()
    f32 = client.DATATYPE.FLOAT32
    # the peer decodes every quantity with pymodbus's own register conversion
    layout = []
    for q in resolved.quantities:
        for i, b in enumerate(plan.blocks):
            if b.address <= q.address < b.address + b.count:
                layout.append((q.name, i, q.address - b.address, q.scale))

    async def bare_poll() -> dict[str, float]:
        blocks = []
        for b in plan.blocks:
            rr = await client.read_input_registers(b.address, count=b.count, device_id=1)
            if rr.isError():
                raise SystemExit(f"peer read failed: {rr}")
            blocks.append(rr.registers)
        return {
            name: client.convert_from_registers(blocks[i][off : off + 2], f32) * scale
            for name, i, off, scale in layout
        }

    async def driver_poll(k: int) -> None:
        if await poller.poll("m", float(k)) is None:
            raise SystemExit("driver poll failed")

    try:
        for k in range(50):  # warm up both
            await driver_poll(k)
            await bare_poll()
        driver_cpu: list[float] = []
        bare_cpu: list[float] = []
        k = 100
        for _ in range(rounds):
            t0 = time.process_time()
            for _ in range(polls):
                k += 1
                await driver_poll(k)
            driver_cpu.append((time.process_time() - t0) / polls)
            t0 = time.process_time()
            for _ in range(polls):
                await bare_poll()
            bare_cpu.append((time.process_time() - t0) / polls)
    finally:
        poller.close()
        client.close()
        stop(sim)
    d, b = statistics.median(driver_cpu), statistics.median(bare_cpu)
    return {
        "requests_per_poll": len(plan.blocks),
        "driver_cpu_ms": d * 1000,
        "bare_cpu_ms": b * 1000,
        "ratio": d / b,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="RTU measurement time")
    p.add_argument("--polls", type=int, default=300, help="TCP polls per round")
    p.add_argument("--rounds", type=int, default=5, help="TCP rounds (median reported)")
    args = p.parse_args()
    quiet_library_logging()
    rtu = asyncio.run(rtu_rate(args.seconds))
    print(f"RTU {BAUD} baud via pty, DJSF1352 (1 request) + DTSU666 (5 requests) on one line:")
    print(
        f"  {rtu['requests']} requests in {rtu['elapsed_s']:.2f} s = "
        f"{rtu['reads_per_s']:.1f} reads/s; physical line limit "
        f"{rtu['limit_reads_per_s']:.1f} reads/s -> ratio {rtu['ratio']:.2f} (goal >= 0.8)"
    )
    tcp = asyncio.run(tcp_cpu(args.polls, args.rounds))
    print(
        f"TCP CPU per poll, SDM630 ({tcp['requests_per_poll']} requests/poll, median of "
        f"{args.rounds} x {args.polls}):"
    )
    print(
        f"  driver {tcp['driver_cpu_ms']:.3f} ms, bare pymodbus {tcp['bare_cpu_ms']:.3f} ms "
        f"-> ratio {tcp['ratio']:.2f} (goal <= 1.3)"
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (benchmark process): {rss_mb:.1f} MB")
    ok = rtu["ratio"] >= 0.8 and tcp["ratio"] <= 1.3
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
