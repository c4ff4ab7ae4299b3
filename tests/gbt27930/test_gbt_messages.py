"""Message decoders: spec §3 layouts, the §7 worked examples, variants and broken payloads."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.gbt27930.decode import decode
from drivers.gbt27930.enums import (
    BatteryType,
    ChargeMode,
    HighLow2,
    Ownership,
    Permit2,
    ReadyState,
    RecognitionResult,
    Status2,
)
from drivers.gbt27930.messages import (
    BRM,
    SPECS,
    DecodeError,
    Diagnostic,
    Unknown,
    active_codes,
    untrusted_codes,
)
from drivers.gbt27930.report import to_fields

H = bytes.fromhex
BRM_49 = H(
    "01010003F005400E0100000001000000630B08950000"
    "01FF4C314E5350474839384E41313936323032000104E707FFFF00"
)


def test_twenty_two_messages_are_defined() -> None:
    names = {s.name for s in SPECS.values()}
    assert names == set(
        [
            "CHM",
            "BHM",
            "CRM",
            "BRM",
            "BCP",
            "CTS",
            "CML",
            "BRO",
            "CRO",
            "BCL",
            "BCS",
            "CCS",
            "BSM",
            "BMV",
            "BMT",
            "BSP",
            "BST",
            "CST",
            "BSD",
            "CSD",
            "BEM",
            "CEM",
        ]
    )


def test_chm_bhm_crm() -> None:
    chm = decode(0x26, H("010100"))
    assert (chm.charger_protocol_version_minor, chm.charger_protocol_version_major) == (1, 1)
    assert chm.charger_protocol_version == "1.1" and chm.flags == ()
    assert decode(0x27, H("A510")).max_allowed_total_charge_voltage_v == 426.1
    crm = decode(0x01, H("0001010101313233"))
    assert crm.recognition_result is RecognitionResult.NOT_RECOGNISED
    assert crm.charger_number == 16843009 and crm.charger_region_code == "123"
    assert decode(0x01, H("AA01010101313233")).recognition_result is RecognitionResult.RECOGNISED
    odd = decode(0x01, H("55FFFFFFFFFFFFFF"))
    assert odd.recognition_result is RecognitionResult.INVALID and odd.recognition_code == 0x55
    assert odd.charger_number is None and odd.charger_region_code is None


def test_brm_49_bytes_worked_example() -> None:
    m = decode(0x02, BRM_49, via_tp=True)
    assert isinstance(m, BRM)
    assert m.bms_protocol_version == "1.1"
    assert m.battery_type is BatteryType.LFP and m.battery_type_code == 3
    assert m.rated_capacity_ah == 152.0 and m.rated_total_voltage_v == 364.8
    assert m.battery_manufacturer is None and m.battery_manufacturer_raw == H("01000000")
    assert m.battery_pack_serial == 1
    assert (m.production_year, m.production_month, m.production_day) == (2084, 11, 8)
    assert m.pack_charge_count == 149 and m.pack_ownership is Ownership.VEHICLE_OWNED
    assert m.reserved_24 == 0xFF
    assert m.vin == "L1NSPGH98NA196202"
    assert m.bms_sw_version_serial == 0
    assert (m.bms_sw_build_day, m.bms_sw_build_month, m.bms_sw_build_year) == (1, 4, 2023)
    assert m.bms_sw_version_reserved == H("FFFF00")
    assert m.flags == ("implausible_year",)


def test_brm_41_bytes_v10_and_other_sizes() -> None:
    v10 = bytes([0x00, 0x01, 0x00]) + BRM_49[3:41]
    m = decode(0x02, v10, via_tp=True)
    assert m.bms_protocol_version == "1.0" and m.vin == "L1NSPGH98NA196202"
    assert m.bms_sw_version_serial is None and m.bms_sw_build_year is None
    assert "unexpected_length" not in m.flags
    odd = decode(0x02, BRM_49[:20], via_tp=True)
    assert "unexpected_length" in odd.flags
    assert odd.rated_capacity_ah == 152.0 and odd.pack_charge_count is None and odd.vin is None
    assert decode(0x02, BRM_49[:4], via_tp=True).battery_type is BatteryType.LFP
    other = decode(0x02, BRM_49[:3] + b"\xff" + BRM_49[4:], via_tp=True)
    assert other.battery_type is BatteryType.OTHER
    unknown = decode(0x02, BRM_49[:3] + b"\x42" + BRM_49[4:], via_tp=True)
    assert unknown.battery_type is BatteryType.UNKNOWN and unknown.battery_type_code == 0x42


def test_bcp_cml_cts() -> None:
    bcp = decode(0x06, H("7201DA052A02A510730803C60E"), via_tp=True)
    assert (bcp.max_cell_charge_voltage_v, bcp.max_charge_current_a) == (3.7, -250.2)
    assert (bcp.nominal_total_energy_kwh, bcp.max_total_charge_voltage_v) == (55.4, 426.1)
    assert (bcp.max_temperature_c, bcp.soc_pct, bcp.battery_voltage_v) == (65, 77.6, 378.2)
    cml = decode(0x08, H("1C257C01DC05A00F"))
    assert (cml.max_output_voltage_v, cml.min_output_voltage_v) == (950.0, 38.0)
    assert (cml.max_output_current_a, cml.min_output_current_a) == (-250.0, 0.0)
    cml6 = decode(0x08, H("1C257C01DC05"))
    assert cml6.min_output_current_a is None and cml6.flags == ()
    cts = decode(0x07, H("FFFFFFFFFFFFFF"))
    assert cts.charger_time is None and cts.time_year is None and cts.flags == ()
    good = decode(0x07, H("56341225122320"))
    assert good.charger_time == dt.datetime(2023, 12, 25, 12, 34, 56)
    swapped = decode(0x07, H("56341225122023"))
    assert swapped.time_year == 2023
    bad = decode(0x07, H("5A341225122320"))
    assert bad.time_second is None and bad.charger_time is None and "invalid_bcd" in bad.flags


def test_bro_cro_bcl_bcs_ccs() -> None:
    assert decode(0x09, H("00")).bms_ready is ReadyState.NOT_READY
    assert decode(0x09, H("AA")).bms_ready is ReadyState.READY
    assert decode(0x09, H("FF")).bms_ready is ReadyState.INVALID
    assert decode(0x0A, H("12")).charger_ready is ReadyState.UNKNOWN
    bcl = decode(0x10, H("A510D80E02"))
    assert (bcl.voltage_demand_v, bcl.current_demand_a) == (426.1, -20.0)
    assert bcl.charge_mode is ChargeMode.CONSTANT_CURRENT
    assert decode(0x10, H("A510580E02")).current_demand_a == -32.8
    bcs = decode(0x11, H("C50EA00F4C614D0000"), via_tp=True)
    assert (bcs.measured_charge_voltage_v, bcs.measured_charge_current_a) == (378.1, 0.0)
    assert (bcs.max_cell_voltage_v, bcs.max_cell_voltage_group) == (3.32, 6)
    assert (bcs.soc_pct, bcs.remaining_charge_time_min) == (77, 0)
    bcs2 = decode(0x11, H("FD0E570E51314D2B00"), via_tp=True)
    assert (bcs2.measured_charge_voltage_v, bcs2.measured_charge_current_a) == (383.7, -32.9)
    assert (bcs2.max_cell_voltage_v, bcs2.max_cell_voltage_group) == (3.37, 3)
    assert bcs2.remaining_charge_time_min == 43
    ccs = decode(0x12, H("240BA00F0000FD"))
    assert (ccs.output_voltage_v, ccs.output_current_a) == (285.2, 0.0)
    assert ccs.cumulative_charge_time_min == 0 and ccs.charging_permitted is Permit2.PERMITTED
    ccs2 = decode(0x12, H("090F3E0E0000FD"))
    assert (ccs2.output_voltage_v, ccs2.output_current_a) == (384.9, -35.4)
    ccs6 = decode(0x12, H("090F3E0E0000"))
    assert ccs6.charging_permitted is None and ccs6.flags == ()
    assert decode(0x12, H("090F3E0E0000FDFF")).charging_permitted is Permit2.PERMITTED


def test_bsm_and_untrusted_codes() -> None:
    m = decode(0x13, H("1E3606350F0010"))
    assert (m.max_cell_voltage_index, m.max_battery_temp_c, m.max_temp_probe_index) == (31, 4, 7)
    assert (m.min_battery_temp_c, m.min_temp_probe_index) == (3, 16)
    assert m.cell_voltage_status is HighLow2.NORMAL and m.soc_status is HighLow2.NORMAL
    assert m.insulation_status is Status2.NORMAL
    assert m.charging_permitted is Permit2.PERMITTED
    # 6.1-6.2 = 10 is "too low" in BSM; 7.1-7.2 = 10 is untrusted
    low = decode(0x13, H("FF36FF35FF0212"))
    assert low.cell_voltage_status is HighLow2.TOO_LOW
    assert low.insulation_status is Status2.UNTRUSTED
    assert low.max_cell_voltage_index == 256 and low.max_temp_probe_index is None


def test_stop_statistics_and_errors() -> None:
    cst = decode(0x1A, H("0400F0F0"))
    assert active_codes(cst) == ("stop_manual",)
    assert cst.fault_extra_bits == 0xF
    bst = decode(0x19, H("40000000"))
    assert active_codes(bst) == ("stop_by_charger",)
    bst2 = decode(0x19, H("01080100"))
    assert active_codes(bst2) == ("stop_soc_target_reached", "fault_battery_overtemp")
    assert bst2.fault_output_connector_overtemp is Status2.UNTRUSTED
    assert untrusted_codes(bst2) == ("fault_output_connector_overtemp",)
    bsd = decode(0x1C, H("4D4D014E013536"))
    assert (bsd.stop_soc_pct, bsd.min_cell_voltage_v, bsd.max_cell_voltage_v) == (77, 3.33, 3.34)
    assert (bsd.min_battery_temp_c, bsd.max_battery_temp_c) == (3, 4)
    csd = decode(0x1D, H("0000010001010101"))
    assert (csd.cumulative_charge_time_min, csd.output_energy_kwh) == (0, 0.1)
    assert csd.charger_number == 0x01010101
    bem = decode(0x1E, H("F4F0F0FC"))
    assert active_codes(bem) == ("timeout_crm_aa",) and bem.other == 0x3F
    cem = decode(0x1F, H("FCF1FCFC"))
    assert active_codes(cem) == ("timeout_bcp",)


def test_bst_decodes_the_soc_target_and_overtemp_bits() -> None:
    m = decode(0x19, H("01F0F1F0"))
    assert m.stop_soc_target_reached is Status2.ACTIVE
    assert m.fault_battery_overtemp is Status2.ACTIVE
    assert m.fault_insulation is Status2.NORMAL and m.fault_hv_relay is Status2.NORMAL


def test_optional_variable_messages() -> None:
    bmv = decode(0x15, H("4C615D01FF0F"), via_tp=True)
    assert bmv.cell_voltages_v == (3.32, 3.49, None) and bmv.cell_groups == (6, 0, 0)
    assert "odd_length" in decode(0x15, H("4C615D"), via_tp=True).flags
    bmt = decode(0x16, H("3637FF"), via_tp=True)
    assert bmt.probe_temps_c == (4, 5, None)
    assert decode(0x17, H("0102"), via_tp=True).reserved == H("0102")


@pytest.mark.parametrize("pf", sorted(SPECS))
def test_short_frames_give_none_and_a_flag(pf: int) -> None:
    m = decode(pf, b"\x01", via_tp=SPECS[pf].via_tp)
    assert not isinstance(m, DecodeError)
    assert m.raw == b"\x01"
    if SPECS[pf].length > 1:
        assert "short_frame" in m.flags or "unexpected_length" in m.flags


@pytest.mark.parametrize("pf", sorted(SPECS))
def test_all_ones_is_not_available(pf: int) -> None:
    spec = SPECS[pf]
    m = decode(pf, b"\xff" * max(spec.length, 8), via_tp=spec.via_tp)
    fields = to_fields(m)
    for name, value in fields.items():
        if name in ("raw", "flags", "battery_type", "battery_type_code", "max_cell_voltage_index"):
            continue
        if name in ("bms_ready", "charger_ready", "ready_code", "recognition_result"):
            continue
        if name in ("recognition_code", "fault_extra_bits", "other", "cell_groups", "reserved"):
            continue
        if name in ("max_cell_voltage_group", "reserved_24", "bms_sw_version_reserved"):
            continue
        assert value in (None, "NOT_AVAILABLE", []) or isinstance(value, list), (name, value)


def test_empty_unknown_and_diagnostic() -> None:
    e = decode(0x10, b"")
    assert isinstance(e, DecodeError) and e.raw == b"" and e.name == "ERROR"
    u = decode(0x77, H("0102"))
    assert isinstance(u, Unknown) and u.pgn == 0x7700 and u.raw == H("0102")
    d = decode(0x23, H("AA"))
    assert isinstance(d, Diagnostic) and d.name == "DM4"


def test_tp_message_as_single_frame_is_flagged() -> None:
    m = decode(0x11, H("C50EA00F4C614D00"))
    assert "unexpected_single_frame" in m.flags and "short_frame" in m.flags
    assert m.measured_charge_voltage_v == 378.1 and m.remaining_charge_time_min is None


def test_to_fields_is_json_ready() -> None:
    f = to_fields(decode(0x13, H("1E3606350F0010")))
    assert f["insulation_status"] == "NORMAL" and f["raw"] == "1e3606350f0010"
