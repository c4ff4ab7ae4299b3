"""What every link on one RS-485 line obeys, whatever the protocol (Modbus RTU, DL/T 645).

- one request at a time: the bus is half-duplex, so every link of a line shares one lock;
- a silent gap between frames (3.5 character times for Modbus; DL/T 645 uses the same);
- one holder of the port: when a Modbus link and a DL/T 645 link share a line, the one
  about to send asks the other to let go of the port first (each reopens on demand);
- failures as :class:`ReadError` values a technician can act on (port missing, permission,
  timeout, garbled), never as tracebacks.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Protocol

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes by number, as named in the Modbus application protocol."""


def exception_text(code: int) -> str:
    return f"exception {code:02X} ({EXCEPTION_NAMES.get(code, 'unknown exception code')})"


@dataclass(frozen=True, slots=True)
class ReadError:
    """Why a request got no usable reply.

    ``kind``: ``timeout`` (no answer), ``garbled`` (bytes came back but no valid frame: CRC
    or checksum error, noise, wrong baud or parity, a reply from another address),
    ``exception`` (the meter answered with an exception or error reply), ``port_missing``,
    ``permission``, ``connect_failed``. ``text`` overrides how an exception reply is named
    (DL/T 645 error bytes are not Modbus exception codes).
    """

    kind: str
    message: str
    exception_code: int | None = None
    text: str | None = None

    @property
    def answered(self) -> bool:
        """The device answered (an exception reply proves link settings and unit id)."""
        return self.kind == "exception"

    @property
    def short(self) -> str:
        """The exception name for exception replies, else the full message."""
        if self.text is not None:
            return self.text
        if self.exception_code is not None:
            return exception_text(self.exception_code)
        return self.message

    @property
    def line_down(self) -> bool:
        return self.kind in {"port_missing", "permission", "connect_failed"}


def port_problem(port: str) -> ReadError | None:
    """Why a serial device cannot be opened, checked before trying (``None``: try it)."""
    if "://" in port:
        return None
    if not os.path.exists(port):
        return ReadError(
            "port_missing",
            f"serial port {port} does not exist: check the USB/RS-485 adapter is "
            "plugged in and the device name (ls /dev/ttyUSB* /dev/ttyACM* /dev/serial/by-id)",
        )
    if not os.access(port, os.R_OK | os.W_OK):
        return ReadError(
            "permission",
            f"permission denied on {port}: add the user to the 'dialout' group "
            "(sudo usermod -aG dialout $USER, then log in again) or run as the evgw user",
        )
    return None


def gap_s(baud: int, bits_per_char: int) -> float:
    """3.5 character times, fixed at 1.75 ms above 19200 baud (Modbus over serial line)."""
    return 0.00175 if baud > 19200 else 3.5 * bits_per_char / baud


class PortHolder(Protocol):
    def release_port(self) -> None:
        """Close the port so another link of the same line can open it."""


class LineDiscipline:
    """Shared by every link on one line: the lock, the gap, the current port holder."""

    def __init__(self, gap_s: float) -> None:
        self.lock = asyncio.Lock()
        self.gap_s = gap_s
        self._idle_since = 0.0
        self._holder: PortHolder | None = None

    async def before_frame(self, holder: PortHolder) -> None:
        """Call with the lock held, just before sending: takes the port, waits out the gap."""
        if self._holder is not None and self._holder is not holder:
            self._holder.release_port()
        self._holder = holder
        if self.gap_s:
            wait = self.gap_s - (time.monotonic() - self._idle_since)
            if wait > 0:
                await asyncio.sleep(wait)

    def after_frame(self) -> None:
        """Call when the exchange ended (reply, error or timeout): the gap starts now."""
        self._idle_since = time.monotonic()

    def released(self, holder: PortHolder) -> None:
        if self._holder is holder:
            self._holder = None
