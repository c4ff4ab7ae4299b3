"""DL/T 645 meters in the config and the service: validation with key paths, the
protocol's serial defaults, and `evgw run`'s device layer polling a simulated meter over a pty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.config.resources import read_resource
from agent.records.envelope import Record
from agent.service.devices import Devices, build_pollers, meter_profiles
from drivers.dlt645.poller import Dlt645Poller
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.modbus.events import MeterReading, MeterTamper
from drivers.modbus.poller import LinePoller
from sim.dlt645_meter import Dlt645SimServer, SimDltMeter
from tests.conftest import open_pty_pair


def _without_meters(text: str) -> str:
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith("[[meters]]"):
            skipping = True
        elif skipping and (line.startswith("[") or line.startswith("# ---")):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


BASE = _without_meters(read_resource("evgw.example.toml"))


def config_with(*meters: str) -> str:
    return BASE + "".join(f"\n[[meters]]\n{m}\n" for m in meters)


DC1 = 'meter_id = "dc1"\nconnector_id = "SZFT0001DC0101"\ntransport = "rtu"\n'


def test_defaults_follow_the_protocol() -> None:
    config = parse_config(
        config_with(
            DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\nport = "/dev/ttyUSB0"\n'
            'address = "000012345678"',
            'meter_id = "dc2"\nconnector_id = "SZFT0001DC0102"\ntransport = "rtu"\n'
            'profile = "djsf1352"\nport = "/dev/ttyUSB1"\nunit_id = 1',
        )
    )
    dlt, modbus = config.meters
    assert (dlt.baud, dlt.parity, dlt.stop_bits) == (2400, "E", 1)
    assert (modbus.baud, modbus.parity) == (9600, "N")


def test_validation_names_each_key() -> None:
    no_address = DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\nport = "/dev/ttyUSB0"'
    with pytest.raises(ConfigError, match=r'meters\[0\].address: required for protocol = "dlt645"'):
        parse_config(config_with(no_address))
    with pytest.raises(ConfigError) as err:
        parse_config(config_with(no_address + '\naddress = "12345678901A"'))
    assert "meters[0].address: expected 12 decimal digits (BCD), found '12345678901A'" in str(
        err.value
    )
    with pytest.raises(ConfigError, match=r'meters\[0\].unit_id: only for protocol = "modbus"'):
        parse_config(config_with(no_address + '\naddress = "000000000001"\nunit_id = 3'))
    with pytest.raises(ConfigError) as err:
        parse_config(
            config_with(
                DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\nport = "/dev/ttyUSB0"\n'
                'address = "000012345678"',
                'meter_id = "dc2"\nconnector_id = "SZFT0001DC0102"\ntransport = "rtu"\n'
                'profile = "djsf1352"\nport = "/dev/ttyUSB0"\nunit_id = 1',
                'meter_id = "ac1"\nconnector_id = "SZFT0001AC0101"\ntransport = "rtu"\n'
                'profile = "dcm3366q"\nport = "/dev/ttyUSB1"\nunit_id = 1',
            )
        )
    text = str(err.value)
    assert (
        "meters[1].baud: 9600 differs from meters[0].baud (2400) on the same line /dev/ttyUSB0"
        in text
    )
    assert "meters[1].parity: 'N' differs from meters[0].parity ('E')" in text
    assert "meters[2].profile: no meter profile 'dcm3366q' (it is a dlt645 profile" in text


def test_one_port_one_discipline() -> None:
    config = parse_config(
        config_with(
            DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\nport = "/dev/ttyUSB0"\n'
            'address = "000012345678"',
            'meter_id = "dc2"\nconnector_id = "SZFT0001DC0102"\ntransport = "rtu"\n'
            'profile = "djsf1352"\nport = "/dev/ttyUSB0"\nunit_id = 1\nbaud = 2400\n'
            'parity = "E"',
        )
    )
    pollers = build_pollers(config, meter_profiles(config), asyncio.Queue())
    dlt = next(p for p in pollers if isinstance(p, Dlt645Poller))
    modbus = next(p for p in pollers if isinstance(p, LinePoller))
    assert dlt.line.discipline is modbus.line.discipline  # one lock for the RS-485 line


async def test_service_polls_a_dlt645_meter(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    meter = SimDltMeter(
        load_dlt645_profiles()["dcm3366q"], "000012345678", power_w=20_000.0, voltage_v=500.0
    )
    meter.energy_import_kwh = 42.0
    server = Dlt645SimServer([meter])
    await server.start_serial(pair.b, baud=2400)
    config = parse_config(
        config_with(
            DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\n'
            f'port = "{pair.a}"\naddress = "000012345678"\npoll_interval_s = 0.5\n'
            "seal_interval_s = 3600"
        )
    )
    queue: asyncio.Queue[object] = asyncio.Queue()
    devices = Devices.build(config, queue)
    task = asyncio.create_task(devices.run_meter_polls())
    try:
        reading = None
        seen: list[object] = []
        async with asyncio.timeout(10):
            while reading is None:
                seen.append(await queue.get())
                reading = seen[-1] if isinstance(seen[-1], MeterReading) else None
        assert reading.meter_id == "dc1"
        assert reading.values["energy_import_kwh"] == pytest.approx(42.0, abs=0.01)
        assert reading.values["voltage_v"] == pytest.approx(500.0)
        while not queue.empty():
            seen.append(queue.get_nowait())
        kinds = {type(i).__name__ for i in seen}
        assert "MeterOnline" in kinds
        assert {"MeterIdentity", "MeterCounters", "MeterClockDrift"} <= kinds  # to the station

        # a session starts on the meter's connector: its seal is read at the next poll (not
        # an hour later), so a cover opened just before shows at once
        meter.open_cover()
        status = {"status": 2, "session_id": "S1"}
        devices.observe(
            Record(
                kind="connector_status",
                ts="",
                station_id="",
                body=status,
                connector_id="SZFT0001DC0101",
            )
        )
        async with asyncio.timeout(10):
            while not isinstance(item := await queue.get(), MeterTamper):
                pass
        assert (item.counter, item.previous, item.current) == ("meter_cover_open", 0, 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
        pair.close()


async def test_stopping_a_line_mid_poll_logs_no_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config apply, a reload or a stop cancels a line's polls while one waits for a reply:
    that is no failure, and no traceback reaches the journal."""
    pair = open_pty_pair(tmp_path)
    meter = SimDltMeter(load_dlt645_profiles()["dcm3366q"], "000012345678")
    meter.silent = True  # every poll waits its whole timeout
    server = Dlt645SimServer([meter])
    await server.start_serial(pair.b, baud=2400)
    config = parse_config(
        config_with(
            DC1 + 'protocol = "dlt645"\nprofile = "dcm3366q"\n'
            f'port = "{pair.a}"\naddress = "000012345678"\ntimeout_s = 5\n'
        )
    )
    devices = Devices.build(config, asyncio.Queue())
    task = asyncio.create_task(devices.run_meter_polls())
    try:
        await asyncio.sleep(1.0)  # the first poll is waiting for the silent meter
        with caplog.at_level(logging.DEBUG):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.2)
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert failures == [], [r.getMessage() for r in failures]
    finally:
        await server.stop()
        pair.close()
