"""`evgw meter read|scan|profiles --protocol dlt645` as subprocesses against the simulator.

The line runs 8N1 here: a Linux pty refuses a second even-parity setup once one was closed
(EINVAL from tcsetattr), and every subprocess opens the port anew; the codec does not care."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from drivers.dlt645.profile import load_dlt645_profiles
from sim.dlt645_meter import Dlt645SimServer, SimDltMeter
from tests.conftest import REPO, open_pty_pair

PROFILES = load_dlt645_profiles()
EVGW = [sys.executable, "-m", "agent.cli"]
ADDRESS = "201912345678"


async def evgw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EVGW, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_read_json_text_and_scan(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    meter = SimDltMeter(PROFILES["dtsu666-dlt645"], ADDRESS, power_w=11_000.0)
    meter.energy_import_kwh = 812.34
    meter.counts["terminal_cover_open"] = 2
    server = Dlt645SimServer([meter])
    await server.start_serial(pair.b, baud=9600, parity="N")
    read = ["meter", "read", "--protocol", "dlt645", "--port", pair.a, "--baud", "9600"]
    read += ["--parity", "N"]
    try:
        rc, out, err = await evgw(*read, "--address", ADDRESS, "--profile", "dlt645-2007", "--json")
        assert rc == 0, err
        values = json.loads(out)
        assert values["energy_import_kwh"] == 812.34
        assert values["power_w"] == 11000.0 and values["voltage_l1_v"] == 230.0
        assert set(values) == {q.name for q in PROFILES["dlt645-2007"].quantities}

        rc, out, err = await evgw(*read, "--profile", "dtsu666-dlt645")  # wildcard address
        assert rc == 0, err
        assert f"address AAAAAAAAAAAA on {pair.a} 9600 8N1" in out
        assert "terminal_cover_open count" in out and "serial" in out

        rc, out, err = await evgw(
            "meter", "scan", "--protocol", "dlt645", "--port", pair.a, "--timeout", "0.3",
            "--parity", "N", "--bauds", "9600,2400",
        )  # fmt: skip
        assert rc == 0, err
        assert f'address = "{ADDRESS}"' in out and "baud = 9600" in out
        assert 'protocol = "dlt645"' in out and "asking" in err

        meter.silent = True
        rc, out, err = await evgw(*read, "--address", ADDRESS, "--profile", "dlt645-2007")
        assert rc == 1 and "no answer within" in err and "Traceback" not in err
    finally:
        await server.stop()
        pair.close()


async def test_collision_and_bad_input(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    meters = [SimDltMeter(PROFILES["dcm3366q"], a) for a in ("000000000001", "000000000002")]
    server = Dlt645SimServer(meters)
    await server.start_serial(pair.b, baud=2400, parity="N")
    try:
        rc, _, err = await evgw(
            "meter", "scan", "--protocol", "dlt645", "--port", pair.a, "--bauds", "2400",
            "--parity", "N",
        )  # fmt: skip
        assert rc == 1 and "collision" in err and "Traceback" not in err
        rc, _, err = await evgw(
            "meter", "read", "--protocol", "dlt645", "--port", pair.a,
            "--address", "12345678901X", "--profile", "dcm3366q",
        )  # fmt: skip
        assert rc == 2 and "12 decimal digits" in err
        rc, _, err = await evgw(
            "meter", "read", "--protocol", "dlt645", "--tcp", "127.0.0.1:502",
            "--profile", "dcm3366q",
        )  # fmt: skip
        assert rc == 2 and "serial port" in err
        rc, out, _ = await evgw("meter", "profiles", "--protocol", "dlt645", "--json")
        assert {p["name"] for p in json.loads(out)} == set(PROFILES)
    finally:
        await server.stop()
        pair.close()
