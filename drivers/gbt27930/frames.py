"""The 29-bit identifier of GB/T 27930 frames and the sorting of bus traffic.

GB/T 27930 uses J1939 PDU1 identifiers only: priority (3 bits), reserved/EDP, data page, PDU format
(PF), destination address (PS) and source address. A frame is *ours* when its two addresses are the
charger (0x56) and the BMS (0xF4), or a broadcast (DA 0xFF) from one of them. Everything else on the
bus (the real capture carries frames from address 0xB5) is *foreign*: counted and set aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

CHARGER_ADDR = 0x56
BMS_ADDR = 0xF4
GLOBAL_ADDR = 0xFF

PF_TP_DT = 0xEB
PF_TP_CM = 0xEC

ID_MASK = 0x1FFFFFFF


class FrameKind(IntEnum):
    """What the pipeline does with a frame."""

    MESSAGE = 0  # a single-frame GB/T message (or an unknown PF) between charger and BMS
    TP_CM = 1  # J1939 transport connection management between charger and BMS
    TP_DT = 2  # J1939 transport data between charger and BMS
    FOREIGN = 3  # an extended frame from or to other addresses
    IGNORED = 4  # 11-bit, remote, CAN FD or error frame: never GB/T 27930


@dataclass(frozen=True, slots=True)
class CanId:
    """A decoded 29-bit identifier (J1939 PDU1 layout)."""

    priority: int
    edp: int
    dp: int
    pf: int
    da: int
    sa: int

    @property
    def pgn(self) -> int:
        return (self.dp << 16) | (self.pf << 8)


@dataclass(frozen=True, slots=True)
class Frame:
    """One CAN frame as it entered the gateway: receive time (Unix seconds) plus the raw frame."""

    ts: float
    can_id: int
    data: bytes
    is_extended: bool = True
    is_remote: bool = False
    is_fd: bool = False
    is_error: bool = False
    channel: str = ""


def parse_id(can_id: int) -> CanId:
    """Split a 29-bit identifier. Flag bits above bit 28 (a DBC's bit 31) are masked off first."""
    i = can_id & ID_MASK
    return CanId(
        priority=(i >> 26) & 7,
        edp=(i >> 25) & 1,
        dp=(i >> 24) & 1,
        pf=(i >> 16) & 0xFF,
        da=(i >> 8) & 0xFF,
        sa=i & 0xFF,
    )


def make_id(pf: int, sa: int, da: int, priority: int) -> int:
    """The 29-bit identifier for a PDU1 frame (used by the simulator and tests)."""
    return ((priority & 7) << 26) | ((pf & 0xFF) << 16) | ((da & 0xFF) << 8) | (sa & 0xFF)


def is_gbt_pair(sa: int, da: int) -> bool:
    """True for charger↔BMS traffic, or a broadcast from either of them."""
    if sa == CHARGER_ADDR:
        return da in (BMS_ADDR, GLOBAL_ADDR)
    if sa == BMS_ADDR:
        return da in (CHARGER_ADDR, GLOBAL_ADDR)
    return False


def classify(
    can_id: int,
    *,
    is_extended: bool = True,
    is_remote: bool = False,
    is_fd: bool = False,
    is_error: bool = False,
) -> FrameKind:
    """Sort a frame: GB/T message, TP.CM, TP.DT, foreign, or ignored."""
    if is_error or is_remote or is_fd or not is_extended:
        return FrameKind.IGNORED
    i = can_id & ID_MASK
    sa = i & 0xFF
    da = (i >> 8) & 0xFF
    if not is_gbt_pair(sa, da) or (i >> 24) & 1:
        return FrameKind.FOREIGN
    pf = (i >> 16) & 0xFF
    if pf == PF_TP_CM:
        return FrameKind.TP_CM
    if pf == PF_TP_DT:
        return FrameKind.TP_DT
    return FrameKind.MESSAGE
