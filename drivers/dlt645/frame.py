"""DL/T 645-2007 frames, sans-I/O: bytes in, :class:`Frame` values or :class:`FrameError`s out.

A frame is ``[FE…] 68 A0…A5 68 C L DATA CS 16``: the 6-byte BCD address least significant
byte first, every data byte sent plus 0x33, the checksum the sum of every byte from the first
``68`` through the last data byte as sent. :class:`Receiver` takes whatever the line
delivered (wake-up ``FE``s, noise, an echo of the request, several frames at once) and hands
out one event at a time; it never raises on bad input and never reads a port or a clock.
Spec: ``../shared/spec/meters.md`` §9.1–9.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

START: Final = 0x68
END: Final = 0x16
WAKE: Final = 0xFE
OFFSET: Final = 0x33
PREAMBLE: Final = bytes([WAKE] * 4)
MAX_DATA: Final = 200
"""Longest data field the standard allows; a longer length byte is noise, not a frame."""
WILDCARD: Final = "AAAAAAAAAAAA"
"""Any single meter on the line (read address, a lone meter)."""
BROADCAST: Final = "999999999999"

REPLY_BIT: Final = 0x80
ABNORMAL_BIT: Final = 0x40
FOLLOWS_BIT: Final = 0x20


class Control(IntEnum):
    """Function codes (the low 5 bits of C); a reply sets bit 7, an error reply bit 6."""

    BROADCAST_TIME = 0x08
    READ = 0x11
    READ_FOLLOWUP = 0x12
    READ_ADDRESS = 0x13
    WRITE = 0x14


ERROR_BITS: Final = (
    "other error",
    "no requested data",
    "password wrong or not authorised",
    "baud rate cannot be changed",
    "too many year time zones",
    "too many day periods",
    "too many tariffs",
    "reserved bit 7",
)
"""The error status byte of an abnormal reply (``D1``), bit 0 first."""


def error_text(status: int) -> str:
    """The names of the bits set in an abnormal reply's error byte."""
    names = [name for bit, name in enumerate(ERROR_BITS) if status >> bit & 1]
    return f"error {status:02X} ({', '.join(names) or 'no bit set'})"


class AddressError(ValueError):
    """An address that is not 12 BCD digits (or the wildcard ``A``s)."""


def check_address(address: str) -> str:
    """``address`` when it is 12 digits, or all ``A`` (wildcard); else :class:`AddressError`."""
    if len(address) != 12:
        raise AddressError(f"a DL/T 645 address has 12 digits, {address!r} has {len(address)}")
    if address.upper() != WILDCARD and not address.isdigit():
        raise AddressError(f"a DL/T 645 address is 12 decimal digits (BCD), not {address!r}")
    return address.upper()


def encode_address(address: str) -> bytes:
    """The 6 address bytes on the wire, least significant (last two digits) first."""
    digits = check_address(address)
    return bytes.fromhex(digits)[::-1]


def decode_address(raw: bytes) -> str | None:
    """The 12-digit address of 6 wire bytes; ``None`` when a nibble is not BCD (or ``AA``)."""
    text = raw[::-1].hex().upper()
    if text == WILDCARD or text.isdigit():
        return text
    return None


def add_offset(data: bytes) -> bytes:
    return bytes((b + OFFSET) & 0xFF for b in data)


def remove_offset(data: bytes) -> bytes:
    return bytes((b - OFFSET) & 0xFF for b in data)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame; ``data`` is the data field with the +0x33 offset already removed."""

    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ABNORMAL_BIT)

    @property
    def follows(self) -> bool:
        """More data follows (fetch it with :attr:`Control.READ_FOLLOWUP`)."""
        return bool(self.control & FOLLOWS_BIT)

    @property
    def function(self) -> int:
        return self.control & 0x1F


def encode_frame(frame: Frame, *, preamble: bool = True) -> bytes:
    """The bytes to send; raises :class:`AddressError` or ``ValueError`` (data too long)."""
    if len(frame.data) > MAX_DATA:
        raise ValueError(f"a DL/T 645 data field holds at most {MAX_DATA} bytes")
    body = (
        bytes([START])
        + encode_address(frame.address)
        + bytes([START, frame.control & 0xFF, len(frame.data)])
        + add_offset(frame.data)
    )
    return (PREAMBLE if preamble else b"") + body + bytes([sum(body) & 0xFF, END])


def di_bytes(di: int) -> bytes:
    """A 4-byte data identifier DI3 DI2 DI1 DI0 as sent: DI0 first."""
    return di.to_bytes(4, "little")


def read_request(address: str, di: int) -> Frame:
    return Frame(address, Control.READ, di_bytes(di))


def followup_request(address: str, di: int, seq: int) -> Frame:
    return Frame(address, Control.READ_FOLLOWUP, di_bytes(di) + bytes([seq & 0xFF]))


def read_address_request() -> Frame:
    return Frame(WILDCARD, Control.READ_ADDRESS)


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that were not a valid frame: ``kind`` is ``noise`` (bytes outside any frame),
    ``checksum``, ``framing`` (no end byte where the length says), or ``address`` (a
    nibble above 9); ``raw`` holds the bytes set aside."""

    kind: str
    detail: str
    raw: bytes


Event = Frame | FrameError


class Receiver:
    """Reassembles frames from a byte stream; ``next_event()`` is ``None`` until more bytes
    are needed. Leading ``FE``s are wake-up bytes, not noise."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes held that are not yet a whole frame."""
        return len(self._buf)

    def clear(self) -> None:
        self._buf.clear()

    def next_event(self) -> Event | None:
        buf = self._buf
        skip = 0
        while skip < len(buf) and buf[skip] != START:
            skip += 1
        noise = bytes(b for b in buf[:skip] if b != WAKE)
        if noise:
            del buf[:skip]
            return FrameError("noise", f"{len(noise)} byte(s) outside a frame", noise)
        del buf[:skip]
        if len(buf) < 10:
            return None
        length = buf[9]
        if buf[7] != START or length > MAX_DATA:
            bad = bytes(buf[:1])
            del buf[:1]
            return FrameError("framing", "no second 68 or an impossible length", bad)
        total = 12 + length
        if len(buf) < total:
            return None
        raw = bytes(buf[:total])
        if raw[-1] != END:
            del buf[:1]
            return FrameError("framing", f"no end byte 16 after {length} data bytes", raw[:1])
        del buf[:total]
        if sum(raw[:-2]) & 0xFF != raw[-2]:
            return FrameError(
                "checksum", f"checksum {raw[-2]:02X}, computed {sum(raw[:-2]) & 0xFF:02X}", raw
            )
        address = decode_address(raw[1:7])
        if address is None:
            return FrameError("address", f"address {raw[1:7][::-1].hex()} is not BCD", raw)
        return Frame(address, raw[8], remove_offset(raw[10 : 10 + length]))
