"""Code tables as data: Shenzhen alarm codes, the project's energy-audit codes, which GB/T 27930
status and fault bits raise which alarm, and the T/CEC ``StopReason`` derivation.

Alarm codes, types and meanings are the 2020-era Shenzhen DB4403/T 77 table
(``shared/spec/tcec102.md`` §15.6); levels are the project defaults of §15.5 (confirm them with
the platform at onboarding). Codes 9001–9299 are this project's own (energy and billing audit,
meter seals, site devices): platforms do not know them, so they never go out as ``AlarmInfo``
codes; each group reaches the city platform by its configured carrier (docs/RECORDS.md).
See ``docs/STATION.md`` for the technician's version of these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from drivers.gbt27930.enums import HighLow2, Status2
from drivers.gbt27930.messages import BEM, BST, CEM, CST


@dataclass(frozen=True, slots=True)
class AlarmCode:
    code: int
    type: int | str
    """1 charging system, 2 battery, 3 distribution; ``energy_audit`` for project codes."""
    level: int
    """1 personal safety, 2 equipment safety, 3 notice."""
    meaning: str


_MEANINGS: Final[dict[int, str]] = {
    1: "AC contactor fault",
    2: "emergency stop",
    3: "meter communication fault",
    4: "insulation monitoring fault",
    5: "insulation device communication fault",
    6: "insulation monitoring abnormal",
    7: "insulation monitoring module fault",
    8: "abnormal power loss",
    9: "smoke alarm (charger)",
    10: "AC circuit-breaker fault",
    11: "DC bus output contactor fault",
    12: "DC bus output fuse fault",
    13: "charging-interface electronic lock fault",
    14: "charger fan fault",
    15: "surge arrester fault",
    16: "control-pilot alarm during charging",
    17: "charger over-temperature",
    18: "charging gun over-temperature",
    19: "gun not returned to holster",
    20: "BMS auxiliary supply abnormal",
    21: "pre-charge failed",
    22: "DC bus voltage abnormal while idle",
    23: "whole module group communication fault",
    24: "discharge (bleeder) circuit fault",
    25: "voltage mismatch (> 5 %)",
    26: "service door open, charging stopped",
    27: "back-end communication fault",
    28: "vehicle charging connector fault (vehicle-reported)",
    29: "vehicle-side high-voltage relay fault",
    30: "single module communication fault",
    31: "charging module fault",
    101: "BMS communication timeout",
    102: "battery reverse connection",
    103: "battery not connected before charging",
    104: "battery pack over-voltage",
    105: "battery pack connector fault",
    106: "cell voltage too low",
    107: "cell voltage too high",
    108: "SOC abnormal",
    109: "vehicle detection point 2 (CC2) voltage fault",
    110: "other vehicle fault",
    111: "vehicle-side over-current",
    112: "vehicle-side over-voltage",
    113: "energy cannot be transferred",
    114: "current mismatch",
    115: "vehicle-side output connector over-temperature",
    116: "BMS component / output connector over-temperature",
    117: "voltage outside the DC contactor abnormal before the insulation test",
    118: "battery voltage too low before charging",
    119: "battery voltage too high before charging",
    120: "traction battery over-temperature",
    121: "traction battery insulation fault",
    122: "battery charging over-current",
    201: "grid over-voltage",
    202: "overload",
    203: "switch tripped",
    204: "transformer over-temperature",
    205: "ambient over-temperature",
    206: "smoke alarm (distribution room)",
}

#: the codes the gateway raises, by name (code numbers appear nowhere else in the station model)
EMERGENCY_STOP: Final = 2
METER_COMMUNICATION: Final = 3
SMOKE_CHARGER: Final = 9
CONTROL_PILOT: Final = 16
CHARGER_OVER_TEMP: Final = 17
GUN_OVER_TEMP: Final = 18
VOLTAGE_MISMATCH: Final = 25
SERVICE_DOOR_OPEN: Final = 26
VEHICLE_CONNECTOR_FAULT: Final = 28
VEHICLE_HV_RELAY: Final = 29
BMS_TIMEOUT: Final = 101
PACK_OVER_VOLTAGE: Final = 104
CELL_UNDER_VOLTAGE: Final = 106
CELL_OVER_VOLTAGE: Final = 107
SOC_ABNORMAL: Final = 108
CC2_VOLTAGE: Final = 109
VEHICLE_OTHER_FAULT: Final = 110
VEHICLE_OVER_CURRENT: Final = 111
VEHICLE_OVER_VOLTAGE: Final = 112
NO_ENERGY_TRANSFER: Final = 113
CURRENT_MISMATCH: Final = 114
VEHICLE_CONNECTOR_OVER_TEMP: Final = 115
BMS_COMPONENT_OVER_TEMP: Final = 116
BATTERY_OVER_TEMP: Final = 120
BATTERY_INSULATION: Final = 121
CHARGE_OVER_CURRENT: Final = 122
GRID_OVER_VOLTAGE: Final = 201
OVERLOAD: Final = 202
SWITCH_TRIPPED: Final = 203
SMOKE_ROOM: Final = 206

_LEVEL_1: Final = {2, 4, 6, 7, 9, 18, 102, 104, 107, 112, 117, 120, 121, 201, 204, 206}
_LEVEL_3: Final = {3, 27, 30, 101, 103, 108, 109, 110}

#: project energy-audit codes (operator only)
ENERGY_METER_VS_CHARGER: Final = 9001
ENERGY_METER_VS_CCS: Final = 9002
ENERGY_CHARGER_VS_CCS: Final = 9003
METER_ENERGY_DECREASED: Final = 9004
METER_ALARM_FLAG: Final = 9005
METER_ENERGY_JUMP: Final = 9006
UNOBSERVED_ENERGY: Final = 9007
BILLED_ENERGY_MISMATCH: Final = 9008
BILLED_MONEY_MISMATCH: Final = 9009
BILLED_MISSING: Final = 9010
ORDER_NO_ENERGY_WITH_CURRENT: Final = 9011
ORDER_SHORT_WITH_ENERGY: Final = 9012
ORDER_DUPLICATE: Final = 9013
ORDER_METER_SWAPPED: Final = 9014
ORDER_ENERGY_ABOVE_POWER: Final = 9015

_AUDIT: Final[dict[int, str]] = {
    ENERGY_METER_VS_CHARGER: "order energy: meter and charger (CSD) disagree beyond tolerance",
    ENERGY_METER_VS_CCS: "order energy: meter and CCS voltage x current integral disagree",
    ENERGY_CHARGER_VS_CCS: "order energy (no meter): charger CSD and CCS integral disagree",
    METER_ENERGY_DECREASED: "meter energy register decreased (reset, replaced or tampered)",
    METER_ALARM_FLAG: "meter reports an alarm or tamper flag",
    METER_ENERGY_JUMP: "meter energy rose faster than the rated power allows",
    UNOBSERVED_ENERGY: "meter register moved while the gateway was down, no session explains it",
    BILLED_ENERGY_MISMATCH: "billed energy differs from the metered order beyond tolerance",
    BILLED_MONEY_MISMATCH: "billed amount differs from the gateway's own money beyond tolerance",
    BILLED_MISSING: "no billed figure from the operator within the deadline",
    ORDER_NO_ENERGY_WITH_CURRENT: "order with no metered energy while the BMS reported current",
    ORDER_SHORT_WITH_ENERGY: "session shorter than the threshold but with energy",
    ORDER_DUPLICATE: "two orders for one session",
    ORDER_METER_SWAPPED: "the order's meter differs from the one at session start",
    ORDER_ENERGY_ABOVE_POWER: "metered energy above what peak power x duration allows",
}
AUDIT_TYPE: Final = "energy_audit"

#: project meter-seal codes (9101–9199): the meter's electronic seal and identity
METER_COVER_OPENED: Final = 9101
METER_TERMINAL_COVER_OPENED: Final = 9102
METER_PROGRAMMED: Final = 9103
METER_CLEARED: Final = 9104
METER_CLOCK_SET: Final = 9105
METER_POWER_DOWN: Final = 9106
METER_REPLACED: Final = 9107
METER_CLOCK_DRIFT: Final = 9108
SEAL_SWITCH_OPENED: Final = 9109

_SEAL: Final[dict[int, str]] = {
    METER_COVER_OPENED: "meter cover opened (electronic seal)",
    METER_TERMINAL_COVER_OPENED: "meter terminal cover opened (electronic seal)",
    METER_PROGRAMMED: "meter programmed",
    METER_CLEARED: "meter cleared (energy or events reset)",
    METER_CLOCK_SET: "meter clock set",
    METER_POWER_DOWN: "meter power-down counted",
    METER_REPLACED: "meter identity changed (replaced or reprogrammed)",
    METER_CLOCK_DRIFT: "meter clock drifts from the gateway's beyond the threshold",
    SEAL_SWITCH_OPENED: "seal switch opened (site input on a sealed cabinet or meter box)",
}
SEAL_TYPE: Final = "meter_seal"

#: project site-device codes (9201–9299): the station's own input sources
INPUT_SOURCE_FAULT: Final = 9201
FLOOD: Final = 9202

_SITE: Final[dict[int, str]] = {
    INPUT_SOURCE_FAULT: "digital-input source not answering (its inputs keep their last state)",
    FLOOD: "flood sensor active (site input)",
}
SITE_TYPE: Final = "site_device"

PROJECT_TYPES: Final = (AUDIT_TYPE, SEAL_TYPE, SITE_TYPE)
"""The groups of project codes (9001–9299), which platforms do not know: each group has its
own T/CEC carrier (``[uplinks.cec] project_alarms``)."""


def _level(code: int) -> int:
    if code in _LEVEL_1:
        return 1
    if code in _LEVEL_3:
        return 3
    return 2


def _type(code: int) -> int:
    return 1 if code < 100 else 2 if code < 200 else 3


ALARM_CODES: Final[dict[int, AlarmCode]] = {
    **{c: AlarmCode(c, _type(c), _level(c), m) for c, m in _MEANINGS.items()},
    **{c: AlarmCode(c, AUDIT_TYPE, 2, m) for c, m in _AUDIT.items()},
    **{c: AlarmCode(c, SEAL_TYPE, 3 if c == METER_POWER_DOWN else 2, m) for c, m in _SEAL.items()},
    **{c: AlarmCode(c, SITE_TYPE, 2, m) for c, m in _SITE.items()},
}
"""Every alarm code the station model can raise."""

# --- GB/T 27930 bits → alarm codes ------------------------------------------------------

#: BSM status field → {abnormal value: code}; 6.1–6.4 use too-high/too-low, the rest active
BSM_CODES: Final[dict[str, dict[int, int]]] = {
    "cell_voltage_status": {
        HighLow2.TOO_HIGH: CELL_OVER_VOLTAGE,
        HighLow2.TOO_LOW: CELL_UNDER_VOLTAGE,
    },
    "soc_status": {HighLow2.TOO_HIGH: SOC_ABNORMAL, HighLow2.TOO_LOW: SOC_ABNORMAL},
    "charge_overcurrent_status": {Status2.ACTIVE: VEHICLE_OVER_CURRENT},
    "battery_overtemp_status": {Status2.ACTIVE: BATTERY_OVER_TEMP},
    "insulation_status": {Status2.ACTIVE: BATTERY_INSULATION},
    "output_connector_status": {Status2.ACTIVE: VEHICLE_CONNECTOR_OVER_TEMP},
}

#: BST fault/error bits with a code (stop reasons such as "SOC reached" have none)
BST_CODES: Final[dict[str, int]] = {
    "fault_insulation": BATTERY_INSULATION,
    "fault_output_connector_overtemp": VEHICLE_CONNECTOR_OVER_TEMP,
    "fault_bms_component_overtemp": BMS_COMPONENT_OVER_TEMP,
    "fault_charging_connector": VEHICLE_CONNECTOR_FAULT,
    "fault_battery_overtemp": BATTERY_OVER_TEMP,
    "fault_hv_relay": VEHICLE_HV_RELAY,
    "fault_cc2_voltage": CC2_VOLTAGE,
    "fault_other": VEHICLE_OTHER_FAULT,
    "error_overcurrent": VEHICLE_OVER_CURRENT,
    "error_voltage_abnormal": VEHICLE_OVER_VOLTAGE,
}

#: CST fault/error bits with a code (``fault_other`` has none: it stays in the order's bits)
CST_CODES: Final[dict[str, int]] = {
    "fault_charger_overtemp": CHARGER_OVER_TEMP,
    "fault_charging_connector": CONTROL_PILOT,
    "fault_charger_internal_overtemp": CHARGER_OVER_TEMP,
    "fault_energy_transfer": NO_ENERGY_TRANSFER,
    "fault_emergency_stop": EMERGENCY_STOP,
    "error_current_mismatch": CURRENT_MISMATCH,
    "error_voltage_abnormal": VOLTAGE_MISMATCH,
}

#: every BEM (BMS saw the charger go silent) and CEM (charger saw the BMS go silent) timeout
#: raises BMS_TIMEOUT

# --- fields of the stop and error messages ------------------------------------------------

BST_FIELDS: Final = tuple(n for n in BST.__struct_fields__ if n not in ("raw", "flags"))
CST_FIELDS: Final = tuple(
    n for n in CST.__struct_fields__ if n not in ("raw", "flags", "fault_extra_bits")
)
BEM_FIELDS: Final = tuple(n for n in BEM.__struct_fields__ if n.startswith("timeout_"))
CEM_FIELDS: Final = tuple(n for n in CEM.__struct_fields__ if n.startswith("timeout_"))


def active_fields(msg: BST | CST | BEM | CEM | None, fields: tuple[str, ...]) -> list[str]:
    """Names of the fields whose 2-bit code is ``01`` (active)."""
    if msg is None:
        return []
    return [f for f in fields if getattr(msg, f) is Status2.ACTIVE]


# --- T/CEC StopReason ---------------------------------------------------------------------

StopReason = Literal[0, 1, 2, 3, 4]

STOP_USER: Final = 0
STOP_PLATFORM: Final = 1
STOP_BMS: Final = 2
STOP_CHARGER_FAULT: Final = 3
STOP_DISCONNECTED: Final = 4

_DISCONNECT_BITS: Final = {
    "bst.fault_charging_connector",
    "bst.fault_cc2_voltage",
    "cst.fault_charging_connector",
}
_CHARGER_FAULT_BITS: Final = {
    "cst.stop_fault",
    "cst.fault_charger_overtemp",
    "cst.fault_charger_internal_overtemp",
    "cst.fault_energy_transfer",
    "cst.fault_emergency_stop",
    "cst.fault_other",
    "cst.error_current_mismatch",
    "cst.error_voltage_abnormal",
}


def stop_bits(bst: BST | None, cst: CST | None, bem: BEM | None, cem: CEM | None) -> dict[str, int]:
    """The raw stop and error bits of a session, by name: every active field as 1, plus the
    raw payloads as little-endian integers (``bst_raw`` …) when the message was seen."""
    out: dict[str, int] = {}
    for prefix, msg, fields in (
        ("bst", bst, BST_FIELDS),
        ("cst", cst, CST_FIELDS),
        ("bem", bem, BEM_FIELDS),
        ("cem", cem, CEM_FIELDS),
    ):
        if msg is None:
            continue
        for name in active_fields(msg, fields):
            out[f"{prefix}.{name}"] = 1
        out[f"{prefix}_raw"] = int.from_bytes(msg.raw, "little")
    return out


def stop_reason(
    bits: dict[str, int], initiator: str | None, last_error_side: str | None
) -> StopReason:
    """Derive the T/CEC StopReason (0–4) from the stop/error bits (see ``docs/STATION.md``).

    1. a connector fault or CC2 fault on either side → 4 (connector disconnected);
    2. the charger stopped first: a fault bit → 3, manual stop or its own stop condition → 0,
       "stopped by the BMS" → 2, otherwise 3;
    3. the BMS stopped first → 2 (SOC/voltage reached, or a vehicle fault);
    4. no stop message: the last error was a CEM (charger side) → 3, a BEM → 2;
    5. nothing at all (communication lost, unplugged) → 4.

    1 (stopped by the platform) cannot be seen on the CAN bus; the service sets it when it
    knows a remote stop command was sent.
    """
    active = {k for k, v in bits.items() if v == 1}
    if active & _DISCONNECT_BITS:
        return STOP_DISCONNECTED
    if initiator == "charger":
        if active & _CHARGER_FAULT_BITS:
            return STOP_CHARGER_FAULT
        if "cst.stop_manual" in active or "cst.stop_condition_reached" in active:
            return STOP_USER
        if "cst.stop_by_bms" in active:
            return STOP_BMS
        return STOP_CHARGER_FAULT
    if initiator == "bms":
        return STOP_BMS
    if last_error_side == "charger":
        return STOP_CHARGER_FAULT
    if last_error_side == "bms":
        return STOP_BMS
    return STOP_DISCONNECTED
