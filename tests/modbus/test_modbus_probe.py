"""Commissioning probe: function-code fallback, disputed registers, display reading."""

from __future__ import annotations

import pytest

from drivers.modbus.link import ModbusLine, TcpLineSpec, quiet_library_logging
from drivers.modbus.probe import fit_profile, identify, probe_problem, unit_answers
from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter

PROFILES = load_profiles()
quiet_library_logging()


async def _serve(*meters: SimMeter) -> tuple[MeterSimServer, ModbusLine]:
    server = MeterSimServer(meters)
    port = await server.start_tcp()
    return server, ModbusLine(TcpLineSpec("127.0.0.1", port, timeout_s=0.2))


async def test_ddsu666_answering_fc03_only() -> None:
    sim = SimMeter(PROFILES["ddsu666"], 1, function=3, functions={3}, power_w=2300.0)
    server, line = await _serve(sim)
    try:
        fit = await fit_profile(line, 1, PROFILES["ddsu666"])
        assert not isinstance(fit, Exception)
        assert fit.function == 3 and "FC04 gave exception 01" in fit.function_evidence
        assert fit.score == 1.0 and fit.values["power_w"] == pytest.approx(2300.0)
    finally:
        line.close()
        await server.stop()


async def test_djsf_energy_unit_needs_the_display() -> None:
    # raw register = 123456 (the simulated firmware counts in 0.1 Wh): 12.3456 kWh
    sim = SimMeter(
        PROFILES["djsf1352"],
        4,
        options={"energy_unit": "dwh"},
        power_w=30_000.0,
        voltage_v=500.0,
        energy_import_kwh=12.3456,
    )
    server, line = await _serve(sim)
    try:
        assert await unit_answers(line, 4) is None
        assert (await unit_answers(line, 5)).kind == "timeout"  # channel 2 not simulated
        fit = await fit_profile(line, 4, PROFILES["djsf1352"])
        (pick,) = fit.picks
        assert not pick.decided and pick.choice == "wh" and "--display-kwh" in pick.evidence
        fit = await fit_profile(line, 4, PROFILES["djsf1352"], display_kwh=12.3)
        (pick,) = fit.picks
        assert pick.decided and pick.choice == "dwh"
        assert fit.values["energy_import_kwh"] == pytest.approx(12.3456)
        fits = await identify(line, 4, PROFILES, display_kwh=12.3)
        assert fits[0].profile == "djsf1352" and fits[0].score == 1.0
    finally:
        line.close()
        await server.stop()


def test_probe_ranges() -> None:
    assert probe_problem("ac3", "voltage_l1_v", 230.0) is None
    assert "80…300" in probe_problem("ac3", "voltage_l1_v", 400.0)
    assert probe_problem("ac3", "voltage_l1_l2_v", 400.0) is None
    assert probe_problem("dc", "voltage_v", 750.0) is None
    assert "45…65" in probe_problem("ac1", "frequency_hz", 0.0)
    assert "NaN" in probe_problem("ac1", "energy_import_kwh", float("nan"))
    assert probe_problem("ac1", "energy_import_kwh", -1.0) is not None
