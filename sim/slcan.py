"""A simulated LAWICEL (slcan) USB-CAN adapter on a serial line (one end of a socat pty pair).

It answers the host's configuration commands (``C``, ``S5``, ``O``/``L``, ``V`` …) with the
LAWICEL acknowledgement, records every command it received (so a test can prove the host never
asked to transmit), and writes received-frame lines (``T<id:8><dlc><data>\\r``) for the frames
it is given, in real time or faster.

Like real hardware it forwards frames only while a host has the channel open: after the host
closed it (``C``) or went away (:meth:`SlcanAdapter.host_gone`: the host process died, so the
kernel drops what the adapter sends), frames are dropped (counted in ``dropped``) until the
next host opens the channel again (``O``/``L``). A restarted gateway therefore starts with an
empty bus, as with a reopened USB-CAN adapter or SocketCAN interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import serial

from drivers.gbt27930.frames import Frame

_TRANSMIT_COMMANDS = ("t", "T", "r", "R", "d", "D", "b", "B")


def lawicel_line(f: Frame) -> bytes:
    """The slcan line an adapter sends when it receives ``f`` from the bus."""
    if f.is_extended:
        head = f"T{f.can_id & 0x1FFFFFFF:08X}{len(f.data)}"
    else:
        head = f"t{f.can_id & 0x7FF:03X}{len(f.data)}"
    return (head + f.data.hex().upper() + "\r").encode("ascii")


class SlcanAdapter:
    """Open with the pty path; ``close()`` when done (also a context manager)."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, baudrate=115200, timeout=0.05)
        self.commands: list[str] = []
        self.opened_listen_only = False
        self.opened_normal = False
        self.channel_open = True
        """Frames are forwarded (a fresh adapter forwards until a host closes the channel)."""
        self.dropped = 0
        """Frames dropped because no host had the channel open."""
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="slcan-sim", daemon=True)
        self._thread.start()

    @property
    def transmit_requests(self) -> list[str]:
        """Commands that would have put a frame on the bus (must stay empty for a listener)."""
        return [c for c in self.commands if c[:1] in _TRANSMIT_COMMANDS]

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self.port.read(64)
            except (serial.SerialException, OSError, TypeError):
                return
            if not chunk:
                continue
            buf += chunk
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                cmd = line.decode("ascii", "replace")
                self.commands.append(cmd)
                if cmd == "L":
                    self.opened_listen_only = self.channel_open = True
                elif cmd == "O":
                    self.opened_normal = self.channel_open = True
                elif cmd == "C":
                    self.channel_open = False
                reply = b"V1013\r" if cmd == "V" else b"\r"
                if cmd[:1] in _TRANSMIT_COMMANDS:
                    reply = b"\x07"  # refuse: this adapter is a receive-only simulation
                self._write(reply)

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            self.port.write(data)
            self.port.flush()

    def host_gone(self) -> None:
        """The host went away without closing the channel (killed): drop frames until a host
        opens it again."""
        self.channel_open = False

    def send(self, frame: Frame) -> None:
        if not self.channel_open:
            self.dropped += 1
            return
        self._write(lawicel_line(frame))

    def play(self, frames: Iterable[Frame], *, speed: float = 1.0) -> int:
        """Write frames keeping their spacing divided by ``speed`` (``<= 0``: no waiting)."""
        start = time.monotonic()
        t0: float | None = None
        n = 0
        for f in frames:
            if t0 is None:
                t0 = f.ts
            if speed > 0:
                delay = (f.ts - t0) / speed - (time.monotonic() - start)
                if delay > 0:
                    time.sleep(delay)
            self.send(f)
            n += 1
        return n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.port.close()

    def __enter__(self) -> SlcanAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
