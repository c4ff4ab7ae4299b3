"""`evgw meter read|scan|profiles` run as subprocesses against the simulator."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import REPO, open_pty_pair

PROFILES = load_profiles()
EVGW = [sys.executable, "-m", "agent.cli"]


async def evgw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EVGW, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_read_json_over_tcp() -> None:
    sim = SimMeter(
        PROFILES["sdm630"], 1, power_w=11_040.0, voltage_v=230.0, energy_import_kwh=777.25
    )
    server = MeterSimServer([sim])
    port = await server.start_tcp()
    try:
        rc, out, err = await evgw(
            "meter",
            "read",
            "--tcp",
            f"127.0.0.1:{port}",
            "--profile",
            "sdm630",
            "--unit",
            "1",
            "--json",
        )
        assert rc == 0, err
        data = json.loads(out)
        assert set(data) == {q.name for q in PROFILES["sdm630"].quantities}
        assert data["power_w"] == 11040.0
        assert data["energy_import_kwh"] == 777.25
        assert data["voltage_l1_v"] == 230.0
        assert data["current_l2_a"] == pytest.approx(16.0)
        assert data["frequency_hz"] == 50.0

        # text output names units; a NaN is shown as rejected and is null in JSON
        sim.set("voltage_l3_v", float("nan"))
        rc, out, err = await evgw(
            "meter", "read", "--tcp", f"127.0.0.1:{port}", "--profile", "sdm630", "--unit", "1"
        )
        assert rc == 0, err
        assert "Eastron SDM630" in out and "11040.0 W" in out
        assert "voltage_l3_v" in out and "rejected: not a number (NaN)" in out
        rc, out, err = await evgw(
            "meter",
            "read",
            "--tcp",
            f"127.0.0.1:{port}",
            "--profile",
            "sdm630",
            "--unit",
            "1",
            "--json",
        )
        assert rc == 0 and json.loads(out)["voltage_l3_v"] is None
        assert "voltage_l3_v: not a number (NaN)" in err

        # exception replies are decoded by name
        sim.exception_code = 2
        rc, out, err = await evgw(
            "meter", "read", "--tcp", f"127.0.0.1:{port}", "--profile", "sdm630", "--unit", "1"
        )
        assert rc == 1 and "exception 02 (illegal data address)" in err
        sim.exception_code = None

        # no answer: wrong unit id
        rc, out, err = await evgw(
            "meter",
            "read",
            "--tcp",
            f"127.0.0.1:{port}",
            "--profile",
            "sdm630",
            "--unit",
            "9",
            "--timeout",
            "0.2",
        )
        assert rc == 1
        assert "unit 9: no answer" in err and "A/B" in err and "unit id" in err
        assert "Traceback" not in err
    finally:
        await server.stop()


async def test_read_and_scan_over_serial(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    # a DTSU666 whose firmware serves FC04 only and the 0x4000 energy block, and an SDM120
    dtsu = SimMeter(
        PROFILES["dtsu666"],
        1,
        functions={4},
        function=4,
        options={"energy_block": "x4000"},
        power_w=15_000.0,
        energy_import_kwh=88.5,
    )
    sdm = SimMeter(PROFILES["sdm120"], 3, power_w=3680.0, energy_import_kwh=12.5)
    server = MeterSimServer([dtsu, sdm])
    await server.start_serial(pair.b, baud=9600)
    try:
        rc, out, err = await evgw(
            "meter",
            "read",
            "--port",
            pair.a,
            "--baud",
            "9600",
            "--profile",
            "sdm120",
            "--unit",
            "3",
            "--json",
        )
        assert rc == 0, err
        data = json.loads(out)
        assert data["power_w"] == 3680.0 and data["energy_import_kwh"] == 12.5
        assert data["current_a"] == 16.0

        # the profile default (FC03) gets "illegal function": the error suggests FC04
        rc, out, err = await evgw(
            "meter", "read", "--port", pair.a, "--profile", "dtsu666", "--unit", "1"
        )
        assert rc == 1 and "illegal function" in err and "--function 4" in err
        rc, out, err = await evgw(
            "meter",
            "read",
            "--port",
            pair.a,
            "--profile",
            "dtsu666",
            "--unit",
            "1",
            "--function",
            "4",
            "--option",
            "energy_block=x4000",
            "--json",
        )
        assert rc == 0, err
        assert json.loads(out)["energy_import_kwh"] == 88.5

        rc, out, err = await evgw(
            "meter",
            "scan",
            "--port",
            pair.a,
            "--units",
            "1-3",
            "--bauds",
            "9600",
            "--timeout",
            "0.2",
            "--json",
        )
        assert rc == 0, err
        found = {f["unit"]: f for f in json.loads(out)}
        assert set(found) == {1, 3}
        assert found[1]["profile"] == "dtsu666" and found[1]["score"] == 1.0
        assert found[1]["function"] == 4
        assert found[1]["options"] == {"energy_block": "x4000"}
        assert found[1]["undecided"] == []
        assert found[1]["baud"] == 9600 and found[1]["parity"] == "N"
        assert found[3]["profile"] == "sdm120" and found[3]["score"] == 1.0
        assert found[3]["values"]["power_w"] == 3680.0
        assert "unit 1 answers" in err and "unit 3 answers" in err

        rc, out, err = await evgw(
            "meter",
            "scan",
            "--port",
            pair.a,
            "--units",
            "3",
            "--bauds",
            "9600",
            "--profile",
            "sdm120",
        )
        assert rc == 0, err
        assert "best fit: sdm120 (12/12 quantities plausible)" in out
        assert 'profile = "sdm120"' in out and "unit_id = 3" in out
    finally:
        await server.stop()
        pair.close()


async def test_scan_nothing_and_port_errors(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    try:
        rc, _, err = await evgw(
            "meter",
            "scan",
            "--port",
            pair.a,
            "--units",
            "1-2",
            "--bauds",
            "9600,19200",
            "--timeout",
            "0.05",
        )
        assert rc == 1 and "no meter answered" in err and "A/B" in err
    finally:
        pair.close()
    rc, _, err = await evgw(
        "meter", "read", "--port", str(tmp_path / "ttyUSB9"), "--profile", "sdm120"
    )
    assert rc == 1 and "does not exist" in err and "Traceback" not in err
    rc, _, err = await evgw("meter", "read", "--port", "/dev/x", "--profile", "nosuch")
    assert rc == 2 and "no meter profile 'nosuch'" in err
    rc, _, err = await evgw("meter", "read", "--port", "/dev/x", "--profile", "sdm120", "--bogus")
    assert rc == 2 and "usage:" in err


async def test_profiles_listing_and_check(tmp_path: Path) -> None:
    rc, out, err = await evgw("meter", "profiles")
    assert rc == 0
    for name in PROFILES:
        assert name in out
    rc, out, err = await evgw("meter", "profiles", "--json")
    assert {p["name"] for p in json.loads(out)} == set(PROFILES)
    rc, out, err = await evgw("meter", "profiles", "dtsu666")
    assert rc == 0 and "energy_block" in out and "0x2006" in out
    assert "identity ct_ratio              0x0006 FC03 u16" in out  # read at every seal read
    (tmp_path / "bad.toml").write_text("[meter]\nvendor = 1\n")
    rc, out, err = await evgw("meter", "profiles", "--profiles", str(tmp_path))
    assert rc == 2
    assert "bad.toml: meter.vendor: expected text, found the integer 1" in err
    assert "bad.toml: link: expected a table" in err
