"""Every simulated session (profiles × faults) decodes back to what it was generated from."""

from __future__ import annotations

import itertools

import pytest

from drivers.gbt27930.enums import BatteryType
from drivers.gbt27930.events import CommunicationLost, ErrorReported, SessionClosed
from drivers.gbt27930.frames import FrameKind, classify
from drivers.gbt27930.replay import run_frames
from drivers.gbt27930.report import session_record
from sim.charging import ChargerProfile, Fault, FaultKind, SimOptions, VehicleProfile, generate

PROFILES = {
    "lfp_v11": VehicleProfile(),
    "ternary_v10": VehicleProfile(
        vin="LGBH52E0XAY765432",
        battery_type=BatteryType.TERNARY,
        capacity_ah=180.0,
        rated_voltage_v=355.2,
        soc_start_pct=12,
        soc_target_pct=95,
        max_current_a=150,
        protocol="1.0",
        charge_count=7,
    ),
    "lto_cells": VehicleProfile(
        vin="LTOBUS0000000000X",
        battery_type=BatteryType.LTO,
        capacity_ah=60.0,
        rated_voltage_v=540.0,
        soc_start_pct=55,
        soc_target_pct=70,
        max_current_a=300,
        send_cell_details=True,
    ),
}
FAULTS = [None, *FaultKind]
#: SOC speed-up per profile, so that every session charges for several seconds of bus time
SPEEDUP = {"lfp_v11": 400.0, "ternary_v10": 400.0, "lto_cells": 10.0}


@pytest.mark.parametrize(
    ("profile", "fault"), list(itertools.product(PROFILES, FAULTS)), ids=lambda x: str(x)
)
def test_session_decodes_back(profile: str, fault: FaultKind | None) -> None:
    vehicle = PROFILES[profile]
    faults = [Fault(fault, at_s=2.0)] if fault else []
    options = SimOptions(soc_speedup=SPEEDUP[profile], stop="soc")
    session = generate(vehicle, ChargerProfile(charger_number=42), options, faults)
    exp = session.expected
    result = run_frames(session.frames, keep_messages=False)
    closed = [e for e in result.events if isinstance(e, SessionClosed)]
    assert len(closed) == 1
    s = session_record(closed[0].summary)
    v = s["vehicle"]
    assert s["protocol_version"] == exp.protocol_version
    assert s["generation"] == ("2011" if exp.protocol_version == "1.0" else "2015+")
    assert v["vin"] == exp.vin and v["battery_type_code"] == int(exp.battery_type)
    assert (v["rated_capacity_ah"], v["rated_voltage_v"]) == (
        exp.rated_capacity_ah,
        exp.rated_voltage_v,
    )
    assert v["charge_count"] == exp.charge_count
    assert s["charger"]["charger_number"] == exp.charger_number
    assert s["soc_start_pct"] == exp.soc_start_pct
    assert s["end_reason"] == exp.end_reason
    assert s["energy_kwh"] == exp.energy_kwh and s["charge_minutes"] == exp.charge_minutes
    if exp.soc_end_pct is not None:
        assert s["soc_end_pct"] == exp.soc_end_pct
    if exp.stop_initiator is None:
        assert s["stop_reason"] is None
    else:
        assert s["stop_reason"]["initiator"] == exp.stop_initiator
        assert tuple(s["stop_reason"]["bst"]) == exp.bst_reasons
        assert tuple(s["stop_reason"]["cst"]) == exp.cst_reasons
    errors = [(e["side"], tuple(e["timeouts"])) for e in s["errors"]]
    assert tuple(errors) == exp.error_timeouts
    transport = result.pipeline.reassembler.anomalies
    assert tuple(k for k in transport if transport[k]) == exp.transport_anomalies
    assert not result.pipeline.counts.decode_anomalies
    if fault in (FaultKind.CAN_SILENCE, FaultKind.BEM_TIMEOUT, FaultKind.CEM_TIMEOUT):
        assert any(isinstance(e, CommunicationLost) for e in result.events)
    if fault in (FaultKind.BEM_TIMEOUT, FaultKind.CEM_TIMEOUT):
        assert any(isinstance(e, ErrorReported) for e in result.events)
    if vehicle.send_cell_details and fault is None:
        assert s["message_counts"]["BMV"] >= 1 and s["message_counts"]["BMT"] >= 1


def test_manual_stop_and_curve() -> None:
    session = generate(options=SimOptions(soc_speedup=50, stop="manual", stop_after_s=5.0))
    exp = session.expected
    assert exp.stop_initiator == "charger" and exp.cst_reasons == ("stop_manual",)
    (closed,) = run_frames(session.frames, keep_messages=False).sessions
    assert closed.summary.stop_initiator == "charger"
    # the curve drives a meter simulator: time → voltage, current, energy
    curve = session.curve
    assert curve[0].current_a == 25.0 and curve[-1].current_a == 0.0
    assert all(b.energy_kwh >= a.energy_kwh for a, b in itertools.pairwise(curve))
    mid = session.at(curve[len(curve) // 2].ts + 0.01)
    assert mid is not None and mid.current_a == 200.0 and 300 < mid.voltage_v < 450
    assert session.at(session.frames[0].ts) is None


def test_periods_and_frame_shapes() -> None:
    session = generate(options=SimOptions(soc_speedup=400))
    ids = [f.can_id for f in session.frames]
    assert 0x181056F4 in ids and 0x1812F456 in ids and 0x1CEB56F4 in ids
    bcl = [f.ts for f in session.frames if f.can_id == 0x181056F4]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(bcl)}
    assert gaps == {0.05}
    assert all(len(f.data) <= 8 for f in session.frames)
    kinds = {classify(f.can_id) for f in session.frames}
    assert FrameKind.FOREIGN in kinds
    assert [f.ts for f in session.frames] == sorted(f.ts for f in session.frames)
