"""Enumerations of GB/T 27930 (spec §3.23). Codes a device may send outside the defined set map
to an ``UNKNOWN``/``INVALID`` member; the raw code is always kept next to the enumeration."""

from __future__ import annotations

from enum import IntEnum


class Status2(IntEnum):
    """Generic 2-bit status: ``10`` is *untrusted* (keep the previous state), ``11`` is the fill."""

    NORMAL = 0
    ACTIVE = 1
    UNTRUSTED = 2
    NOT_AVAILABLE = 3


class HighLow2(IntEnum):
    """BSM 6.1–6.4 only: ``01`` too high, ``10`` too low (no untrusted code here)."""

    NORMAL = 0
    TOO_HIGH = 1
    TOO_LOW = 2
    NOT_AVAILABLE = 3


class Permit2(IntEnum):
    """CCS 7.1–7.2 and BSM 7.5–7.6: ``00`` paused (BSM calls it *forbidden*), ``01`` permitted."""

    PAUSED = 0
    PERMITTED = 1
    UNDEFINED = 2
    NOT_AVAILABLE = 3


class BatteryType(IntEnum):
    """BRM byte 4. 0xFF is a defined code (*other*), not "not available"."""

    UNKNOWN = -1
    LEAD_ACID = 0x01
    NIMH = 0x02
    LFP = 0x03
    LMO = 0x04
    LCO = 0x05
    TERNARY = 0x06
    LI_POLYMER = 0x07
    LTO = 0x08
    OTHER = 0xFF


class RecognitionResult(IntEnum):
    """CRM byte 1."""

    INVALID = -1
    NOT_RECOGNISED = 0x00
    RECOGNISED = 0xAA


class ReadyState(IntEnum):
    """BRO / CRO byte 1. 0xFF is the defined code *invalid*."""

    UNKNOWN = -1
    NOT_READY = 0x00
    READY = 0xAA
    INVALID = 0xFF


class ChargeMode(IntEnum):
    """BCL byte 5."""

    UNKNOWN = -1
    CONSTANT_VOLTAGE = 0x01
    CONSTANT_CURRENT = 0x02


class Ownership(IntEnum):
    """BRM byte 23."""

    UNKNOWN = -1
    LEASED = 0x00
    VEHICLE_OWNED = 0x01


STATUS2 = (Status2.NORMAL, Status2.ACTIVE, Status2.UNTRUSTED, Status2.NOT_AVAILABLE)
HIGHLOW2 = (HighLow2.NORMAL, HighLow2.TOO_HIGH, HighLow2.TOO_LOW, HighLow2.NOT_AVAILABLE)
PERMIT2 = (Permit2.PAUSED, Permit2.PERMITTED, Permit2.UNDEFINED, Permit2.NOT_AVAILABLE)


def battery_type(code: int) -> BatteryType:
    try:
        return BatteryType(code)
    except ValueError:
        return BatteryType.UNKNOWN


def ready_state(code: int) -> ReadyState:
    if code == 0x00:
        return ReadyState.NOT_READY
    if code == 0xAA:
        return ReadyState.READY
    if code == 0xFF:
        return ReadyState.INVALID
    return ReadyState.UNKNOWN
