"""The byte-level pieces of a simulated GB/T 27930 session: scaled fields, the BRM payload,
RTS/CTS transfers as real frame exchanges, the SOC curves. Used by :func:`sim.charging.generate`."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from drivers.gbt27930.frames import BMS_ADDR, CHARGER_ADDR, Frame, make_id
from drivers.gbt27930.messages import SPECS_BY_NAME

if TYPE_CHECKING:
    from sim.charging import VehicleProfile


def u16(v: float, scale: float, offset: float = 0.0) -> bytes:
    raw = max(0, min(0xFFFE, round((v - offset) / scale)))
    return raw.to_bytes(2, "little")


def volt(v: float) -> bytes:
    return u16(v, 0.1)


def amps(charging_a: float) -> bytes:
    """A charging current (positive magnitude) in the wire encoding (negative, offset −400)."""
    return u16(-charging_a, 0.1, -400.0)


def bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


class FrameBuilder:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def msg(self, ts: float, name: str, data: bytes) -> None:
        spec = SPECS_BY_NAME[name]
        sa, da = (CHARGER_ADDR, BMS_ADDR) if spec.sender == "charger" else (BMS_ADDR, CHARGER_ADDR)
        self.frames.append(Frame(round(ts, 6), make_id(spec.pf, sa, da, spec.priority), data))

    def raw(self, ts: float, can_id: int, data: bytes) -> None:
        self.frames.append(Frame(round(ts, 6), can_id, data))

    def transfer(
        self, ts: float, name: str, payload: bytes, *, abort: bool = False, lose_dt: bool = False
    ) -> float:
        """A BMS→charger RTS/CTS exchange; returns the time it ends."""
        pgn = SPECS_BY_NAME[name].pgn.to_bytes(3, "little")
        size, n = len(payload), (len(payload) + 6) // 7
        cm_bms = make_id(0xEC, BMS_ADDR, CHARGER_ADDR, 7)
        cm_chg = make_id(0xEC, CHARGER_ADDR, BMS_ADDR, 7)
        dt_bms = make_id(0xEB, BMS_ADDR, CHARGER_ADDR, 7)
        header = bytes([size & 0xFF, size >> 8, n])
        self.raw(ts, cm_bms, b"\x10" + header + b"\xff" + pgn)
        if abort:
            self.raw(ts + 0.2, cm_bms, b"\xff\xff\xff\xff\xff" + pgn)
            return ts + 0.2
        self.raw(ts + 0.001, cm_chg, bytes([0x11, n, 1, 0xFF, 0xFF]) + pgn)
        t = ts + 0.009
        for i in range(n):
            chunk = payload[7 * i : 7 * i + 7]
            if not (lose_dt and i == 1):
                self.raw(t, dt_bms, bytes([i + 1]) + chunk + b"\xff" * (7 - len(chunk)))
            t += 0.01
        if lose_dt:
            return t
        self.raw(t - 0.009, cm_chg, b"\x13" + header + b"\xff" + pgn)
        return t


def brm_payload(v: VehicleProfile) -> bytes:
    version = b"\x01\x01\x00" if v.protocol == "1.1" else b"\x00\x01\x00"
    body = (
        version
        + bytes([int(v.battery_type) & 0xFF])
        + u16(v.capacity_ah, 0.1)
        + volt(v.rated_voltage_v)
        + b"SIM\x00"
        + (7).to_bytes(4, "little")
        + bytes([2023 - 1985, 6, 15])
        + v.charge_count.to_bytes(3, "little")
        + b"\x01\xff"
        + v.vin.encode("ascii")[:17].ljust(17, b"\xff")
    )
    if v.protocol == "1.1":
        body += bytes([1, 1, 4]) + (2024).to_bytes(2, "little") + b"\xff\xff\xff"
    return body


def interp(curve: tuple[tuple[float, float], ...], soc: float) -> float:
    xs = [p[0] for p in curve]
    i = bisect.bisect_right(xs, soc)
    if i <= 0:
        return curve[0][1]
    if i >= len(curve):
        return curve[-1][1]
    (x0, y0), (x1, y1) = curve[i - 1], curve[i]
    return y0 + (y1 - y0) * (soc - x0) / (x1 - x0) if x1 > x0 else y1


def with_status(byte: int, shift: int, code: int) -> int:
    return (byte & ~(3 << shift)) | (code << shift)
