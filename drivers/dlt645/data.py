"""DL/T 645 data values, sans-I/O: BCD numbers, dates and times, text, by format.

A value's bytes come least significant first (after the data identifier, with the +0x33
offset removed); the decoders reverse them and read packed BCD. A format is written the way
the standard's tables write it: ``XXXXXX.XX`` (8 digits, 2 decimals, 4 bytes), ``XXX.X``,
``XX.XXXX``; ``YYMMDDhhmmss``, ``YYMMDDWW``, ``hhmmss`` for the clock and event records;
``NNNNNNNNNNNN`` for digits kept as text (address, meter number); ``ascii`` for text.
Spec: ``../shared/spec/meters.md`` §9.3–9.4.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Final

TIME_FORMATS: Final = ("YYMMDDhhmmss", "YYMMDDWW", "hhmmss", "YYMMDDhhmm")
TEXT_FORMATS: Final = ("ascii",)


class DataError(ValueError):
    """A value that cannot be read: a nibble above 9, too few bytes, an impossible date."""


@dataclass(frozen=True, slots=True)
class Format:
    """How to read one value: ``kind`` is ``number``, ``digits`` (BCD kept as text),
    ``time`` (``pattern`` is one of :data:`TIME_FORMATS`) or ``ascii``."""

    pattern: str
    kind: str
    size: int
    """Bytes on the wire (``0`` for ascii: whatever the reply holds)."""
    decimals: int = 0


def parse_format(pattern: str) -> Format:
    """A :class:`Format` from its written form; ``ValueError`` names what is wrong."""
    if pattern in TIME_FORMATS:
        return Format(pattern, "time", len(pattern) // 2)
    if pattern in TEXT_FORMATS:
        return Format(pattern, "ascii", 0)
    if pattern and set(pattern) == {"N"} and len(pattern) % 2 == 0:
        return Format(pattern, "digits", len(pattern) // 2)
    whole, dot, frac = pattern.partition(".")
    digits = len(whole) + len(frac)
    if set(whole + frac) != {"X"} or (dot and not frac) or digits % 2 or digits > 16:
        raise ValueError(
            f"a format like XXXXXX.XX (an even number of X up to 16, one optional point), "
            f"YYMMDDhhmmss, YYMMDDWW, hhmmss, NNNN… or ascii, not {pattern!r}"
        )
    return Format(pattern, "number", digits // 2, len(frac))


def bcd_text(value: bytes) -> str:
    """The digits of packed BCD bytes given most significant first; :class:`DataError` when a
    nibble is above 9."""
    text = value.hex()
    if not text.isdigit():
        raise DataError(f"{value.hex().upper()} is not BCD (a digit above 9)")
    return text


def decode_number(raw: bytes, fmt: Format, *, signed: bool = False) -> float:
    """A BCD number; with ``signed`` the top bit of the most significant byte is the sign."""
    if len(raw) < fmt.size:
        raise DataError(f"{len(raw)} byte(s) where {fmt.pattern} needs {fmt.size}")
    msb_first = bytearray(raw[: fmt.size][::-1])
    negative = False
    if signed and msb_first[0] & 0x80:
        negative = True
        msb_first[0] &= 0x7F
    value = int(bcd_text(bytes(msb_first))) / 10**fmt.decimals
    return -value if negative else value


def encode_number(value: float, fmt: Format, *, signed: bool = False) -> bytes:
    """The wire bytes (least significant first, before the offset) of a number; values that
    do not fit are clamped to the largest the format holds."""
    scaled = round(abs(value) * 10**fmt.decimals)
    digits = fmt.size * 2
    top = 10 ** (digits - 1) * 8 - 1 if signed else 10**digits - 1
    scaled = min(scaled, top)
    raw = bytearray(bytes.fromhex(f"{scaled:0{digits}d}"))
    if signed and value < 0 and scaled:
        raw[0] |= 0x80
    return bytes(raw[::-1])


def decode_time(raw: bytes, fmt: Format) -> datetime.datetime | datetime.time:
    """A BCD date and/or time (the meter's local time, naive); ``YYMMDDWW`` gives a datetime
    at midnight, ``hhmmss`` a time."""
    if len(raw) < fmt.size:
        raise DataError(f"{len(raw)} byte(s) where {fmt.pattern} needs {fmt.size}")
    text = bcd_text(raw[: fmt.size][::-1])
    try:
        if fmt.pattern == "hhmmss":
            return datetime.time(int(text[0:2]), int(text[2:4]), int(text[4:6]))
        year, month, day = 2000 + int(text[0:2]), int(text[2:4]), int(text[4:6])
        if fmt.pattern == "YYMMDDWW":
            return datetime.datetime(year, month, day)
        second = int(text[10:12]) if fmt.pattern == "YYMMDDhhmmss" else 0
        return datetime.datetime(year, month, day, int(text[6:8]), int(text[8:10]), second)
    except ValueError as exc:
        raise DataError(f"{text} is not a date/time as {fmt.pattern}: {exc}") from None


def encode_time(moment: datetime.datetime, fmt: Format) -> bytes:
    """The wire bytes of a date/time in ``fmt`` (least significant first)."""
    if fmt.pattern == "hhmmss":
        text = moment.strftime("%H%M%S")
    elif fmt.pattern == "YYMMDDWW":
        text = moment.strftime("%y%m%d") + f"{moment.isoweekday() % 7:02d}"
    elif fmt.pattern == "YYMMDDhhmm":
        text = moment.strftime("%y%m%d%H%M")
    else:
        text = moment.strftime("%y%m%d%H%M%S")
    return bytes.fromhex(text)[::-1]


def decode_text(raw: bytes, fmt: Format) -> str:
    """Digits kept as text (``NNNN…``) or ASCII text, most significant first."""
    if fmt.kind == "digits":
        if len(raw) < fmt.size:
            raise DataError(f"{len(raw)} byte(s) where {fmt.pattern} needs {fmt.size}")
        return bcd_text(raw[: fmt.size][::-1])
    text = raw[::-1].rstrip(b"\x00 ").lstrip(b"\x00 ")
    if any(b < 0x20 or b > 0x7E for b in text):
        raise DataError(f"{raw.hex().upper()} is not printable ASCII")
    return text.decode("ascii")


def encode_text(text: str, fmt: Format) -> bytes:
    if fmt.kind == "digits":
        return bytes.fromhex(text.rjust(fmt.size * 2, "0")[-fmt.size * 2 :])[::-1]
    return text.encode("ascii")[::-1]
