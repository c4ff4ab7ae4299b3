"""The GB/T 27930 message types (spec §3): one frozen :class:`msgspec.Struct` per message, the
message table of spec §2.1 (:data:`SPECS`), and which 2-bit codes a message has set.

Values are as decoded by :mod:`drivers.gbt27930.decode`, with units in the field names. Every
message keeps its ``raw`` payload and the decoder's ``flags`` (``short_frame`` …).
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

import msgspec

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


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every decoded message: the raw payload and decoder flags."""

    raw: bytes
    flags: tuple[str, ...] = ()

    name: ClassVar[str] = "?"
    pf: ClassVar[int] = -1

    @property
    def pgn(self) -> int:
        return self.pf << 8


class CHM(Message, frozen=True):
    """Charger handshake (PGN 0x2600): the charger's protocol version."""

    name: ClassVar[str] = "CHM"
    pf: ClassVar[int] = 0x26
    charger_protocol_version_minor: int | None
    charger_protocol_version_major: int | None
    charger_protocol_version: str | None


class BHM(Message, frozen=True):
    """BMS handshake (PGN 0x2700)."""

    name: ClassVar[str] = "BHM"
    pf: ClassVar[int] = 0x27
    max_allowed_total_charge_voltage_v: float | None


class CRM(Message, frozen=True):
    """Charger recognition (PGN 0x0100). 0x00 opens recognition, 0xAA accepts the BRM."""

    name: ClassVar[str] = "CRM"
    pf: ClassVar[int] = 0x01
    recognition_result: RecognitionResult | None
    recognition_code: int | None
    charger_number: int | None
    charger_region_code: str | None


class BRM(Message, frozen=True):
    """BMS and vehicle recognition (PGN 0x0200, via TP, 49 bytes in V1.1, 41 in V1.0)."""

    name: ClassVar[str] = "BRM"
    pf: ClassVar[int] = 0x02
    bms_protocol_version_minor: int | None
    bms_protocol_version_major: int | None
    bms_protocol_version: str | None
    battery_type_code: int | None
    battery_type: BatteryType | None
    rated_capacity_ah: float | None
    rated_total_voltage_v: float | None
    battery_manufacturer_raw: bytes | None
    battery_manufacturer: str | None
    battery_pack_serial_raw: bytes | None
    battery_pack_serial: int | None
    production_year: int | None
    production_month: int | None
    production_day: int | None
    pack_charge_count: int | None
    pack_ownership: Ownership | None
    reserved_24: int | None
    vin: str | None
    bms_sw_version_serial: int | None
    bms_sw_build_day: int | None
    bms_sw_build_month: int | None
    bms_sw_build_year: int | None
    bms_sw_version_reserved: bytes | None


class BCP(Message, frozen=True):
    """Battery charging parameters (PGN 0x0600, via TP, 13 bytes). SOC here is 0.1 %/bit."""

    name: ClassVar[str] = "BCP"
    pf: ClassVar[int] = 0x06
    max_cell_charge_voltage_v: float | None
    max_charge_current_a: float | None
    nominal_total_energy_kwh: float | None
    max_total_charge_voltage_v: float | None
    max_temperature_c: int | None
    soc_pct: float | None
    battery_voltage_v: float | None


class CTS(Message, frozen=True):
    """Charger time synchronisation (PGN 0x0700): packed BCD, seconds first. Optional."""

    name: ClassVar[str] = "CTS"
    pf: ClassVar[int] = 0x07
    time_second: int | None
    time_minute: int | None
    time_hour: int | None
    time_day: int | None
    time_month: int | None
    time_year: int | None
    charger_time: dt.datetime | None


class CML(Message, frozen=True):
    """Charger maximum output (PGN 0x0800); 6 bytes (no minimum current) from 2011-era chargers."""

    name: ClassVar[str] = "CML"
    pf: ClassVar[int] = 0x08
    max_output_voltage_v: float | None
    min_output_voltage_v: float | None
    max_output_current_a: float | None
    min_output_current_a: float | None


class BRO(Message, frozen=True):
    """BMS ready (PGN 0x0900)."""

    name: ClassVar[str] = "BRO"
    pf: ClassVar[int] = 0x09
    bms_ready: ReadyState | None
    ready_code: int | None


class CRO(Message, frozen=True):
    """Charger ready (PGN 0x0A00). CRO(0xAA) starts the charging phase."""

    name: ClassVar[str] = "CRO"
    pf: ClassVar[int] = 0x0A
    charger_ready: ReadyState | None
    ready_code: int | None


class BCL(Message, frozen=True):
    """Battery charging demand (PGN 0x1000, every 50 ms)."""

    name: ClassVar[str] = "BCL"
    pf: ClassVar[int] = 0x10
    voltage_demand_v: float | None
    current_demand_a: float | None
    charge_mode: ChargeMode | None


class BCS(Message, frozen=True):
    """Battery charging status (PGN 0x1100, via TP, 9 bytes). SOC here is 1 %/bit."""

    name: ClassVar[str] = "BCS"
    pf: ClassVar[int] = 0x11
    measured_charge_voltage_v: float | None
    measured_charge_current_a: float | None
    max_cell_voltage_v: float | None
    max_cell_voltage_group: int | None
    soc_pct: int | None
    remaining_charge_time_min: int | None


class CCS(Message, frozen=True):
    """Charger charging status (PGN 0x1200): 7 bytes on the wire, 6 from 2011-era chargers."""

    name: ClassVar[str] = "CCS"
    pf: ClassVar[int] = 0x12
    output_voltage_v: float | None
    output_current_a: float | None
    cumulative_charge_time_min: int | None
    charging_permitted: Permit2 | None


class BSM(Message, frozen=True):
    """Battery status (PGN 0x1300). Cell and probe numbers are 1-based (raw + 1)."""

    name: ClassVar[str] = "BSM"
    pf: ClassVar[int] = 0x13
    max_cell_voltage_index: int | None
    max_battery_temp_c: int | None
    max_temp_probe_index: int | None
    min_battery_temp_c: int | None
    min_temp_probe_index: int | None
    cell_voltage_status: HighLow2 | None
    soc_status: HighLow2 | None
    charge_overcurrent_status: Status2 | None
    battery_overtemp_status: Status2 | None
    insulation_status: Status2 | None
    output_connector_status: Status2 | None
    charging_permitted: Permit2 | None


class BMV(Message, frozen=True):
    """Cell voltages (PGN 0x1500, via TP, optional): 12-bit voltage + 4-bit group per cell."""

    name: ClassVar[str] = "BMV"
    pf: ClassVar[int] = 0x15
    cell_voltages_v: tuple[float | None, ...]
    cell_groups: tuple[int, ...]


class BMT(Message, frozen=True):
    """Battery temperatures (PGN 0x1600, via TP, optional): one byte per probe."""

    name: ClassVar[str] = "BMT"
    pf: ClassVar[int] = 0x16
    probe_temps_c: tuple[int | None, ...]


class BSP(Message, frozen=True):
    """Battery reserved (PGN 0x1700, via TP, optional): no meaning defined."""

    name: ClassVar[str] = "BSP"
    pf: ClassVar[int] = 0x17
    reserved: bytes


class BST(Message, frozen=True):
    """BMS stop (PGN 0x1900): why the BMS stops; every field a 2-bit code."""

    name: ClassVar[str] = "BST"
    pf: ClassVar[int] = 0x19
    stop_soc_target_reached: Status2 | None
    stop_total_voltage_setpoint_reached: Status2 | None
    stop_cell_voltage_setpoint_reached: Status2 | None
    stop_by_charger: Status2 | None
    fault_insulation: Status2 | None
    fault_output_connector_overtemp: Status2 | None
    fault_bms_component_overtemp: Status2 | None
    fault_charging_connector: Status2 | None
    fault_battery_overtemp: Status2 | None
    fault_hv_relay: Status2 | None
    fault_cc2_voltage: Status2 | None
    fault_other: Status2 | None
    error_overcurrent: Status2 | None
    error_voltage_abnormal: Status2 | None


class CST(Message, frozen=True):
    """Charger stop (PGN 0x1A00): why the charger stops; every field a 2-bit code."""

    name: ClassVar[str] = "CST"
    pf: ClassVar[int] = 0x1A
    stop_condition_reached: Status2 | None
    stop_manual: Status2 | None
    stop_fault: Status2 | None
    stop_by_bms: Status2 | None
    fault_charger_overtemp: Status2 | None
    fault_charging_connector: Status2 | None
    fault_charger_internal_overtemp: Status2 | None
    fault_energy_transfer: Status2 | None
    fault_emergency_stop: Status2 | None
    fault_other: Status2 | None
    fault_extra_bits: int | None
    error_current_mismatch: Status2 | None
    error_voltage_abnormal: Status2 | None


class BSD(Message, frozen=True):
    """BMS statistics (PGN 0x1C00). Cell voltages are full 16-bit values here."""

    name: ClassVar[str] = "BSD"
    pf: ClassVar[int] = 0x1C
    stop_soc_pct: int | None
    min_cell_voltage_v: float | None
    max_cell_voltage_v: float | None
    min_battery_temp_c: int | None
    max_battery_temp_c: int | None


class CSD(Message, frozen=True):
    """Charger statistics (PGN 0x1D00). The charger number is the raw value (offset 0)."""

    name: ClassVar[str] = "CSD"
    pf: ClassVar[int] = 0x1D
    cumulative_charge_time_min: int | None
    output_energy_kwh: float | None
    charger_number: int | None


class BEM(Message, frozen=True):
    """BMS error (PGN 0x1E00): which charger message the BMS timed out on."""

    name: ClassVar[str] = "BEM"
    pf: ClassVar[int] = 0x1E
    timeout_crm_00: Status2 | None
    timeout_crm_aa: Status2 | None
    timeout_cts_cml: Status2 | None
    timeout_cro: Status2 | None
    timeout_ccs: Status2 | None
    timeout_cst: Status2 | None
    timeout_csd: Status2 | None
    other: int | None


class CEM(Message, frozen=True):
    """Charger error (PGN 0x1F00): which BMS message the charger timed out on."""

    name: ClassVar[str] = "CEM"
    pf: ClassVar[int] = 0x1F
    timeout_brm: Status2 | None
    timeout_bcp: Status2 | None
    timeout_bro: Status2 | None
    timeout_bcs: Status2 | None
    timeout_bcl: Status2 | None
    timeout_bst: Status2 | None
    timeout_bsd: Status2 | None
    other: int | None


class Diagnostic(Message, frozen=True):
    """DM1–DM6 (PGN 0x2000–0x2500): layouts not covered, raw bytes only."""

    number: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"DM{self.number}"


class Unknown(Message, frozen=True):
    """A PF between charger and BMS that GB/T 27930-2015 does not define: kept raw."""

    pf_code: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return "UNKNOWN"

    @property
    def pgn(self) -> int:
        return self.pf_code << 8


class DecodeError(Message, frozen=True):
    """A payload that could not be decoded; ``raw`` keeps the bytes, ``reason`` says why."""

    pf_code: int
    reason: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return "ERROR"

    @property
    def pgn(self) -> int:
        return self.pf_code << 8


class MessageSpec(msgspec.Struct, frozen=True):
    """One row of the message table (spec §2.1)."""

    name: str
    pf: int
    priority: int
    length: int  # bytes in the 2015 layout; 0 for messages of variable length
    sender: Literal["charger", "bms"]
    via_tp: bool

    @property
    def pgn(self) -> int:
        return self.pf << 8


SPECS: dict[int, MessageSpec] = {
    s.pf: s
    for s in (
        MessageSpec("CHM", 0x26, 6, 3, "charger", False),
        MessageSpec("BHM", 0x27, 6, 2, "bms", False),
        MessageSpec("CRM", 0x01, 6, 8, "charger", False),
        MessageSpec("BRM", 0x02, 7, 49, "bms", True),
        MessageSpec("BCP", 0x06, 7, 13, "bms", True),
        MessageSpec("CTS", 0x07, 6, 7, "charger", False),
        MessageSpec("CML", 0x08, 6, 8, "charger", False),
        MessageSpec("BRO", 0x09, 4, 1, "bms", False),
        MessageSpec("CRO", 0x0A, 4, 1, "charger", False),
        MessageSpec("BCL", 0x10, 6, 5, "bms", False),
        MessageSpec("BCS", 0x11, 7, 9, "bms", True),
        MessageSpec("CCS", 0x12, 6, 7, "charger", False),
        MessageSpec("BSM", 0x13, 6, 7, "bms", False),
        MessageSpec("BMV", 0x15, 7, 0, "bms", True),
        MessageSpec("BMT", 0x16, 7, 0, "bms", True),
        MessageSpec("BSP", 0x17, 7, 0, "bms", True),
        MessageSpec("BST", 0x19, 4, 4, "bms", False),
        MessageSpec("CST", 0x1A, 4, 4, "charger", False),
        MessageSpec("BSD", 0x1C, 6, 7, "bms", False),
        MessageSpec("CSD", 0x1D, 6, 8, "charger", False),
        MessageSpec("BEM", 0x1E, 2, 4, "bms", False),
        MessageSpec("CEM", 0x1F, 2, 4, "charger", False),
    )
}
SPECS_BY_NAME: dict[str, MessageSpec] = {s.name: s for s in SPECS.values()}
#: DM1–DM6
DIAGNOSTIC_PFS = range(0x20, 0x26)


def active_codes(msg: Message) -> tuple[str, ...]:
    """Names of the 2-bit fields that are ``ACTIVE`` (``01``) in a BST, CST, BEM or CEM.

    Untrusted (``10``) and not-available (``11``) codes are never counted as active.
    """
    return tuple(f for f in msg.__struct_fields__ if getattr(msg, f) is Status2.ACTIVE)


def untrusted_codes(msg: Message) -> tuple[str, ...]:
    """Names of the 2-bit fields that carry the *untrusted* code ``10``."""
    return tuple(f for f in msg.__struct_fields__ if getattr(msg, f) is Status2.UNTRUSTED)


__all__ = [
    "BCL",
    "BCP",
    "BCS",
    "BEM",
    "BHM",
    "BMT",
    "BMV",
    "BRM",
    "BRO",
    "BSD",
    "BSM",
    "BSP",
    "BST",
    "CCS",
    "CEM",
    "CHM",
    "CML",
    "CRM",
    "CRO",
    "CSD",
    "CST",
    "CTS",
    "DIAGNOSTIC_PFS",
    "SPECS",
    "SPECS_BY_NAME",
    "DecodeError",
    "Diagnostic",
    "Message",
    "MessageSpec",
    "Unknown",
    "active_codes",
    "untrusted_codes",
]
