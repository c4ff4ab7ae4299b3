"""Simulated sessions (``sim.charging`` + ``sim.meter`` from the same power curve) covering every
safety rule and every stop reason: alarms raised once and cleared, orders right, energy audit."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import pytest
from pyocmf import OCMF

from agent.ledger import GatewayKey
from agent.records.envelope import Record
from agent.station.inputs import RemoteStop
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from drivers.gbt27930.frames import Frame
from sim.charging import Fault, FaultKind, SimOptions, SimSession, VehicleProfile, generate
from tests.station.sim_runner import MeterPlan, run_sim
from tests.station.station_fixtures import DC, check_bodies, make_config, of, ts

# a small battery so that 30 % → 80 % takes about three minutes of real bus time (no speed-up:
# the CCS integral, the charger's CSD and the meter must all count the same energy)
VEHICLE = VehicleProfile(capacity_ah=20.0, soc_start_pct=30, soc_target_pct=80)


def session(**kw: object) -> SimSession:
    faults = kw.pop("faults", ())
    return generate(VEHICLE, options=SimOptions(**kw), faults=faults)  # type: ignore[arg-type]


def charging_start(s: SimSession) -> float:
    return s.curve[0].ts


def alarm_edges(records: list[Record]) -> list[tuple[int, str]]:
    return [(r.body["code"], r.body["status"]) for r in of(records, "alarm", DC)]


def assert_raised_once_and_cleared(records: list[Record], *codes: int) -> None:
    edges = alarm_edges(records)
    for code in codes:
        assert edges.count((code, "raised")) == 1, edges
        assert edges.count((code, "cleared")) == 1, edges
        raised = edges.index((code, "raised"))
        assert edges.index((code, "cleared")) > raised
    assert {c for c, _ in edges} == set(codes), edges


def order(records: list[Record]) -> dict:
    [o] = of(records, "charge_order", DC)
    return o.body


def statuses(records: list[Record]) -> list[int]:
    return [r.body["status"] for r in of(records, "connector_status", DC)]


# ------------------------------------------------------------------ frame mutations


def _edit(frames: list[Frame], pf: int, fn, start: float, end: float) -> list[Frame]:
    out = []
    for f in frames:
        if (f.can_id >> 16) & 0xFF == pf and start <= f.ts < end:
            f = dataclasses.replace(f, data=fn(f.data))
        out.append(f)
    return out


def _u16(d: bytes, i: int, value: int) -> bytes:
    b = bytearray(d)
    b[i : i + 2] = value.to_bytes(2, "little")
    return bytes(b)


def ccs_current(frames: list[Frame], add_a: float, start: float, end: float) -> list[Frame]:
    """The charger delivers ``add_a`` more than it reports being asked for (CCS bytes 3–4)."""

    def fn(d: bytes) -> bytes:
        raw = int.from_bytes(d[2:4], "little")
        return _u16(d, 2, raw - round(add_a * 10))  # more negative = more charging current

    return _edit(frames, 0x12, fn, start, end)


def ccs_voltage(frames: list[Frame], factor: float, start: float, end: float) -> list[Frame]:
    def fn(d: bytes) -> bytes:
        return _u16(d, 0, round(int.from_bytes(d[0:2], "little") * factor))

    return _edit(frames, 0x12, fn, start, end)


def bsm_temps(frames: list[Frame], temp_at, start: float, end: float) -> list[Frame]:
    out = []
    for f in frames:
        if (f.can_id >> 16) & 0xFF == 0x13 and start <= f.ts < end:
            t = round(temp_at(f.ts - start))
            d = bytearray(f.data)
            d[1], d[3] = t + 50, t + 48
            f = dataclasses.replace(f, data=bytes(d))
        out.append(f)
    return out


def bcs_values(frames: list[Frame], cell_v: float, start: float, end: float) -> list[Frame]:
    """Rewrite the first TP.DT of every BCS transfer: highest cell voltage (payload bytes 5–6)."""
    out, in_bcs = [], False
    for f in frames:
        pf = (f.can_id >> 16) & 0xFF
        if pf == 0xEC and f.data[0] == 0x10:  # RTS
            in_bcs = f.data[5:8] == b"\x00\x11\x00"
        elif pf == 0xEB and in_bcs and f.data[0] == 1 and start <= f.ts < end:
            word = int.from_bytes(f.data[5:7], "little")
            word = (word & 0xF000) | round(cell_v * 100)
            d = bytearray(f.data)
            d[5:7] = word.to_bytes(2, "little")
            f = dataclasses.replace(f, data=bytes(d))
        out.append(f)
    return out


def bst_bits(frames: list[Frame], data: bytes) -> list[Frame]:
    return _edit(frames, 0x19, lambda _d: data, 0.0, float("inf"))


# ------------------------------------------------------------------ honest sessions, stop reasons


PROTOCOLS = pytest.mark.parametrize("protocol", ["modbus", "dlt645"])
"""The DC meter's protocol: a DL/T 645 meter drives the orders exactly as a Modbus one."""


@PROTOCOLS
def test_honest_session_is_quiet_and_its_order_is_right(protocol: str) -> None:
    s = session()
    key = GatewayKey.generate()
    signer = OcmfSigner(key, gateway_id="gw-test", software_version="test")
    cfg = make_config(meters=True, protocol=protocol)
    records = run_sim(s, cfg, meter=MeterPlan(protocol=protocol), signer=signer).records
    check_bodies(records)
    assert of(records, "alarm", DC) == []
    assert statuses(records) == [1, 2, 3, 3, 3, 3, 2, 1]  # three 50 s heartbeats while charging
    o = order(records)
    e = s.expected
    assert o["stop_reason"] == 2  # BMS: SOC target reached
    assert o["stop_bits"]["bst.stop_soc_target_reached"] == 1
    assert o["soc_start_pct"] == e.soc_start_pct
    assert o["soc_end_pct"] == e.soc_end_pct
    assert o["vin"] == e.vin
    assert o["charger_energy_kwh"] == e.energy_kwh
    assert o["energy_source"] == "meter"
    assert o["meter_energy_start_kwh"] == 1000.0
    delivered = s.curve[-1].energy_kwh
    assert o["energy_kwh"] == pytest.approx(delivered, abs=0.05)
    assert o["meter_energy_end_kwh"] == pytest.approx(1000.0 + o["energy_kwh"], abs=1e-6)
    assert o["ccs_energy_kwh"] == pytest.approx(delivered, abs=0.05)
    assert o["peak_power_kw"] == pytest.approx(
        max(p.voltage_v * p.current_a for p in s.curve) / 1000, rel=0.01
    )
    assert o["interrupted"] is False
    assert o["end_reason"] == "normal"
    assert OCMF.from_string(o["ocmf"]).verify_signature(key.public_der_hex)
    bms = of(records, "bms_process", DC)
    # battery records every 15 s of charging, and at once on every SOC step
    for a, b in itertools.pairwise(bms):
        assert 14.9 < ts(b) - ts(a) < 16.1 or b.body["soc_pct"] != a.body["soc_pct"]
    assert len({b.body["soc_pct"] for b in bms}) == e.soc_end_pct - e.soc_start_pct


@pytest.mark.parametrize(
    ("options", "faults", "reason", "end_reason"),
    [
        ({"stop": "manual", "stop_after_s": 20}, (), 0, "normal"),
        ({}, (Fault(FaultKind.EMERGENCY_STOP, 10),), 3, "normal"),
        ({}, (Fault(FaultKind.CAN_SILENCE, 10),), 4, "lost"),
        ({}, (Fault(FaultKind.BEM_TIMEOUT, 10),), 2, "error"),
        ({}, (Fault(FaultKind.CEM_TIMEOUT, 10),), 3, "error"),
    ],
)
@PROTOCOLS
def test_stop_reasons(
    options: dict, faults: tuple, reason: int, end_reason: str, protocol: str
) -> None:
    s = session(**options, faults=faults)
    cfg = make_config(meters=True, protocol=protocol)
    records = run_sim(s, cfg, meter=MeterPlan(protocol=protocol)).records
    check_bodies(records)
    o = order(records)
    assert (o["stop_reason"], o["end_reason"]) == (reason, end_reason)
    assert o["interrupted"] is (end_reason == "lost")
    assert o["energy_kwh"] > 0


def test_stop_reason_platform_and_connector_fault() -> None:
    s = session(stop="manual", stop_after_s=20)
    cfg = make_config(meters=True)
    stop = RemoteStop(DC, charging_start(s) + 10)
    records = run_sim(s, cfg, meter=MeterPlan(), extra=[stop]).records
    assert order(records)["stop_reason"] == 1

    # the vehicle reports its charging connector faulty in BST: connector disconnected
    s = session()
    frames = bst_bits(list(s.frames), b"\x00\x40\xf0\xf0")
    records = run_sim(s, cfg, frames=frames, meter=MeterPlan()).records
    assert order(records)["stop_reason"] == 4
    assert_raised_once_and_cleared(records, 28)


# ------------------------------------------------------------------ safety rules


def test_gbt_faults_raise_their_alarms_once_with_bms_snapshot() -> None:
    cases = {
        FaultKind.EMERGENCY_STOP: (2,),
        FaultKind.INSULATION: (121,),
        FaultKind.OVER_TEMPERATURE: (120,),  # BSM flag, BST bit and the 55 °C rule: one code
        FaultKind.BEM_TIMEOUT: (101,),
        FaultKind.CEM_TIMEOUT: (101,),  # CEM and the BMS silence rule
        FaultKind.CAN_SILENCE: (101,),
    }
    for kind, codes in cases.items():
        s = session(faults=(Fault(kind, 10),))
        records = run_sim(s, make_config(meters=True), meter=MeterPlan()).records
        check_bodies(records)
        assert_raised_once_and_cleared(records, *codes)
        raised = [r for r in of(records, "alarm", DC) if r.body["status"] == "raised"]
        for r in raised:  # a DC alarm carries the last BmsInfo of the session
            assert r.body["bms"]["session_id"] == order(records)["session_id"], kind
            assert r.body["type"] == (1 if r.body["code"] < 100 else 2)
        if kind in (FaultKind.EMERGENCY_STOP, FaultKind.BEM_TIMEOUT, FaultKind.CEM_TIMEOUT):
            assert 255 in statuses(records), kind


def test_measured_rules() -> None:
    cfg = make_config(meters=True)
    s = session()
    t0 = charging_start(s)
    window = (t0 + 30, t0 + 60)
    cases = [
        # charger current 20 A above the demand for 30 s (limit: 5 A for 5 s)
        (ccs_current(list(s.frames), 20.0, *window), 122),
        # charger voltage 8 % above what the BMS measures
        (ccs_voltage(list(s.frames), 1.08, *window), 25),
        # highest cell 3.80 V against the BCP limit 3.65 V
        (bcs_values(list(s.frames), 3.80, *window), 107),
        # battery temperature rising 20 °C/min (limit 2 °C/min), staying below 55 °C
        (bsm_temps(list(s.frames), lambda dt: 25 + dt / 3, *window), 120),
    ]
    for frames, code in cases:
        records = run_sim(s, cfg, frames=frames, meter=MeterPlan()).records
        check_bodies(records)
        edges = alarm_edges(records)
        assert edges.count((code, "raised")) == 1, (code, edges)
        cleared = [r for r in of(records, "alarm", DC) if r.body["status"] == "cleared"]
        # cleared by hysteresis when the value came back, before the session ended
        assert [r.body["code"] for r in cleared] == [code], edges
        assert ts(cleared[0]) < ts(of(records, "charge_order", DC)[0]), code


def test_connector_over_temperature_with_hysteresis() -> None:
    s = session()
    t_rel0 = charging_start(s) - s.frames[0].ts

    # gun temperature 80 → 95 → 89 (still above 90 − 2) → 85 °C
    def gun(t: float) -> float:
        dt = t - t_rel0
        return 80.0 if dt < 20 else 95.0 if dt < 40 else 89.0 if dt < 60 else 85.0

    records = run_sim(s, make_config(meters=True), meter=MeterPlan(connector_temp=gun)).records
    assert_raised_once_and_cleared(records, 18)
    [raised, cleared] = of(records, "alarm", DC)
    assert ts(cleared) - ts(raised) == pytest.approx(40, abs=1.5)


@PROTOCOLS
def test_meter_failures(protocol: str) -> None:
    s = session()
    t_rel0 = charging_start(s) - s.frames[0].ts
    cfg = make_config(meters=True, protocol=protocol)
    # offline for 20 s in the middle of charging: alarm 3 raised and cleared; the order stays
    plan = MeterPlan(offline=((t_rel0 + 30, t_rel0 + 50),), protocol=protocol)
    records = run_sim(s, cfg, meter=plan).records
    assert_raised_once_and_cleared(records, 3)
    o = order(records)
    assert o["energy_source"] == "meter"
    assert o["energy_kwh"] == pytest.approx(s.curve[-1].energy_kwh, abs=0.05)
    # register goes back to 0 (reset / exchanged): project code 9004; the session's energy kept
    records = run_sim(s, cfg, meter=MeterPlan(reset_at_s=t_rel0 + 60, protocol=protocol)).records
    edges = alarm_edges(records)
    assert edges == [(9004, "raised")]
    assert order(records)["energy_kwh"] == pytest.approx(s.curve[-1].energy_kwh, abs=0.1)
    assert order(records)["stop_bits"]["meter.energy_decreased"] == 1
    if protocol == "dlt645":
        return  # the DL/T 645 profiles have no alarm flags
    # broken-wire flag: 9005 raised and cleared with the flag
    plan = MeterPlan(flag_at_s=t_rel0 + 20)
    records = run_sim(s, cfg, meter=plan).records
    assert alarm_edges(records) == [(9005, "raised")]
    alarm = of(records, "alarm", DC)[0]
    assert alarm.body["type"] == "energy_audit" and "wire_broken" in alarm.body["message"]


def test_energy_mismatch_on_the_meter_side_is_caught() -> None:
    s = session()
    cfg = make_config(meters=True)
    records = run_sim(s, cfg, meter=MeterPlan(factor=1.3)).records
    edges = Counter(alarm_edges(records))
    assert edges == {(9001, "raised"): 1, (9002, "raised"): 1}
    [a, _b] = of(records, "alarm", DC)
    assert "meter vs charger CSD" in a.body["message"]
    # the next honest session passes the audit and clears both
    model = StationModel(cfg)
    first = run_sim(s, cfg, meter=MeterPlan(factor=1.3), model=model).records
    later = session(start_ts=s.options.start_ts + 1000)
    second = run_sim(
        later, cfg, meter=MeterPlan(start_kwh=2000), model=model, startup=False
    ).records
    assert Counter(alarm_edges(first)) == edges
    assert sorted(alarm_edges(second)) == [(9001, "cleared"), (9002, "cleared")]
