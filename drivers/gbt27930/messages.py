"""Decoders for the 22 GB/T 27930 messages into typed, immutable values (spec §3).

``decode(pf, data)`` never raises. Rules applied everywhere:

* physical value = raw × resolution + offset, rounded to the resolution; currents are negative
  while charging (raw 4000 = 0 A) and are never clamped;
* an all-ones raw value ("not available") becomes ``None`` (exceptions: battery type 0xFF is
  ``OTHER``, BRO/CRO 0xFF is ``INVALID``, BSM's highest-cell number 0xFF is cell 256);
* a field is decoded only if all of its bytes are present; missing fields are ``None`` and the
  message carries the flag ``short_frame``; bytes beyond the layout are ignored; ``raw`` always
  holds the payload as received;
* an empty or otherwise undecodable payload becomes a :class:`DecodeError` holding the raw bytes.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

import msgspec

from drivers.gbt27930.enums import (
    HIGHLOW2,
    PERMIT2,
    STATUS2,
    BatteryType,
    ChargeMode,
    HighLow2,
    Ownership,
    Permit2,
    ReadyState,
    RecognitionResult,
    Status2,
    battery_type,
    ready_state,
)

#: BRM production years after this are flagged ``implausible_year`` (the decoder reads no clock).
MAX_PLAUSIBLE_YEAR = 2040
MIN_PLAUSIBLE_YEAR = 1990


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every decoded message: the raw payload and decoder flags."""

    raw: bytes
    flags: tuple[str, ...] = ()

    name: ClassVar[str] = "?"
    pf: ClassVar[int] = -1

    @property
    def pgn(self) -> int:
        return self.pf << 8


# --------------------------------------------------------------------------- field helpers


def _u16(d: bytes, n: int, i: int) -> int | None:
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v


def _u8(d: bytes, n: int, i: int) -> int | None:
    if i >= n:
        return None
    v = d[i]
    return None if v == 0xFF else v


def _volt(d: bytes, n: int, i: int) -> float | None:
    """16-bit total voltage, 0.1 V/bit."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v / 10


def _cur(d: bytes, n: int, i: int) -> float | None:
    """16-bit current, 0.1 A/bit, offset −400 A (negative = charging)."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else (v - 4000) / 10


def _cellv(d: bytes, n: int, i: int) -> float | None:
    """16-bit cell voltage, 0.01 V/bit."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v / 100


def _temp(d: bytes, n: int, i: int) -> int | None:
    """8-bit temperature, 1 °C/bit, offset −50 °C."""
    if i >= n:
        return None
    v = d[i]
    return None if v == 0xFF else v - 50


def _u24(d: bytes, n: int, i: int) -> int | None:
    if i + 3 > n:
        return None
    v = int.from_bytes(d[i : i + 3], "little")
    return None if v == 0xFFFFFF else v


def _u32(d: bytes, n: int, i: int) -> int | None:
    if i + 4 > n:
        return None
    v = int.from_bytes(d[i : i + 4], "little")
    return None if v == 0xFFFFFFFF else v


def _opt_bytes(d: bytes, n: int, i: int, size: int) -> bytes | None:
    """Optional byte field: ``None`` when absent or all 0xFF."""
    if i + size > n:
        return None
    b = d[i : i + size]
    return None if b.count(0xFF) == size else b


def _printable(b: bytes | None) -> str | None:
    """ASCII text only if every byte is printable, else ``None``."""
    if b is None or not all(0x20 <= c < 0x7F for c in b):
        return None
    return b.decode("ascii")


def _ascii_replacing(b: bytes | None) -> str | None:
    if b is None:
        return None
    return "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in b)


def _short(n: int, length: int) -> tuple[str, ...]:
    return ("short_frame",) if n < length else ()


# --------------------------------------------------------------------------- message types


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


# --------------------------------------------------------------------------- decoders


def _chm(d: bytes, n: int) -> CHM:
    minor = _u8(d, n, 0)
    major = _u16(d, n, 1)
    version = f"{major}.{minor}" if minor is not None and major is not None else None
    return CHM(minor, major, version, raw=d, flags=_short(n, 3))


def _bhm(d: bytes, n: int) -> BHM:
    return BHM(_volt(d, n, 0), raw=d, flags=_short(n, 2))


def _crm(d: bytes, n: int) -> CRM:
    code = d[0]
    if code == 0x00:
        result = RecognitionResult.NOT_RECOGNISED
    elif code == 0xAA:
        result = RecognitionResult.RECOGNISED
    else:
        result = RecognitionResult.INVALID
    region = _ascii_replacing(_opt_bytes(d, n, 5, 3))
    return CRM(result, code, _u32(d, n, 1), region, raw=d, flags=_short(n, 8))


def _brm(d: bytes, n: int) -> BRM:
    flags: list[str] = []
    if n not in (41, 49):
        flags.append("unexpected_length")
    minor = _u8(d, n, 0)
    major = _u16(d, n, 1)
    version = f"{major}.{minor}" if minor is not None and major is not None else None
    type_code = d[3] if n >= 4 else None
    manufacturer = _opt_bytes(d, n, 8, 4)
    serial_raw = _opt_bytes(d, n, 12, 4)
    year_raw = _u8(d, n, 16)
    year = None if year_raw is None else year_raw + 1985
    if year is not None and not MIN_PLAUSIBLE_YEAR <= year <= MAX_PLAUSIBLE_YEAR:
        flags.append("implausible_year")
    owner_raw = _u8(d, n, 22)
    if owner_raw is None:
        ownership = None
    elif owner_raw in (0, 1):
        ownership = Ownership(owner_raw)
    else:
        ownership = Ownership.UNKNOWN
    vin_raw = _opt_bytes(d, n, 24, 17)
    vin = _ascii_replacing(vin_raw)
    if vin_raw is not None and vin != vin_raw.decode("latin-1"):
        flags.append("vin_not_ascii")
    return BRM(
        minor,
        major,
        version,
        type_code,
        None if type_code is None else battery_type(type_code),
        None if (v := _u16(d, n, 4)) is None else v / 10,
        _volt(d, n, 6),
        manufacturer,
        _printable(manufacturer),
        serial_raw,
        None if serial_raw is None else int.from_bytes(serial_raw, "little"),
        year,
        _u8(d, n, 17),
        _u8(d, n, 18),
        _u24(d, n, 19),
        ownership,
        d[23] if n >= 24 else None,
        vin,
        _u8(d, n, 41),
        _u8(d, n, 42),
        _u8(d, n, 43),
        _u16(d, n, 44),
        d[46:49] if n >= 49 else None,
        raw=d,
        flags=tuple(flags),
    )


def _bcp(d: bytes, n: int) -> BCP:
    soc = _u16(d, n, 9)
    return BCP(
        _cellv(d, n, 0),
        _cur(d, n, 2),
        _volt(d, n, 4),
        _volt(d, n, 6),
        _temp(d, n, 8),
        None if soc is None else soc / 10,
        _volt(d, n, 11),
        raw=d,
        flags=_short(n, 13),
    )


def _bcd(b: int) -> int | None:
    hi, lo = b >> 4, b & 0x0F
    return None if hi > 9 or lo > 9 else hi * 10 + lo


def _cts(d: bytes, n: int) -> CTS:
    flags = list(_short(n, 7))
    if n >= 7 and d[:7].count(0xFF) == 7:
        return CTS(None, None, None, None, None, None, None, raw=d, flags=tuple(flags))
    parts = [_bcd(d[i]) if i < n else None for i in range(5)]
    year = None
    if n >= 7:
        lo, hi = _bcd(d[5]), _bcd(d[6])
        if lo is not None and hi is not None:
            year = hi * 100 + lo
            if not 1990 <= year <= 2099:
                swapped = lo * 100 + hi
                year = swapped if 1990 <= swapped <= 2099 else None
        if year is None:
            flags.append("invalid_bcd")
    if any(p is None for p in parts[: min(n, 5)]):
        flags.append("invalid_bcd")
    charger_time = None
    sec, minute, hour, day, month = parts
    if None not in (sec, minute, hour, day, month, year):
        try:
            charger_time = dt.datetime(year, month, day, hour, minute, sec)  # type: ignore[arg-type]
        except ValueError:
            flags.append("invalid_time")
    return CTS(
        sec, minute, hour, day, month, year, charger_time, raw=d, flags=tuple(dict.fromkeys(flags))
    )


def _cml(d: bytes, n: int) -> CML:
    return CML(
        _volt(d, n, 0),
        _volt(d, n, 2),
        _cur(d, n, 4),
        _cur(d, n, 6),
        raw=d,
        flags=() if n >= 6 else ("short_frame",),
    )


def _bro(d: bytes, n: int) -> BRO:
    return BRO(ready_state(d[0]), d[0], raw=d)


def _cro(d: bytes, n: int) -> CRO:
    return CRO(ready_state(d[0]), d[0], raw=d)


_MODES = {0x01: ChargeMode.CONSTANT_VOLTAGE, 0x02: ChargeMode.CONSTANT_CURRENT}
_BCL = struct.Struct("<HHB")
_CCS = struct.Struct("<HHHB")
_BSM = struct.Struct("<7B")


def _bcl(d: bytes, n: int) -> BCL:
    if n >= 5:
        v, c, m = _BCL.unpack_from(d)
        return BCL(
            None if v == 0xFFFF else v / 10,
            None if c == 0xFFFF else (c - 4000) / 10,
            None if m == 0xFF else _MODES.get(m, ChargeMode.UNKNOWN),
            raw=d,
        )
    return BCL(_volt(d, n, 0), _cur(d, n, 2), None, raw=d, flags=("short_frame",))


def _cell_word(w: int) -> float | None:
    v = w & 0x0FFF
    return None if v == 0x0FFF else v / 100


def _bcs(d: bytes, n: int) -> BCS:
    if n >= 6:
        w = d[4] | (d[5] << 8)
        cell_v, group = _cell_word(w), w >> 12
    else:
        cell_v = group = None
    return BCS(
        _volt(d, n, 0),
        _cur(d, n, 2),
        cell_v,
        group,
        _u8(d, n, 6),
        _u16(d, n, 7),
        raw=d,
        flags=_short(n, 9),
    )


def _ccs(d: bytes, n: int) -> CCS:
    if n >= 7:
        v, c, t, b7 = _CCS.unpack_from(d)
        return CCS(
            None if v == 0xFFFF else v / 10,
            None if c == 0xFFFF else (c - 4000) / 10,
            None if t == 0xFFFF else t,
            PERMIT2[b7 & 3],
            raw=d,
        )
    return CCS(
        _volt(d, n, 0),
        _cur(d, n, 2),
        _u16(d, n, 4),
        None,
        raw=d,
        flags=() if n >= 6 else ("short_frame",),
    )


def _bsm(d: bytes, n: int) -> BSM:
    if n >= 7:
        cell, tmax, pmax, tmin, pmin, b6, b7 = _BSM.unpack_from(d)
        return BSM(
            cell + 1,
            None if tmax == 0xFF else tmax - 50,
            None if pmax == 0xFF else pmax + 1,
            None if tmin == 0xFF else tmin - 50,
            None if pmin == 0xFF else pmin + 1,
            HIGHLOW2[b6 & 3],
            HIGHLOW2[(b6 >> 2) & 3],
            STATUS2[(b6 >> 4) & 3],
            STATUS2[b6 >> 6],
            STATUS2[b7 & 3],
            STATUS2[(b7 >> 2) & 3],
            PERMIT2[(b7 >> 4) & 3],
            raw=d,
        )
    b6 = d[5] if n >= 6 else None
    b7 = d[6] if n >= 7 else None
    probe_max = _u8(d, n, 2)
    probe_min = _u8(d, n, 4)
    return BSM(
        d[0] + 1,
        _temp(d, n, 1),
        None if probe_max is None else probe_max + 1,
        _temp(d, n, 3),
        None if probe_min is None else probe_min + 1,
        None if b6 is None else HIGHLOW2[b6 & 3],
        None if b6 is None else HIGHLOW2[(b6 >> 2) & 3],
        None if b6 is None else STATUS2[(b6 >> 4) & 3],
        None if b6 is None else STATUS2[(b6 >> 6) & 3],
        None if b7 is None else STATUS2[b7 & 3],
        None if b7 is None else STATUS2[(b7 >> 2) & 3],
        None if b7 is None else PERMIT2[(b7 >> 4) & 3],
        raw=d,
        flags=_short(n, 7),
    )


def _bmv(d: bytes, n: int) -> BMV:
    words = [d[i] | (d[i + 1] << 8) for i in range(0, n - 1, 2)]
    return BMV(
        tuple(_cell_word(w) for w in words),
        tuple(w >> 12 for w in words),
        raw=d,
        flags=("odd_length",) if n % 2 else (),
    )


def _bmt(d: bytes, n: int) -> BMT:
    return BMT(tuple(None if b == 0xFF else b - 50 for b in d), raw=d)


def _bsp(d: bytes, n: int) -> BSP:
    return BSP(d, raw=d)


def _codes(d: bytes, n: int, layout: tuple[tuple[int, int], ...]) -> list[Status2 | None]:
    return [STATUS2[(d[i] >> s) & 3] if i < n else None for i, s in layout]


_BST_LAYOUT = (*tuple((i, s) for i in (0, 1, 2) for s in (0, 2, 4, 6)), (3, 0), (3, 2))
_CST_FIRST = (*tuple((i, s) for i in (0, 1) for s in (0, 2, 4, 6)), (2, 0), (2, 2))
_BEM_LAYOUT = ((0, 0), (0, 2), (1, 0), (1, 2), (2, 0), (2, 2), (3, 0))
_CEM_LAYOUT = ((0, 0), (1, 0), (1, 2), (2, 0), (2, 2), (2, 4), (3, 0))


def _bst(d: bytes, n: int) -> BST:
    return BST(*_codes(d, n, _BST_LAYOUT), raw=d, flags=_short(n, 4))


def _cst(d: bytes, n: int) -> CST:
    first = _codes(d, n, _CST_FIRST)
    extra = d[2] >> 4 if n >= 3 else None
    last = _codes(d, n, ((3, 0), (3, 2)))
    return CST(*first, extra, *last, raw=d, flags=_short(n, 4))


def _bem(d: bytes, n: int) -> BEM:
    other = d[3] >> 2 if n >= 4 else None
    return BEM(*_codes(d, n, _BEM_LAYOUT), other, raw=d, flags=_short(n, 4))


def _cem(d: bytes, n: int) -> CEM:
    other = d[3] >> 2 if n >= 4 else None
    return CEM(*_codes(d, n, _CEM_LAYOUT), other, raw=d, flags=_short(n, 4))


def _bsd(d: bytes, n: int) -> BSD:
    return BSD(
        _u8(d, n, 0),
        _cellv(d, n, 1),
        _cellv(d, n, 3),
        _temp(d, n, 5),
        _temp(d, n, 6),
        raw=d,
        flags=_short(n, 7),
    )


def _csd(d: bytes, n: int) -> CSD:
    energy = _u16(d, n, 2)
    return CSD(
        _u16(d, n, 0),
        None if energy is None else energy / 10,
        _u32(d, n, 4),
        raw=d,
        flags=_short(n, 8),
    )


class MessageSpec(msgspec.Struct, frozen=True):
    """One row of the message table (spec §2.1)."""

    name: str
    pf: int
    priority: int
    length: int
    sender: str  # "charger" or "bms"
    via_tp: bool
    decoder: Callable[[bytes, int], Message]

    @property
    def pgn(self) -> int:
        return self.pf << 8


SPECS: dict[int, MessageSpec] = {
    s.pf: s
    for s in (
        MessageSpec("CHM", 0x26, 6, 3, "charger", False, _chm),
        MessageSpec("BHM", 0x27, 6, 2, "bms", False, _bhm),
        MessageSpec("CRM", 0x01, 6, 8, "charger", False, _crm),
        MessageSpec("BRM", 0x02, 7, 49, "bms", True, _brm),
        MessageSpec("BCP", 0x06, 7, 13, "bms", True, _bcp),
        MessageSpec("CTS", 0x07, 6, 7, "charger", False, _cts),
        MessageSpec("CML", 0x08, 6, 8, "charger", False, _cml),
        MessageSpec("BRO", 0x09, 4, 1, "bms", False, _bro),
        MessageSpec("CRO", 0x0A, 4, 1, "charger", False, _cro),
        MessageSpec("BCL", 0x10, 6, 5, "bms", False, _bcl),
        MessageSpec("BCS", 0x11, 7, 9, "bms", True, _bcs),
        MessageSpec("CCS", 0x12, 6, 7, "charger", False, _ccs),
        MessageSpec("BSM", 0x13, 6, 7, "bms", False, _bsm),
        MessageSpec("BMV", 0x15, 7, 0, "bms", True, _bmv),
        MessageSpec("BMT", 0x16, 7, 0, "bms", True, _bmt),
        MessageSpec("BSP", 0x17, 7, 0, "bms", True, _bsp),
        MessageSpec("BST", 0x19, 4, 4, "bms", False, _bst),
        MessageSpec("CST", 0x1A, 4, 4, "charger", False, _cst),
        MessageSpec("BSD", 0x1C, 6, 7, "bms", False, _bsd),
        MessageSpec("CSD", 0x1D, 6, 8, "charger", False, _csd),
        MessageSpec("BEM", 0x1E, 2, 4, "bms", False, _bem),
        MessageSpec("CEM", 0x1F, 2, 4, "charger", False, _cem),
    )
}
SPECS_BY_NAME: dict[str, MessageSpec] = {s.name: s for s in SPECS.values()}
DIAGNOSTIC_PFS = range(0x20, 0x26)


_DECODERS: dict[int, Callable[[bytes, int], Message]] = {pf: s.decoder for pf, s in SPECS.items()}
_VIA_TP = frozenset(pf for pf, s in SPECS.items() if s.via_tp)


def decode(pf: int, data: bytes, via_tp: bool = False) -> Message:
    """Decode one GB/T payload (a single frame's data or a reassembled TP message).

    ``pf`` is the PDU format (PGN >> 8). Never raises: unknown PFs give :class:`Unknown`,
    DM1–DM6 give :class:`Diagnostic`, and a payload that cannot be decoded gives
    :class:`DecodeError` with the raw bytes.
    """
    decoder = _DECODERS.get(pf)
    if decoder is None:
        if 0x20 <= pf <= 0x25:
            return Diagnostic(pf - 0x1F, raw=data)
        return Unknown(pf, raw=data)
    n = len(data)
    if n == 0:
        return DecodeError(pf, "empty payload", raw=data)
    try:
        msg = decoder(data, n)
    except Exception as exc:  # a decoder bug must not stop the listener: keep the bytes
        return DecodeError(pf, f"{type(exc).__name__}: {exc}", raw=data)
    if via_tp or pf not in _VIA_TP:
        return msg
    return msgspec.structs.replace(msg, flags=(*msg.flags, "unexpected_single_frame"))


def active_codes(msg: Message) -> tuple[str, ...]:
    """Names of the 2-bit fields that are ``ACTIVE`` (``01``) in a BST, CST, BEM or CEM.

    Untrusted (``10``) and not-available (``11``) codes are never counted as active.
    """
    return tuple(f for f in msg.__struct_fields__ if getattr(msg, f) is Status2.ACTIVE)


def untrusted_codes(msg: Message) -> tuple[str, ...]:
    """Names of the 2-bit fields that carry the *untrusted* code ``10``."""
    return tuple(f for f in msg.__struct_fields__ if getattr(msg, f) is Status2.UNTRUSTED)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


def to_fields(msg: Message) -> dict[str, Any]:
    """The message as plain JSON-ready data: enumerations by name, bytes as hex."""
    skip = ("raw", "flags")
    out = {f: _jsonable(getattr(msg, f)) for f in msg.__struct_fields__ if f not in skip}
    if msg.flags:
        out["flags"] = list(msg.flags)
    out["raw"] = msg.raw.hex()
    return out


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
    "SPECS",
    "DecodeError",
    "Diagnostic",
    "Message",
    "MessageSpec",
    "Unknown",
    "active_codes",
    "decode",
    "to_fields",
    "untrusted_codes",
]
