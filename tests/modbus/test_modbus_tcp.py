"""Every profile read through the simulator over Modbus TCP, values checked against the set
ones; faults (no answer, exception replies, NaN, energy reset) with their outcomes."""

from __future__ import annotations

import asyncio
import math

import pytest

from drivers.modbus.events import MeterAnomaly, MeterOffline, MeterOnline, MeterReading
from drivers.modbus.link import TcpLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter

PROFILES = load_profiles()
quiet_library_logging()


def _tolerance(q) -> dict:
    """The register's own resolution: f32 is relative, integers step by their scale."""
    if q.type.startswith("f"):
        return {"rel": 1e-6, "abs": 1e-6}
    if q.exponent is not None:
        return {"rel": 1e-3, "abs": 1e-3}  # auto-ranged decimal point: 3-4 digits kept
    return {"rel": 0, "abs": q.scale * 0.5 + 1e-9}


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_every_profile_over_tcp(profile: str) -> None:
    prof = PROFILES[profile]
    power = 7360.0 if prof.kind != "dc" else 48_000.0
    volts = 231.5 if prof.kind != "dc" else 640.0
    sim = SimMeter(prof, 3, power_w=power, voltage_v=volts, energy_import_kwh=1234.56)
    server = MeterSimServer([sim])
    port = await server.start_tcp()
    got: list = []
    poller = LinePoller(
        TcpLineSpec("127.0.0.1", port, timeout_s=1.0),
        [MeterSpec("m1", 3, profile, rated_power_w=power * 1.2)],
        PROFILES,
        got.append,
    )
    try:
        reading = await poller.poll("m1", 1000.0)
        assert reading is not None
        assert reading.rejected == {}
        quantities = {q.name: q for q in sim.resolved.quantities}
        assert set(reading.values) == set(quantities)
        for name, q in quantities.items():
            want = sim.value(name)
            assert reading.values[name] == pytest.approx(want, **_tolerance(q)), name
        assert reading.energy_import_kwh == pytest.approx(1234.56, abs=0.011)
        assert isinstance(got[0], MeterOnline) and isinstance(got[-1], MeterReading)
        # energy integrates from the power the charging simulator sets
        sim.advance(3600.0)
        reading = await poller.poll("m1", 4600.0)
        assert reading is not None
        assert reading.energy_import_kwh == pytest.approx(1234.56 + power / 1000, abs=0.011)
        assert not any(isinstance(e, MeterAnomaly) for e in got)
    finally:
        poller.close()
        await server.stop()


async def test_faults_over_tcp() -> None:
    sim = SimMeter(PROFILES["sdm630"], 1, power_w=11_000.0, energy_import_kwh=500.0)
    server = MeterSimServer([sim])
    port = await server.start_tcp()
    queue: asyncio.Queue = asyncio.Queue()
    poller = LinePoller(
        TcpLineSpec("127.0.0.1", port, timeout_s=0.2),
        [
            MeterSpec(
                "m",
                1,
                "sdm630",
                rated_power_w=22_000,
                offline_after=2,
                retries=0,
                poll_interval_s=10,
            )
        ],
        PROFILES,
        queue,
    )

    def drain() -> list:
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    try:
        assert await poller.poll("m", 0.0) is not None
        drain()
        # timeouts: two failed polls -> offline, then backoff skips the line entirely
        sim.no_answer = True
        assert await poller.poll("m", 10.0) is None
        assert drain() == []
        assert await poller.poll("m", 20.0) is None
        (off,) = drain()
        assert isinstance(off, MeterOffline) and off.failures == 2
        assert "no answer" in off.reason and "A/B" in off.reason
        before = sim.requests
        assert await poller.poll("m", 25.0) is None  # not due before 20 + 10 s
        assert sim.requests == before and drain() == []
        sim.no_answer = False
        reading = await poller.poll("m", 30.0)
        assert reading is not None
        online = drain()[0]
        assert isinstance(online, MeterOnline) and online.offline_since == 20.0

        # exception replies: meter is online, every value rejected with the decoded name
        sim.exception_code = 4
        reading = await poller.poll("m", 40.0)
        assert reading is not None and reading.values == {}
        assert reading.rejected["power_w"] == "exception 04 (server device failure)"
        events = [e for e in drain() if isinstance(e, MeterAnomaly)]
        assert {e.quantity for e in events} == set(reading.rejected)
        sim.exception_code = None

        # NaN from the meter: rejected with a reason, the rest of the reading kept
        sim.set("voltage_l2_v", math.nan)
        reading = await poller.poll("m", 50.0)
        assert reading is not None
        assert reading.rejected == {"voltage_l2_v": "not a number (NaN)"}
        assert reading.values["voltage_l1_v"] == pytest.approx(230.0)
        sim.clear("voltage_l2_v")

        # energy going backwards: passed on as read, the new baseline; the station reports it
        # (tests/station: 500 → 3, new baseline)
        drain()
        sim.reset_energy(3.0)
        reading = await poller.poll("m", 60.0)
        assert reading is not None and reading.energy_import_kwh == pytest.approx(3.0)
        assert not [e for e in drain() if isinstance(e, MeterAnomaly)]

        # a jump beyond the rated power in the elapsed time is flagged, not dropped
        sim.advance(0)
        sim.energy_import_kwh += 50.0
        reading = await poller.poll("m", 70.0)
        assert reading is not None and reading.energy_import_kwh == pytest.approx(53.0)
        assert "energy_import_kwh jumped" in reading.notes
        assert any(e.reason == "energy_jump" for e in drain() if isinstance(e, MeterAnomaly))
    finally:
        poller.close()
        await server.stop()


async def test_rtu_over_tcp_and_probe_options() -> None:
    """RTU framing over TCP; a DTSU666 whose firmware serves the 0x4000 energy block."""
    sim = SimMeter(
        PROFILES["dtsu666"],
        7,
        options={"energy_block": "x4000"},
        power_w=5000.0,
        energy_import_kwh=42.0,
    )
    server = MeterSimServer([sim])
    port = await server.start_tcp(rtu_framing=True)
    line = TcpLineSpec("127.0.0.1", port, timeout_s=0.5, rtu_framing=True)
    wrong = LinePoller(line, [MeterSpec("d", 7, "dtsu666")], PROFILES)
    right = LinePoller(
        line, [MeterSpec("d", 7, "dtsu666", options={"energy_block": "x4000"})], PROFILES
    )
    try:
        r = await wrong.poll("d", 0.0)
        assert r is not None and "illegal data address" in r.rejected["energy_import_kwh"]
        r = await right.poll("d", 0.0)
        assert r is not None and r.energy_import_kwh == pytest.approx(42.0)
        assert r.values["voltage_l1_l2_v"] == pytest.approx(230.0 * math.sqrt(3), abs=0.1)
    finally:
        wrong.close()
        right.close()
        await server.stop()


async def test_connection_refused_is_a_clear_failure() -> None:
    from tests.conftest import free_port

    got: list = []
    poller = LinePoller(
        TcpLineSpec("127.0.0.1", free_port(), timeout_s=0.2),
        [MeterSpec("m", 1, "sdm120", offline_after=1)],
        PROFILES,
        got.append,
    )
    assert await poller.poll("m", 0.0) is None
    assert isinstance(got[0], MeterOffline) and "cannot open tcp 127.0.0.1" in got[0].reason
    poller.close()
