"""RTU at 9600 baud over a real socat pty pair: two meters on one line, CRC garbage,
exception replies, timeouts, and the adapter unplugged and plugged back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.modbus.events import MeterAnomaly, MeterOffline, MeterOnline
from drivers.modbus.link import ModbusLine, SerialLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import open_pty_pair

PROFILES = load_profiles()
quiet_library_logging()


def _meters() -> tuple[SimMeter, SimMeter]:
    ac = SimMeter(
        PROFILES["dtsu666"], 1, power_w=22_000.0, voltage_v=229.0, energy_import_kwh=100.0
    )
    dc = SimMeter(
        PROFILES["djsf1352"], 2, power_w=60_000.0, voltage_v=750.0, energy_import_kwh=2000.0
    )
    return ac, dc


async def test_two_meters_share_one_line(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    ac, dc = _meters()
    server = MeterSimServer([ac, dc])
    await server.start_serial(pair.b, baud=9600)
    events: list = []
    line = SerialLineSpec(pair.a, baud=9600, timeout_s=0.3)
    poller = LinePoller(
        line,
        [
            MeterSpec("ac", 1, "dtsu666", rated_power_w=22_000),
            MeterSpec("dc", 2, "djsf1352", rated_power_w=60_000),
        ],
        PROFILES,
        events.append,
    )
    try:
        assert poller.line.spec.gap_s == pytest.approx(3.5 * 10 / 9600)
        # both meters polled concurrently: the line lock serialises their requests
        r_ac, r_dc = await asyncio.gather(poller.poll("ac", 0.0), poller.poll("dc", 0.0))
        assert r_ac is not None and r_dc is not None
        assert r_ac.power_w == pytest.approx(22_000.0)
        assert r_ac.values["voltage_l3_v"] == pytest.approx(229.0)
        assert r_ac.energy_import_kwh == pytest.approx(100.0)
        assert r_dc.values["voltage_v"] == pytest.approx(750.0)
        assert r_dc.values["current_a"] == pytest.approx(80.0, rel=1e-3)
        assert r_dc.power_w == pytest.approx(60_000.0)
        assert r_dc.energy_import_kwh == pytest.approx(2000.0)
        assert r_dc.flags["wire_broken"] is False
        # both meters integrate their own energy
        ac.advance(60.0)
        dc.advance(60.0)
        readings = await poller.poll_line(60.0)
        assert [r.meter_id for r in readings] == ["ac", "dc"]
        assert readings[0].energy_import_kwh == pytest.approx(100.0 + 22 / 60, abs=1e-3)
        assert readings[1].energy_import_kwh == pytest.approx(2001.0, abs=1e-3)
        # an alarm flag on the DC meter
        dc.set_flag("wire_broken", True)
        r_dc = await poller.poll("dc", 61.0)
        assert r_dc is not None and r_dc.alarms == ("wire_broken",)
        assert [e.kind for e in events].count("meter_alarm") == 1
    finally:
        poller.close()
        await server.stop()
        pair.close()


async def test_rtu_faults_and_unplug(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path, "usb")
    ac, dc = _meters()
    server = MeterSimServer([ac, dc])
    await server.start_serial(pair.b, baud=9600)
    events: list = []
    line = SerialLineSpec(pair.a, baud=9600, timeout_s=0.2)
    poller = LinePoller(
        line,
        [
            MeterSpec("ac", 1, "dtsu666", offline_after=2, retries=1, poll_interval_s=1),
            MeterSpec("dc", 2, "djsf1352", offline_after=2, retries=0, poll_interval_s=1),
        ],
        PROFILES,
        events.append,
    )
    try:
        assert len(await poller.poll_line(0.0)) == 2
        events.clear()

        # CRC garbage on the line: the reply is rejected as garbled, not decoded
        ac.garbage = True
        assert await poller.poll("ac", 1.0) is None
        assert poller.health("ac").last_error.startswith("unit 1: reply unreadable (CRC")
        assert ac.requests >= 2  # retried once
        ac.garbage = False
        # the other meter on the line is unaffected
        assert await poller.poll("dc", 1.0) is not None
        assert (await poller.poll("ac", 2.0)) is not None
        assert poller.health("ac").failures == 0

        # exception reply decoded by name
        dc.exception_code = 2
        r = await poller.poll("dc", 3.0)
        assert r is not None and r.rejected["voltage_v"] == "exception 02 (illegal data address)"
        dc.exception_code = None

        # timeout: the DC meter stops answering and goes offline after two polls
        dc.no_answer = True
        await poller.poll("dc", 4.0)
        await poller.poll("dc", 5.0)
        offline = [e for e in events if isinstance(e, MeterOffline)]
        assert [e.meter_id for e in offline] == ["dc"] and "no answer" in offline[0].reason
        dc.no_answer = False

        # unplug: socat goes away, the port vanishes
        events.clear()
        await server.stop()
        pair.close()
        await asyncio.sleep(0.05)
        assert await poller.poll("ac", 10.0) is None
        assert await poller.poll("ac", 11.0) is None
        (off,) = [e for e in events if isinstance(e, MeterOffline)]
        assert off.meter_id == "ac" and "does not exist" in off.reason
        opened = poller.line.opened_count

        # plug back: same device name, the poller reopens it by itself
        pair = open_pty_pair(tmp_path, "usb")
        server = MeterSimServer([ac, dc])
        await server.start_serial(pair.b, baud=9600)
        r = await poller.poll("ac", 30.0)
        assert r is not None and r.power_w == pytest.approx(22_000.0)
        assert poller.line.opened_count == opened + 1
        assert [e.meter_id for e in events if isinstance(e, MeterOnline)] == ["ac"]
        assert await poller.poll("dc", 30.0) is not None
        assert not [e for e in events if isinstance(e, MeterAnomaly)]
    finally:
        poller.close()
        await server.stop()
        pair.close()


async def test_permission_denied_names_dialout(tmp_path: Path) -> None:
    dev = tmp_path / "ttyFAKE"
    dev.write_bytes(b"")
    dev.chmod(0)
    line = ModbusLine(SerialLineSpec(str(dev)))
    err = await line.open()
    if err is None or err.kind != "permission":
        pytest.skip("running as root: file permissions are not enforced")
    assert "dialout" in err.message
