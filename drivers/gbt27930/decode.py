"""Decoders of the 22 GB/T 27930 messages (spec §3) and the PF → decoder table.

``decode(pf, data)`` never raises. Rules applied everywhere:

* physical value = raw × resolution + offset, rounded to the resolution; currents are negative
  while charging (raw 4000 = 0 A) and are never clamped;
* an all-ones raw value ("not available") becomes ``None`` (exceptions: battery type 0xFF is
  ``OTHER``, BRO/CRO 0xFF is ``INVALID``, BSM's highest-cell number 0xFF is cell 256);
* a field is decoded only if all of its bytes are present; missing fields are ``None`` and the
  message carries the flag ``short_frame``; bytes beyond the layout are ignored; ``raw`` always
  holds the payload as received;
* an empty or otherwise undecodable payload becomes a :class:`DecodeError` holding the raw bytes.

The message types are in :mod:`drivers.gbt27930.messages`, the field readers in
:mod:`drivers.gbt27930.payload`.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable

import msgspec

from drivers.gbt27930.enums import (
    HIGHLOW2,
    PERMIT2,
    STATUS2,
    ChargeMode,
    Ownership,
    RecognitionResult,
    battery_type,
    ready_state,
)
from drivers.gbt27930.messages import (
    BCL,
    BCP,
    BCS,
    BEM,
    BHM,
    BMT,
    BMV,
    BRM,
    BRO,
    BSD,
    BSM,
    BSP,
    BST,
    CCS,
    CEM,
    CHM,
    CML,
    CRM,
    CRO,
    CSD,
    CST,
    CTS,
    DIAGNOSTIC_PFS,
    SPECS,
    DecodeError,
    Diagnostic,
    Message,
    Unknown,
)
from drivers.gbt27930.payload import (
    ascii_replacing,
    bcd,
    cell_voltage_v,
    cell_word_v,
    current_a,
    opt_bytes,
    printable,
    short_flag,
    status_codes,
    temp_c,
    u8,
    u16,
    u24,
    u32,
    voltage_v,
)

#: BRM production years outside this range are flagged ``implausible_year`` (no clock is read).
MAX_PLAUSIBLE_YEAR = 2040
MIN_PLAUSIBLE_YEAR = 1990


def _chm(d: bytes, n: int) -> CHM:
    minor = u8(d, n, 0)
    major = u16(d, n, 1)
    version = f"{major}.{minor}" if minor is not None and major is not None else None
    return CHM(minor, major, version, raw=d, flags=short_flag(n, 3))


def _bhm(d: bytes, n: int) -> BHM:
    return BHM(voltage_v(d, n, 0), raw=d, flags=short_flag(n, 2))


def _crm(d: bytes, n: int) -> CRM:
    code = d[0]
    if code == 0x00:
        result = RecognitionResult.NOT_RECOGNISED
    elif code == 0xAA:
        result = RecognitionResult.RECOGNISED
    else:
        result = RecognitionResult.INVALID
    region = ascii_replacing(opt_bytes(d, n, 5, 3))
    return CRM(result, code, u32(d, n, 1), region, raw=d, flags=short_flag(n, 8))


def _brm(d: bytes, n: int) -> BRM:
    flags: list[str] = []
    if n not in (41, 49):
        flags.append("unexpected_length")
    minor = u8(d, n, 0)
    major = u16(d, n, 1)
    version = f"{major}.{minor}" if minor is not None and major is not None else None
    type_code = d[3] if n >= 4 else None
    manufacturer = opt_bytes(d, n, 8, 4)
    serial_raw = opt_bytes(d, n, 12, 4)
    year_raw = u8(d, n, 16)
    year = None if year_raw is None else year_raw + 1985
    if year is not None and not MIN_PLAUSIBLE_YEAR <= year <= MAX_PLAUSIBLE_YEAR:
        flags.append("implausible_year")
    owner_raw = u8(d, n, 22)
    if owner_raw is None:
        ownership = None
    elif owner_raw in (0, 1):
        ownership = Ownership(owner_raw)
    else:
        ownership = Ownership.UNKNOWN
    vin_raw = opt_bytes(d, n, 24, 17)
    vin = ascii_replacing(vin_raw)
    if vin_raw is not None and vin != vin_raw.decode("latin-1"):
        flags.append("vin_not_ascii")
    return BRM(
        minor,
        major,
        version,
        type_code,
        None if type_code is None else battery_type(type_code),
        None if (v := u16(d, n, 4)) is None else v / 10,
        voltage_v(d, n, 6),
        manufacturer,
        printable(manufacturer),
        serial_raw,
        None if serial_raw is None else int.from_bytes(serial_raw, "little"),
        year,
        u8(d, n, 17),
        u8(d, n, 18),
        u24(d, n, 19),
        ownership,
        d[23] if n >= 24 else None,
        vin,
        u8(d, n, 41),
        u8(d, n, 42),
        u8(d, n, 43),
        u16(d, n, 44),
        d[46:49] if n >= 49 else None,
        raw=d,
        flags=tuple(flags),
    )


def _bcp(d: bytes, n: int) -> BCP:
    soc = u16(d, n, 9)
    return BCP(
        cell_voltage_v(d, n, 0),
        current_a(d, n, 2),
        voltage_v(d, n, 4),
        voltage_v(d, n, 6),
        temp_c(d, n, 8),
        None if soc is None else soc / 10,
        voltage_v(d, n, 11),
        raw=d,
        flags=short_flag(n, 13),
    )


def _cts(d: bytes, n: int) -> CTS:
    flags = list(short_flag(n, 7))
    if n >= 7 and d[:7].count(0xFF) == 7:
        return CTS(None, None, None, None, None, None, None, raw=d, flags=tuple(flags))
    parts = [bcd(d[i]) if i < n else None for i in range(5)]
    year = None
    if n >= 7:
        lo, hi = bcd(d[5]), bcd(d[6])
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
    if (
        year is not None
        and month is not None
        and day is not None
        and hour is not None
        and minute is not None
        and sec is not None
    ):
        try:
            charger_time = dt.datetime(year, month, day, hour, minute, sec)
        except ValueError:
            flags.append("invalid_time")
    return CTS(
        sec, minute, hour, day, month, year, charger_time, raw=d, flags=tuple(dict.fromkeys(flags))
    )


def _cml(d: bytes, n: int) -> CML:
    return CML(
        voltage_v(d, n, 0),
        voltage_v(d, n, 2),
        current_a(d, n, 4),
        current_a(d, n, 6),
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
    return BCL(voltage_v(d, n, 0), current_a(d, n, 2), None, raw=d, flags=("short_frame",))


def _bcs(d: bytes, n: int) -> BCS:
    if n >= 6:
        w = d[4] | (d[5] << 8)
        cell_v, group = cell_word_v(w), w >> 12
    else:
        cell_v = group = None
    return BCS(
        voltage_v(d, n, 0),
        current_a(d, n, 2),
        cell_v,
        group,
        u8(d, n, 6),
        u16(d, n, 7),
        raw=d,
        flags=short_flag(n, 9),
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
        voltage_v(d, n, 0),
        current_a(d, n, 2),
        u16(d, n, 4),
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
    probe_max = u8(d, n, 2)
    probe_min = u8(d, n, 4)
    return BSM(
        d[0] + 1,
        temp_c(d, n, 1),
        None if probe_max is None else probe_max + 1,
        temp_c(d, n, 3),
        None if probe_min is None else probe_min + 1,
        None if b6 is None else HIGHLOW2[b6 & 3],
        None if b6 is None else HIGHLOW2[(b6 >> 2) & 3],
        None if b6 is None else STATUS2[(b6 >> 4) & 3],
        None if b6 is None else STATUS2[(b6 >> 6) & 3],
        None if b7 is None else STATUS2[b7 & 3],
        None if b7 is None else STATUS2[(b7 >> 2) & 3],
        None if b7 is None else PERMIT2[(b7 >> 4) & 3],
        raw=d,
        flags=short_flag(n, 7),
    )


def _bmv(d: bytes, n: int) -> BMV:
    words = [d[i] | (d[i + 1] << 8) for i in range(0, n - 1, 2)]
    return BMV(
        tuple(cell_word_v(w) for w in words),
        tuple(w >> 12 for w in words),
        raw=d,
        flags=("odd_length",) if n % 2 else (),
    )


def _bmt(d: bytes, n: int) -> BMT:
    return BMT(tuple(None if b == 0xFF else b - 50 for b in d), raw=d)


def _bsp(d: bytes, n: int) -> BSP:
    return BSP(d, raw=d)


_BST_LAYOUT = (*tuple((i, s) for i in (0, 1, 2) for s in (0, 2, 4, 6)), (3, 0), (3, 2))
_CST_FIRST = (*tuple((i, s) for i in (0, 1) for s in (0, 2, 4, 6)), (2, 0), (2, 2))
_BEM_LAYOUT = ((0, 0), (0, 2), (1, 0), (1, 2), (2, 0), (2, 2), (3, 0))
_CEM_LAYOUT = ((0, 0), (1, 0), (1, 2), (2, 0), (2, 2), (2, 4), (3, 0))


def _bst(d: bytes, n: int) -> BST:
    return BST(*status_codes(d, n, _BST_LAYOUT), raw=d, flags=short_flag(n, 4))


def _cst(d: bytes, n: int) -> CST:
    first = status_codes(d, n, _CST_FIRST)
    extra = d[2] >> 4 if n >= 3 else None
    last = status_codes(d, n, ((3, 0), (3, 2)))
    return CST(*first, extra, *last, raw=d, flags=short_flag(n, 4))


def _bem(d: bytes, n: int) -> BEM:
    other = d[3] >> 2 if n >= 4 else None
    return BEM(*status_codes(d, n, _BEM_LAYOUT), other, raw=d, flags=short_flag(n, 4))


def _cem(d: bytes, n: int) -> CEM:
    other = d[3] >> 2 if n >= 4 else None
    return CEM(*status_codes(d, n, _CEM_LAYOUT), other, raw=d, flags=short_flag(n, 4))


def _bsd(d: bytes, n: int) -> BSD:
    return BSD(
        u8(d, n, 0),
        cell_voltage_v(d, n, 1),
        cell_voltage_v(d, n, 3),
        temp_c(d, n, 5),
        temp_c(d, n, 6),
        raw=d,
        flags=short_flag(n, 7),
    )


def _csd(d: bytes, n: int) -> CSD:
    energy = u16(d, n, 2)
    return CSD(
        u16(d, n, 0),
        None if energy is None else energy / 10,
        u32(d, n, 4),
        raw=d,
        flags=short_flag(n, 8),
    )


Decoder = Callable[[bytes, int], Message]

#: PF → decoder of that message's payload (``data``, ``len(data)``)
DECODERS: dict[int, Decoder] = {
    CHM.pf: _chm,
    BHM.pf: _bhm,
    CRM.pf: _crm,
    BRM.pf: _brm,
    BCP.pf: _bcp,
    CTS.pf: _cts,
    CML.pf: _cml,
    BRO.pf: _bro,
    CRO.pf: _cro,
    BCL.pf: _bcl,
    BCS.pf: _bcs,
    CCS.pf: _ccs,
    BSM.pf: _bsm,
    BMV.pf: _bmv,
    BMT.pf: _bmt,
    BSP.pf: _bsp,
    BST.pf: _bst,
    CST.pf: _cst,
    BSD.pf: _bsd,
    CSD.pf: _csd,
    BEM.pf: _bem,
    CEM.pf: _cem,
}
_VIA_TP = frozenset(pf for pf, s in SPECS.items() if s.via_tp)


def decode(pf: int, data: bytes, via_tp: bool = False) -> Message:
    """Decode one GB/T payload (a single frame's data or a reassembled TP message).

    ``pf`` is the PDU format (PGN >> 8). Never raises: unknown PFs give :class:`Unknown`,
    DM1–DM6 give :class:`Diagnostic`, and a payload that cannot be decoded gives
    :class:`DecodeError` with the raw bytes.
    """
    decoder = DECODERS.get(pf)
    if decoder is None:
        if pf in DIAGNOSTIC_PFS:
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


__all__ = ["DECODERS", "MAX_PLAUSIBLE_YEAR", "MIN_PLAUSIBLE_YEAR", "Decoder", "decode"]
