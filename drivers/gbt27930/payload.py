"""Reading one field out of a GB/T 27930 payload (spec §3), for the decoders in
:mod:`drivers.gbt27930.decode`.

Every reader takes the payload ``d``, its length ``n`` and the byte offset ``i``; it returns
``None`` when the field's bytes are not all present or when the raw value is all ones ("not
available"). Physical values are raw × resolution + offset, as exact decimal division.
"""

from __future__ import annotations

from drivers.gbt27930.enums import STATUS2, Status2


def u16(d: bytes, n: int, i: int) -> int | None:
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v


def u8(d: bytes, n: int, i: int) -> int | None:
    if i >= n:
        return None
    v = d[i]
    return None if v == 0xFF else v


def voltage_v(d: bytes, n: int, i: int) -> float | None:
    """16-bit total voltage, 0.1 V/bit."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v / 10


def current_a(d: bytes, n: int, i: int) -> float | None:
    """16-bit current, 0.1 A/bit, offset −400 A (negative = charging)."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else (v - 4000) / 10


def cell_voltage_v(d: bytes, n: int, i: int) -> float | None:
    """16-bit cell voltage, 0.01 V/bit."""
    if i + 2 > n:
        return None
    v = d[i] | (d[i + 1] << 8)
    return None if v == 0xFFFF else v / 100


def temp_c(d: bytes, n: int, i: int) -> int | None:
    """8-bit temperature, 1 °C/bit, offset −50 °C."""
    if i >= n:
        return None
    v = d[i]
    return None if v == 0xFF else v - 50


def u24(d: bytes, n: int, i: int) -> int | None:
    if i + 3 > n:
        return None
    v = int.from_bytes(d[i : i + 3], "little")
    return None if v == 0xFFFFFF else v


def u32(d: bytes, n: int, i: int) -> int | None:
    if i + 4 > n:
        return None
    v = int.from_bytes(d[i : i + 4], "little")
    return None if v == 0xFFFFFFFF else v


def opt_bytes(d: bytes, n: int, i: int, size: int) -> bytes | None:
    """Optional byte field: ``None`` when absent or all 0xFF."""
    if i + size > n:
        return None
    b = d[i : i + size]
    return None if b.count(0xFF) == size else b


def printable(b: bytes | None) -> str | None:
    """ASCII text only if every byte is printable, else ``None``."""
    if b is None or not all(0x20 <= c < 0x7F for c in b):
        return None
    return b.decode("ascii")


def ascii_replacing(b: bytes | None) -> str | None:
    if b is None:
        return None
    return "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in b)


def short_flag(n: int, length: int) -> tuple[str, ...]:
    return ("short_frame",) if n < length else ()


def bcd(b: int) -> int | None:
    hi, lo = b >> 4, b & 0x0F
    return None if hi > 9 or lo > 9 else hi * 10 + lo


def cell_word_v(w: int) -> float | None:
    v = w & 0x0FFF
    return None if v == 0x0FFF else v / 100


def status_codes(d: bytes, n: int, layout: tuple[tuple[int, int], ...]) -> list[Status2 | None]:
    return [STATUS2[(d[i] >> s) & 3] if i < n else None for i, s in layout]
