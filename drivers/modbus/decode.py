"""Sans-I/O register planning, decoding and encoding.

:func:`plan_reads` turns a resolved profile into the fewest requests: registers that are
contiguous (or within the profile's ``max_gap``) and of the same function code are read in
one request of at most ``max_registers``. :meth:`ReadPlan.decode` turns the registers of
those requests into values in standard units. :func:`encode_value` is the inverse, used by
the simulator. Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from drivers.modbus.profile_model import TYPES, Quantity, ResolvedProfile

_FORMATS: Final = {
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "f32": "f",
    "u64": "Q",
    "i64": "q",
    "f64": "d",
}
_UNSIGNED: Final = {1: "H", 2: "I", 4: "Q"}


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: function code, first register, number of registers."""

    function: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """Values of one poll in standard units, plus what could not be decoded and why."""

    values: dict[str, float]
    rejected: dict[str, str]
    flags: dict[str, bool]


@dataclass(frozen=True, slots=True)
class _QItem:
    name: str
    block: int
    offset: int
    count: int
    fast: struct.Struct | None  # big/big: unpack straight from the block bytes
    fmt: struct.Struct
    reorder: tuple[bool, bool]  # (swap bytes, reverse words)
    scale: float
    divisor: int  # scale = 1/divisor exactly (0 when not): dividing keeps 0.01 steps exact
    exponent: tuple[int, int, int] | None  # (block, offset, exponent offset)
    sentinel: int | None
    raw_fmt: struct.Struct


@dataclass(frozen=True, slots=True)
class _FItem:
    name: str
    block: int
    offset: int
    bit: int | None


def _reorder(regs: Sequence[int], swap_bytes: bool, reverse_words: bool) -> list[int]:
    out = [((r & 0xFF) << 8) | (r >> 8) for r in regs] if swap_bytes else list(regs)
    if reverse_words:
        out.reverse()
    return out


@dataclass(frozen=True, slots=True)
class ReadPlan:
    resolved: ResolvedProfile
    blocks: tuple[Block, ...]
    _quantities: tuple[_QItem, ...]
    _flags: tuple[_FItem, ...]

    @property
    def register_count(self) -> int:
        return sum(b.count for b in self.blocks)

    def decode(self, results: Sequence[Sequence[int] | str]) -> Decoded:
        """Decode one poll. ``results[i]`` holds the registers of ``blocks[i]``, or a text
        saying why that block could not be read (its quantities are then rejected)."""
        packed: list[bytes | None] = []
        reasons: list[str] = []
        for block, res in zip(self.blocks, results, strict=True):
            if isinstance(res, str):
                packed.append(None)
                reasons.append(res)
            elif len(res) != block.count:
                packed.append(None)
                reasons.append(f"reply has {len(res)} registers, expected {block.count}")
            else:
                packed.append(struct.pack(f">{block.count}H", *res))
                reasons.append("")
        values: dict[str, float] = {}
        rejected: dict[str, str] = {}
        for item in self._quantities:
            buf = packed[item.block]
            if buf is None:
                rejected[item.name] = reasons[item.block]
                continue
            off = item.offset * 2
            if item.sentinel is not None and (
                item.raw_fmt.unpack_from(buf, off)[0] == item.sentinel
            ):
                rejected[item.name] = f"meter reports 'not available' (0x{item.sentinel:X})"
                continue
            if item.fast is not None:
                raw = item.fast.unpack_from(buf, off)[0]
            else:
                regs = struct.unpack_from(f">{item.count}H", buf, off)
                raw = item.fmt.unpack(
                    struct.pack(f">{item.count}H", *_reorder(regs, *item.reorder))
                )[0]
            value = raw / item.divisor if item.divisor else raw * item.scale
            if item.exponent is not None:
                eblock, eoff, eadd = item.exponent
                ebuf = packed[eblock]
                if ebuf is None:
                    rejected[item.name] = f"decimal-point register: {reasons[eblock]}"
                    continue
                exp = struct.unpack_from(">h", ebuf, eoff * 2)[0] + eadd
                if not -20 <= exp <= 20:
                    rejected[item.name] = f"decimal-point register holds {exp - eadd}, not a power"
                    continue
                value = value / 10**-exp if exp < 0 else value * 10**exp
            if math.isnan(value):
                rejected[item.name] = "not a number (NaN)"
            elif math.isinf(value):
                rejected[item.name] = "infinite value"
            else:
                values[item.name] = value
        flags: dict[str, bool] = {}
        for f in self._flags:
            buf = packed[f.block]
            if buf is None:
                continue
            reg = struct.unpack_from(">H", buf, f.offset * 2)[0]
            flags[f.name] = bool(reg >> f.bit & 1) if f.bit is not None else reg != 0
        return Decoded(values, rejected, flags)


def plan_reads(resolved: ResolvedProfile) -> ReadPlan:
    """Group every register the profile needs into as few requests as allowed."""
    prof = resolved.profile
    spans: list[tuple[int, int, int]] = []  # (function, first, last)
    for q in resolved.quantities:
        spans.append((q.function, q.address, q.address + q.count - 1))
        if q.exponent is not None:
            spans.append((q.function, q.exponent.address, q.exponent.address))
    for f in resolved.flags:
        spans.append((f.function, f.address, f.address))
    spans.sort()
    merged: list[list[int]] = []
    for fc, first, last in spans:
        if merged:
            cur = merged[-1]
            if (
                cur[0] == fc
                and first - cur[2] - 1 <= prof.max_gap
                and max(last, cur[2]) - cur[1] + 1 <= prof.max_registers
            ):
                cur[2] = max(cur[2], last)
                continue
        merged.append([fc, first, last])
    blocks = tuple(Block(fc, first, last - first + 1) for fc, first, last in merged)

    def locate(fc: int, address: int) -> tuple[int, int]:
        for i, b in enumerate(blocks):
            if b.function == fc and b.address <= address < b.address + b.count:
                return i, address - b.address
        raise AssertionError(f"register {address} of FC{fc} not planned")

    items: list[_QItem] = []
    for q in resolved.quantities:
        bi, off = locate(q.function, q.address)
        fmt = struct.Struct(">" + _FORMATS[q.type])
        plain = q.word_order == "big" and q.byte_order == "big"
        exponent = None
        if q.exponent is not None:
            ebi, eoff = locate(q.function, q.exponent.address)
            exponent = (ebi, eoff, q.exponent.offset)
        items.append(
            _QItem(
                q.name,
                bi,
                off,
                q.count,
                fmt if plain else None,
                fmt,
                (q.byte_order == "little", q.word_order == "little"),
                q.scale,
                _divisor(q.scale),
                exponent,
                q.sentinel,
                struct.Struct(">" + _UNSIGNED[q.count]),
            )
        )
    flags = []
    for f in resolved.flags:
        bi, off = locate(f.function, f.address)
        flags.append(_FItem(f.name, bi, off, f.bit))
    return ReadPlan(resolved, blocks, tuple(items), tuple(flags))


def _divisor(scale: float) -> int:
    if 0 < scale < 1:
        inverse = 1 / scale
        if abs(inverse - round(inverse)) < 1e-9 * inverse:
            return round(inverse)
    return 0


def encode_value(q: Quantity, value: float, exponent: int = 0) -> list[int]:
    """Registers that make a meter report ``value`` (standard units) for ``q``.

    ``exponent`` is the value of the quantity's decimal-point register, if it has one.
    Raises ``ValueError`` when the value does not fit the register type.
    """
    raw_f = value / q.scale
    if q.exponent is not None:
        raw_f /= 10.0 ** (exponent + q.exponent.offset)
    fmt = ">" + _FORMATS[q.type]
    if q.type.startswith("f"):
        data = struct.pack(fmt, raw_f)
    else:
        raw = round(raw_f)
        try:
            data = struct.pack(fmt, raw)
        except struct.error:
            raise ValueError(f"{value} does not fit {q.name} ({q.type})") from None
    regs = list(struct.unpack(f">{TYPES[q.type]}H", data))
    # inverse of decoding: reverse words first, then swap bytes
    if q.word_order == "little":
        regs.reverse()
    if q.byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs


def choose_exponent(q: Quantity, value: float) -> int:
    """The smallest decimal-point register value for which ``value`` fits ``q``'s type
    (most precise representation), as a meter with auto-ranging would choose."""
    for exp in range(0, 10):
        try:
            encode_value(q, value, exp)
        except ValueError:
            continue
        return exp
    raise ValueError(f"{value} cannot be represented by {q.name}")
