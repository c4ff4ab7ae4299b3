"""DL/T 645 meter driver benchmark.

1. Poll rate at 2400 baud 8E1 through a socat pty pair with the simulator in its own
   process and **paced** as a real line: every reply waits for the wire time of the request
   and the reply (11 bits a character) plus a 3.5-character turnaround. Reads per second
   against the physical line limit — every request and reply byte, the four FE wake-up
   bytes included, plus a 3.5-character silent interval before each of the two frames.
   Goal: >= 0.8 of the limit.
2. CPU per poll against the Modbus driver, both over an unpaced pty with their simulators
   in their own processes: a DCM3366Q poll (6 identifiers, one request each) against a
   DJSF1352 Modbus poll (one block read), per poll and per request. Goal: a DL/T 645
   request costs no more CPU than a Modbus one (<= 1.0x).

Run: .venv/bin/python bench/dlt645_poll.py [--seconds S] [--polls N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from modbus_poll import pty_pair, start_sim, stop

from drivers.dlt645.frame import encode_frame, read_request
from drivers.dlt645.poller import Dlt645Poller, DltMeterSpec
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.modbus.decode import plan_reads
from drivers.modbus.link import SerialLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles

BITS_PER_CHAR = 11  # start, 8 data, even parity, stop
BAUD = 2400
ADDRESS = "000012345678"
REPLY_VALUE_BYTES = {"XXXXXX.XX": 4, "XXX.X": 2, "XXX.XXX": 3, "XX.XXXX": 3}


def wire_time_s(value_bytes: int) -> float:
    """One read at 2400 baud: request and reply frames (FE preamble included) and the
    3.5-character silent interval before each."""
    request = len(encode_frame(read_request(ADDRESS, 0)))
    reply = request + value_bytes
    return (request + reply + 2 * 3.5) * BITS_PER_CHAR / BAUD


def dlt_poller(port: str, baud: int) -> Dlt645Poller:
    spec = DltMeterSpec("dc", ADDRESS, "dcm3366q", seal_interval_s=1e9, retries=0)
    line = SerialLineSpec(port, baud=baud, parity="E", timeout_s=1.0)
    return Dlt645Poller(line, [spec], load_dlt645_profiles(), lambda item: None)


async def paced_rate(seconds: float) -> dict[str, float]:
    socat, tmp = pty_pair()
    sim, _ = start_sim(
        [
            "--serial",
            str(tmp / "b"),
            "--baud",
            str(BAUD),
            "--paced",
            "--meter",
            f"dcm3366q:{ADDRESS}",
        ],
        module="sim.dlt645_meter",
    )
    poller = dlt_poller(str(tmp / "a"), BAUD)
    profile = load_dlt645_profiles()["dcm3366q"]
    per_poll = sum(wire_time_s(REPLY_VALUE_BYTES[q.format.pattern]) for q in profile.quantities)
    try:
        if await poller.poll("dc", time.time()) is None:  # open the port, read the seal once
            raise SystemExit(f"no reading: {poller.health('dc').last_error}")
        polls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            if await poller.poll("dc", time.time()) is None:
                raise SystemExit("a poll failed during the benchmark")
            polls += 1
        elapsed = time.perf_counter() - start
    finally:
        poller.close()
        stop(sim)
        stop(socat)
    requests = polls * len(profile.quantities)
    rps, limit = requests / elapsed, requests / (polls * per_poll)
    return {"requests": requests, "elapsed_s": elapsed, "rps": rps, "limit": limit}


async def cpu_per_poll(poll: Callable[[int], Awaitable[object]], polls: int, rounds: int) -> float:
    for k in range(20):
        await poll(k)
    samples = []
    k = 100
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(polls):
            k += 1
            await poll(k)
        samples.append((time.process_time() - t0) / polls)
    return statistics.median(samples)


async def cpu(polls: int, rounds: int) -> dict[str, float]:
    socat, tmp = pty_pair()
    sim, _ = start_sim(
        ["--serial", str(tmp / "b"), "--baud", "9600", "--meter", f"dcm3366q:{ADDRESS}"],
        module="sim.dlt645_meter",
    )
    dlt = dlt_poller(str(tmp / "a"), 9600)

    async def dlt_poll(k: int) -> None:
        if await dlt.poll("dc", float(k)) is None:
            raise SystemExit("DL/T 645 poll failed")

    try:
        dlt_s = await cpu_per_poll(dlt_poll, polls, rounds)
    finally:
        dlt.close()
        stop(sim)
        stop(socat)
    socat, tmp = pty_pair()
    sim, _ = start_sim(["--serial", str(tmp / "b"), "--baud", "9600", "--meter", "djsf1352:1"])
    modbus = LinePoller(
        SerialLineSpec(str(tmp / "a"), baud=9600, timeout_s=1.0),
        [MeterSpec("dc", 1, "djsf1352", retries=0)],
        load_profiles(),
        lambda item: None,
    )

    async def modbus_poll(k: int) -> None:
        if await modbus.poll("dc", float(k)) is None:
            raise SystemExit("Modbus poll failed")

    try:
        modbus_s = await cpu_per_poll(modbus_poll, polls, rounds)
    finally:
        modbus.close()
        stop(sim)
        stop(socat)
    dlt_requests = len(load_dlt645_profiles()["dcm3366q"].quantities)
    modbus_requests = len(plan_reads(load_profiles()["djsf1352"].resolve()).blocks)
    return {
        "dlt_ms": dlt_s * 1000,
        "modbus_ms": modbus_s * 1000,
        "dlt_requests": dlt_requests,
        "modbus_requests": modbus_requests,
        "per_request_ratio": (dlt_s / dlt_requests) / (modbus_s / modbus_requests),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="paced measurement time")
    p.add_argument("--polls", type=int, default=100, help="CPU polls per round")
    p.add_argument("--rounds", type=int, default=5, help="CPU rounds (median reported)")
    args = p.parse_args()
    quiet_library_logging()
    rate = asyncio.run(paced_rate(args.seconds))
    ratio = rate["rps"] / rate["limit"]
    print(f"DL/T 645 at {BAUD} baud 8E1 via pty, paced as a real line, DCM3366Q (6 reads/poll):")
    print(
        f"  {rate['requests']:.0f} reads in {rate['elapsed_s']:.2f} s = {rate['rps']:.2f} reads/s; "
        f"physical line limit {rate['limit']:.2f} reads/s -> ratio {ratio:.2f} (goal >= 0.8)"
    )
    c = asyncio.run(cpu(args.polls, args.rounds))
    print(f"CPU per poll over an unpaced pty (median of {args.rounds} x {args.polls}):")
    print(
        f"  DL/T 645 {c['dlt_ms']:.3f} ms ({c['dlt_requests']} requests), Modbus "
        f"{c['modbus_ms']:.3f} ms ({c['modbus_requests']} request(s)) -> per request ratio "
        f"{c['per_request_ratio']:.2f} (goal <= 1.0), per poll ratio "
        f"{c['dlt_ms'] / c['modbus_ms']:.2f}"
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (benchmark process): {rss_mb:.1f} MB")
    ok = ratio >= 0.8 and c["per_request_ratio"] <= 1.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
