"""The real capture (spec §5.5 and §7): every worked example, and the session summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.gbt27930.enums import BatteryType, ChargeMode, Permit2, ReadyState, RecognitionResult
from drivers.gbt27930.events import (
    ChargingSample,
    ChargingStarted,
    Phase,
    PhaseChanged,
    SessionClosed,
    SessionEnded,
    SessionStarted,
    StopRequested,
    VehicleIdentified,
)
from drivers.gbt27930.frames import FrameKind, classify, parse_id
from drivers.gbt27930.pipeline import Decoded
from drivers.gbt27930.replay import ReplayResult, replay_file
from drivers.gbt27930.report import pipeline_record, session_record


@pytest.fixture(scope="module")
def replay(request: pytest.FixtureRequest) -> ReplayResult:
    from tests.conftest import CAPTURE

    if not CAPTURE.is_file():
        pytest.skip(f"real capture not available at {CAPTURE}")
    return replay_file(CAPTURE)


def at(r: ReplayResult, ts: float) -> Decoded:
    (d,) = [m for m in r.messages if abs(m.ts - ts) < 1e-7]
    return d


def test_fixture_path(capture_path: Path) -> None:
    assert capture_path.name == "session-v11-lfp.log"


def test_identifiers() -> None:
    chm = parse_id(0x1826F456)
    assert (chm.priority, chm.pf, chm.da, chm.sa, chm.pgn) == (6, 0x26, 0xF4, 0x56, 0x2600)
    cm = parse_id(0x1CEC56F4)
    assert (cm.priority, cm.pf, cm.da, cm.sa) == (7, 0xEC, 0x56, 0xF4)
    assert parse_id(0x9C0256F4) == parse_id(0x1C0256F4)
    assert classify(0x1CEB56F4) is FrameKind.TP_DT
    assert classify(0x101AF456) is FrameKind.MESSAGE
    assert classify(0x0070F4B5) is FrameKind.FOREIGN
    assert classify(0x1826F456, is_extended=False) is FrameKind.IGNORED


def test_counts(replay: ReplayResult) -> None:
    c = replay.pipeline.counts
    assert c.total == 1857 and c.foreign == 43
    assert dict(c.foreign_ids) == {"0070F4B5": 42, "0073F4B5": 1}
    assert c.messages["CHM"] == 66 and c.messages["BHM"] == 67
    assert c.messages["BCL"] == 548 and c.messages["CCS"] == 396
    assert c.messages["BCS"] == 110 and c.messages["BSM"] == 109
    assert c.messages["CST"] == 26 and c.messages["BST"] == 10
    assert c.messages["BSD"] == 5 and c.messages["CSD"] == 4
    assert c.messages["CTS"] == 3 and c.messages["CML"] == 5
    assert (c.messages["BRM"], c.messages["BCP"]) == (1, 1)
    assert replay.pipeline.reassembler.completed == 112
    assert replay.pipeline.anomalies() == {
        "decode": {"implausible_year": 1},
        "transport": {},
        "session": {},
    }


def test_worked_examples(replay: ReplayResult) -> None:
    chm = at(replay, 1703560127.487397)
    assert chm.name == "CHM" and chm.message.charger_protocol_version == "1.1"
    assert (chm.sa, chm.da, chm.pgn) == (0x56, 0xF4, 0x2600)
    assert at(replay, 1703560127.502088).message.max_allowed_total_charge_voltage_v == 426.1
    crm = at(replay, 1703560143.987524).message
    assert crm.recognition_result is RecognitionResult.NOT_RECOGNISED
    assert (crm.charger_number, crm.charger_region_code) == (16843009, "123")
    crm_aa = at(replay, 1703560144.083267).message
    assert crm_aa.recognition_result is RecognitionResult.RECOGNISED
    brm = at(replay, 1703560144.080982)  # last TP.DT of the BRM (line 155)
    assert brm.via_tp and brm.name == "BRM" and brm.pgn == 0x200
    b = brm.message
    assert b.vin == "L1NSPGH98NA196202" and b.battery_type is BatteryType.LFP
    assert (b.rated_capacity_ah, b.rated_total_voltage_v) == (152.0, 364.8)
    assert (b.production_year, b.pack_charge_count, b.bms_sw_build_year) == (2084, 149, 2023)
    assert "implausible_year" in b.flags
    bcp = at(replay, 1703560144.111734).message
    assert (bcp.max_charge_current_a, bcp.soc_pct, bcp.battery_voltage_v) == (-250.2, 77.6, 378.2)
    assert (bcp.max_cell_charge_voltage_v, bcp.nominal_total_energy_kwh) == (3.7, 55.4)
    assert (bcp.max_total_charge_voltage_v, bcp.max_temperature_c) == (426.1, 65)
    assert at(replay, 1703560144.117038).message.charger_time is None
    cml = at(replay, 1703560144.117287).message
    assert (cml.max_output_voltage_v, cml.min_output_voltage_v) == (950.0, 38.0)
    assert (cml.max_output_current_a, cml.min_output_current_a) == (-250.0, 0.0)
    assert at(replay, 1703560144.131453).message.bms_ready is ReadyState.NOT_READY
    assert at(replay, 1703560145.381347).message.bms_ready is ReadyState.READY
    assert at(replay, 1703560145.386861).message.charger_ready is ReadyState.NOT_READY
    assert at(replay, 1703560145.456621).message.charger_ready is ReadyState.READY
    bcl = at(replay, 1703560145.482817).message
    assert (bcl.voltage_demand_v, bcl.current_demand_a) == (426.1, -20.0)
    assert bcl.charge_mode is ChargeMode.CONSTANT_CURRENT
    assert at(replay, 1703560171.531337).message.current_demand_a == -32.8
    bcs = at(replay, 1703560145.511256).message
    assert (bcs.measured_charge_voltage_v, bcs.measured_charge_current_a) == (378.1, 0.0)
    assert (bcs.max_cell_voltage_v, bcs.max_cell_voltage_group, bcs.soc_pct) == (3.32, 6, 77)
    later = [m for m in replay.messages if m.name == "BCS" and 1703560171.4 < m.ts < 1703560171.6]
    assert (later[0].message.measured_charge_voltage_v, later[0].message.soc_pct) == (383.7, 77)
    assert later[0].message.remaining_charge_time_min == 43
    ccs = at(replay, 1703560145.551160).message
    assert (ccs.output_voltage_v, ccs.output_current_a) == (285.2, 0.0)
    assert ccs.charging_permitted is Permit2.PERMITTED
    ccs2 = at(replay, 1703560171.550677).message
    assert (ccs2.output_voltage_v, ccs2.output_current_a) == (384.9, -35.4)
    bsm = at(replay, 1703560145.812828).message
    assert (bsm.max_cell_voltage_index, bsm.max_battery_temp_c, bsm.max_temp_probe_index) == (
        31,
        4,
        7,
    )
    assert (bsm.min_battery_temp_c, bsm.min_temp_probe_index) == (3, 16)
    assert bsm.charging_permitted is Permit2.PERMITTED
    cst = at(replay, 1703560172.857156).message
    assert cst.stop_manual.name == "ACTIVE" and cst.stop_by_bms.name == "NORMAL"
    bst = at(replay, 1703560172.875004).message
    assert bst.stop_by_charger.name == "ACTIVE" and bst.fault_insulation.name == "NORMAL"
    bsd = at(replay, 1703560173.221064).message
    assert (bsd.stop_soc_pct, bsd.min_cell_voltage_v, bsd.max_cell_voltage_v) == (77, 3.33, 3.34)
    assert (bsd.min_battery_temp_c, bsd.max_battery_temp_c) == (3, 4)
    csd = at(replay, 1703560173.223061).message
    assert (csd.cumulative_charge_time_min, csd.output_energy_kwh, csd.charger_number) == (
        0,
        0.1,
        16843009,
    )


def test_bcl_has_four_payloads(replay: ReplayResult) -> None:
    demands = {m.message.current_demand_a for m in replay.messages if m.name == "BCL"}
    assert demands == {-20.0, -29.8, -32.8, -35.8}


def test_event_sequence(replay: ReplayResult) -> None:
    kinds = [type(e).__name__ for e in replay.events if not isinstance(e, ChargingSample)]
    assert kinds == [
        "SessionStarted",
        "PhaseChanged",
        "VehicleIdentified",
        "PhaseChanged",
        "ParametersReceived",
        "ParametersReceived",
        "PhaseChanged",
        "ChargingStarted",
        "PhaseChanged",
        "StopRequested",
        "StopRequested",
        "PhaseChanged",
        "SessionEnded",
        "SessionClosed",
    ]
    started = replay.events[0]
    assert isinstance(started, SessionStarted) and started.protocol_version == "1.1"
    assert started.ts == 1703560127.487397
    phases = [(e.phase, e.ts) for e in replay.events if isinstance(e, PhaseChanged)]
    assert phases == [
        (Phase.RECOGNITION, 1703560143.987524),
        (Phase.CONFIGURATION, 1703560144.083267),
        (Phase.CHARGING, 1703560145.456621),
        (Phase.STOPPING, 1703560172.857156),
        (Phase.STATISTICS, 1703560173.221064),
    ]
    vi = next(e for e in replay.events if isinstance(e, VehicleIdentified))
    assert vi.vin == "L1NSPGH98NA196202" and vi.generation == "2015+"
    cs = next(e for e in replay.events if isinstance(e, ChargingStarted))
    assert not cs.missed_cro_aa
    stops = [e for e in replay.events if isinstance(e, StopRequested)]
    assert [(s.side, s.initiator, s.reasons) for s in stops] == [
        ("charger", "charger", ("stop_manual",)),
        ("bms", "charger", ("stop_by_charger",)),
    ]
    ended = next(e for e in replay.events if isinstance(e, SessionEnded))
    assert (ended.energy_kwh, ended.charge_minutes, ended.soc_end_pct) == (0.1, 0, 77)
    samples = [e for e in replay.events if isinstance(e, ChargingSample)]
    assert 25 <= len(samples) <= 29
    assert all(s.soc_pct == 77 for s in samples[1:])
    assert samples[-1].charger_current_a is not None and samples[-1].charger_current_a < -30
    closed = replay.events[-1]
    assert isinstance(closed, SessionClosed) and closed.end_reason == "normal"
    # closed by silence while foreign frames kept arriving, stamped with the last GB/T frame
    assert closed.ts == 1703560174.273717


def test_summary_field_by_field(replay: ReplayResult) -> None:
    (closed,) = replay.sessions
    s = session_record(closed.summary)
    assert s["protocol_version"] == "1.1" and s["generation"] == "2015+"
    assert s["start_ts"] == 1703560127.487397 and s["end_ts"] == 1703560174.273717
    assert s["end_reason"] == "normal"
    assert [(p["phase"], p["ts"]) for p in s["phases"]] == [
        ("HANDSHAKE", 1703560127.487397),
        ("RECOGNITION", 1703560143.987524),
        ("CONFIGURATION", 1703560144.083267),
        ("CHARGING", 1703560145.456621),
        ("STOPPING", 1703560172.857156),
        ("STATISTICS", 1703560173.221064),
    ]
    v = s["vehicle"]
    assert v["vin"] == "L1NSPGH98NA196202"
    assert (v["battery_type_code"], v["battery_type"]) == (3, "LFP")
    assert (v["rated_capacity_ah"], v["rated_voltage_v"]) == (152.0, 364.8)
    assert v["manufacturer"] is None and v["manufacturer_raw"] == "01000000"
    assert v["charge_count"] == 149 and v["production_year"] == 2084
    assert s["limits"]["max_charge_current_a"] == -250.2 and s["limits"]["soc_pct"] == 77.6
    assert s["limits"]["max_total_charge_voltage_v"] == 426.1
    ch = s["charger"]
    assert (ch["charger_number"], ch["region_code"], ch["protocol_version"]) == (
        16843009,
        "123",
        "1.1",
    )
    assert (ch["max_output_voltage_v"], ch["max_output_current_a"]) == (950.0, -250.0)
    assert (s["soc_start_pct"], s["soc_end_pct"]) == (77, 77)
    assert s["voltage_v"] == {"min": 285.2, "max": 384.9, "last": 384.5}
    assert s["current_a"]["min"] == -35.8 and s["current_a"]["max"] == 0.0
    assert s["cell_voltage_v"] == {"min": 3.32, "max": 3.37, "last": 3.37}
    assert s["temperature_c"]["min"] == 3 and s["temperature_c"]["max"] == 4
    assert s["stop_reason"] == {
        "initiator": "charger",
        "bst": ["stop_by_charger"],
        "cst": ["stop_manual"],
        "initiator_conflict": False,
    }
    assert (s["energy_kwh"], s["charge_minutes"]) == (0.1, 0)
    assert s["bms_ready_ts"] == 1703560145.381347
    assert s["charging_started_ts"] == 1703560145.456621 and s["stop_ts"] == 1703560172.857156
    assert s["errors"] == [] and s["timeouts"] == [] and s["pauses"] == []
    assert s["reconnect_attempts"] == 0 and s["flags"] == []
    p = pipeline_record(replay.pipeline)
    assert p["frames"] == {
        "total": 1857,
        "gbt": 1249,
        "tp_cm": 336,
        "tp_dt": 229,
        "foreign": 43,
        "ignored": 0,
    }
    assert p["transfers_completed"] == 112
