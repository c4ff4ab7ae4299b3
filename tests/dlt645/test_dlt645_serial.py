"""The DL/T 645 path over a real serial line (socat pty pair) against the simulator:
readings, every kind of bad reply, the seal events, and reopening after an unplug."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.dlt645.link import Dlt645Line
from drivers.dlt645.poller import Dlt645Poller, DltMeterSpec
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.modbus.events import (
    MeterAnomaly,
    MeterClockDrift,
    MeterCounters,
    MeterIdentity,
    MeterOffline,
    MeterOnline,
    MeterReading,
    MeterReplaced,
    MeterTamper,
)
from drivers.modbus.line import ReadError
from drivers.modbus.link import SerialLineSpec
from sim.dlt645_meter import Dlt645SimServer, SimDltMeter
from tests.conftest import PtyPair, open_pty_pair

PROFILES = load_dlt645_profiles()
ADDRESS = "123456789012"
T0 = 1_764_748_800.0  # the tests' clock, POSIX seconds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, pair: PtyPair, server: Dlt645SimServer, meter: SimDltMeter) -> None:
        self.pair, self.server, self.meter = pair, server, meter
        self.events: list[object] = []
        self.clock = Clock()
        meter.wall = self.clock

    def poller(self, baud: int = 2400, **spec: object) -> Dlt645Poller:
        line = SerialLineSpec(self.pair.a, baud=baud, parity="E", timeout_s=0.3)
        meter = DltMeterSpec("m1", ADDRESS, "dlt645-2007", retries=0, **spec)  # type: ignore[arg-type]
        return Dlt645Poller(line, [meter], PROFILES, self.events.append)

    async def poll(self, poller: Dlt645Poller, ts: float) -> MeterReading | None:
        self.clock.now = ts  # the meter's clock and the caller's agree unless offset
        return await poller.poll("m1", ts)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def _rig(tmp_path: Path, baud: int, profile: str = "dlt645-2007") -> AsyncIterator[Rig]:
    pair = open_pty_pair(tmp_path)
    meter = SimDltMeter(PROFILES[profile], ADDRESS, power_w=7000.0, energy_import_kwh=1234.56)
    server = Dlt645SimServer([meter])
    await server.start_serial(pair.b, baud=baud)
    rig = Rig(pair, server, meter)
    try:
        yield rig
    finally:
        await server.stop()
        rig.pair.close()  # the pair a test plugged in again, if it did
        pair.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, 2400):
        yield r


@pytest.mark.parametrize("baud", [2400, 9600])
async def test_reads_energy_voltage_current_power(tmp_path: Path, baud: int) -> None:
    async for rig in _rig(tmp_path, baud):
        poller = rig.poller(baud)
        try:
            reading = await poller.poll("m1", T0)
        finally:
            poller.close()
        assert isinstance(reading, MeterReading), rig.events
        v = reading.values
        assert v["energy_import_kwh"] == pytest.approx(1234.56)
        assert v["voltage_l1_v"] == pytest.approx(230.0)
        assert v["current_l1_a"] == pytest.approx(7000 / 3 / 230, abs=0.001)
        assert v["power_w"] == pytest.approx(7000.0)
        assert v["frequency_hz"] == pytest.approx(50.0)
        assert not reading.rejected
        assert rig.of(MeterOnline) and rig.of(MeterIdentity)[0].identity["address"] == ADDRESS
        (counters,) = rig.of(MeterCounters)
        assert counters.counts == dict.fromkeys(counters.counts, 0) and len(counters.counts) == 6


async def test_dc_meter_profile(tmp_path: Path) -> None:
    async for rig in _rig(tmp_path, 2400, "dcm3366q"):
        rig.meter.set_voltage(650.0)
        rig.meter.set_power(-30_000.0)
        line = SerialLineSpec(rig.pair.a, baud=2400, parity="E", timeout_s=0.3)
        poller = Dlt645Poller(line, [DltMeterSpec("dc", ADDRESS, "dcm3366q")], PROFILES)
        try:
            reading = await poller.poll("dc", T0)
        finally:
            poller.close()
        assert reading is not None
        assert reading.values["voltage_v"] == pytest.approx(650.0)
        assert reading.values["current_a"] == pytest.approx(-30_000 / 650, abs=0.001)


async def test_bad_replies_are_named_never_raised(rig: Rig) -> None:
    line = Dlt645Line(SerialLineSpec(rig.pair.a, baud=2400, parity="E", timeout_s=0.3))
    try:
        rig.meter.echo = True
        rig.meter.noise = b"\x00\x11\x22"
        assert isinstance(await line.read(ADDRESS, 0x00010000), bytes)
        assert line.counts["echo"] == 1 and line.counts["noise"] == 1
        rig.meter.echo, rig.meter.noise = False, b""

        rig.meter.bad_checksum = True
        err = await line.read(ADDRESS, 0x00010000)
        assert isinstance(err, ReadError) and err.kind == "garbled" and "checksum" in err.message
        rig.meter.bad_checksum = False

        rig.meter.wrong_address = True
        err = await line.read(ADDRESS, 0x00010000)
        assert isinstance(err, ReadError) and "reply from address 999999999999" in err.message
        rig.meter.wrong_address = False

        rig.meter.error_status = 0x02
        err = await line.read(ADDRESS, 0x00010000)
        assert isinstance(err, ReadError) and err.answered
        assert err.short == "error 02 (no requested data)"
        rig.meter.error_status = None

        rig.meter.silent = True
        err = await line.read(ADDRESS, 0x00010000)
        assert isinstance(err, ReadError) and err.kind == "timeout"
        assert "no answer within 0.3 s" in err.message
        rig.meter.silent = False

        rig.meter.followup_bytes = 2  # a 4-byte energy in two pieces, the second one slow
        rig.meter.reply_delay_s = 0.1
        raw = await line.read(ADDRESS, 0x00010000)
        assert raw == bytes.fromhex("56341200")  # 1234.56 kWh, least significant byte first
        assert line.counts["other_address"] == 1
        assert await line.read_addresses() == [ADDRESS]
    finally:
        line.close()


async def test_silent_meter_goes_offline_and_unknown_identifier_is_rejected(rig: Rig) -> None:
    poller = rig.poller(offline_after=2)
    try:
        rig.meter.silent = True
        assert await poller.poll("m1", T0) is None
        assert await poller.poll("m1", T0 + 5) is None
        (offline,) = rig.of(MeterOffline)
        assert "no answer" in offline.reason
        rig.meter.silent = False
        rig.meter.profile = PROFILES["dcm3366q"]  # the firmware lacks the per-phase identifiers
        reading = await poller.poll("m1", T0 + 60)
        assert reading is not None and "voltage_l2_v" in reading.rejected
        assert reading.rejected["voltage_l2_v"] == "error 02 (no requested data)"
        assert reading.values["energy_import_kwh"] == pytest.approx(1234.56)
    finally:
        poller.close()


async def test_tamper_identity_and_clock(rig: Rig) -> None:
    poller = rig.poller(seal_interval_s=60.0, clock_drift_max_s=120.0)
    try:
        await rig.poll(poller, T0)
        rig.meter.open_cover()
        await rig.poll(poller, T0 + 5)
        assert not rig.of(MeterTamper)  # counters are read at the slow interval
        poller.check_seal("m1")  # session start: read them now
        await rig.poll(poller, T0 + 10)
        (tamper,) = rig.of(MeterTamper)
        assert (tamper.counter, tamper.previous, tamper.current) == ("meter_cover_open", 0, 1)
        assert tamper.last_event_ts == pytest.approx(T0, abs=1)

        rig.meter.counts["terminal_cover_open"] = 5
        rig.meter.counts["meter_cover_open"] = 0  # goes backwards: rejected, named once
        rig.meter.identity["serial"] = "000000000999"
        rig.meter.clock_offset_s = 600.0
        for i in range(2):
            poller.check_seal("m1")
            await rig.poll(poller, T0 + 20 + i)
        assert [t.counter for t in rig.of(MeterTamper)] == [
            "meter_cover_open",
            "terminal_cover_open",
        ]
        (back,) = [a for a in rig.of(MeterAnomaly) if a.reason == "counter_decreased"]
        assert back.quantity == "meter_cover_open" and back.previous == 1
        (replaced,) = rig.of(MeterReplaced)
        assert replaced.previous["serial"] == "000000000001"
        assert replaced.current["serial"] == "000000000999"
        first, drift = rig.of(MeterClockDrift)  # the state at the first read, then the rise
        assert not first.active and abs(first.drift_s) < 2
        assert drift.active and drift.drift_s == pytest.approx(600, abs=2)
        rig.meter.clock_offset_s = 0.0
        poller.check_seal("m1")
        await rig.poll(poller, T0 + 30)
        assert [d.active for d in rig.of(MeterClockDrift)] == [False, True, False]
    finally:
        poller.close()


async def test_reopens_after_unplug(tmp_path: Path) -> None:
    async for rig in _rig(tmp_path, 2400):
        poller = rig.poller()
        try:
            assert await poller.poll("m1", T0) is not None
            await rig.server.stop()
            rig.pair.close()
            await asyncio.sleep(0.1)
            assert await poller.poll("m1", T0 + 5) is None
            assert "does not exist" in (poller.health("m1").last_error or "")
            rig.pair = open_pty_pair(tmp_path)
            await rig.server.start_serial(rig.pair.b, baud=2400)
            assert await poller.poll("m1", T0 + 10) is not None
            assert poller.line.opened_count == 2
        finally:
            poller.close()
