"""A simulated DL/T 645-2007 meter (or several on one line) for tests, benchmarks and the demo.

``SimDltMeter(profile, address)`` answers the identifiers of a DL/T 645 profile from the
same physics as the Modbus simulator (:class:`sim.meter.MeterPhysics`), plus what the
electronic seal needs: settable event counters with the time of the latest event
(:meth:`SimDltMeter.open_cover`), a clock offset, an identity. Fault switches: ``silent``,
``bad_checksum``, ``wrong_address`` (answers as another meter), ``error_status`` (an error
reply ``D1`` with that byte), ``echo`` (the line echoes the request first), ``noise``
(bytes before the reply), ``reply_delay_s`` and ``followup_bytes`` (values longer than this
come in "more follows" pieces, each fetched with a follow-up read).

``Dlt645SimServer([meters…]).start_serial(port, baud=…)`` serves them on a serial device
(one end of a socat pty pair); ``start_pty()`` on a pseudo-terminal of its own (the demo).
With ``paced=True`` every reply waits for the wire time of the request and the reply at the
line's baud rate, as a real line would.

    python -m sim.dlt645_meter --meter dlt645-2007:123456789012 --serial /dev/pts/7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import time
import tty
from collections.abc import Callable, Iterable

import serial

from drivers.dlt645.data import (
    encode_number,
    encode_text,
    encode_time,
    parse_format,
)
from drivers.dlt645.frame import (
    WILDCARD,
    Control,
    Frame,
    FrameError,
    Receiver,
    di_bytes,
    encode_frame,
)
from drivers.dlt645.profile import COUNT_FORMAT, RECORD_TIME, DltProfile, load_dlt645_profiles
from sim.meter import MeterPhysics

CHINA_UTC_OFFSET = datetime.timedelta(hours=8)
TURNAROUND_CHARS = 3.5
"""A paced meter answers no sooner than this many character times after the request."""


class SimDltMeter(MeterPhysics):
    def __init__(
        self,
        profile: DltProfile,
        address: str,
        *,
        clock: Callable[[], float] | None = None,
        power_w: float = 0.0,
        voltage_v: float = 230.0,
        energy_import_kwh: float = 0.0,
        serial_number: str = "000000000001",
        firmware: str = "SIM-645 1.0",
    ) -> None:
        super().__init__(
            profile.kind,
            clock=clock,
            power_w=power_w,
            voltage_v=voltage_v,
            energy_import_kwh=energy_import_kwh,
        )
        self.profile = profile
        self.address = address
        self.identity = {"address": address, "serial": serial_number, "firmware": firmware}
        self.counts = {c.name: 0 for c in profile.counters}
        self.last_event: dict[str, datetime.datetime | None] = {
            c.name: None for c in profile.counters
        }
        self.clock_offset_s = 0.0
        self.wall: Callable[[], float] = clock or (
            lambda: datetime.datetime.now(datetime.UTC).timestamp()
        )
        # faults
        self.silent = False
        self.bad_checksum = False
        self.wrong_address = False
        self.error_status: int | None = None
        self.echo = False
        self.noise = b""
        self.reply_delay_s = 0.0
        self.followup_bytes: int | None = None
        self.requests = 0

    # ------------------------------------------------------------------ seal
    def local_now(self) -> datetime.datetime:
        """The meter's clock: Beijing time, naive, off by ``clock_offset_s``."""
        utc = datetime.datetime.fromtimestamp(self.wall() + self.clock_offset_s, datetime.UTC)
        return (utc + CHINA_UTC_OFFSET).replace(tzinfo=None, microsecond=0)

    def record_event(self, counter: str) -> None:
        """One more event of ``counter`` (e.g. ``meter_cover_open``), at the meter's time."""
        self.counts[counter] += 1
        self.last_event[counter] = self.local_now()

    def open_cover(self) -> None:
        self.record_event("meter_cover_open")

    # ------------------------------------------------------------------ data
    def value_bytes(self, di: int) -> bytes | None:
        """The value of one identifier as sent (before the offset), ``None`` if unknown."""
        self._integrate()
        for q in self.profile.quantities:
            if q.di == di:
                return encode_number(self.value(q.name) / q.scale, q.format, signed=q.signed)
        for r in self.profile.identity:
            if r.di == di:
                return encode_text(self.identity[r.name], r.format)
        clock = self.profile.clock
        if clock is not None and di in (clock.date_di, clock.time_di):
            pattern = "YYMMDDWW" if di == clock.date_di else "hhmmss"
            return encode_time(self.local_now(), parse_format(pattern))
        for c in self.profile.counters:
            if c.count_di == di:
                return encode_number(self.counts[c.name], COUNT_FORMAT)
            if c.last_di == di:
                moment = self.last_event[c.name]
                stamp = encode_time(moment, RECORD_TIME) if moment else bytes(6)
                return bytes(c.time_at) + stamp + bytes(6)
        return None

    def answer(self, request: Frame) -> list[Frame]:
        """The reply frames to one request addressed to this meter (none when silent)."""
        self.requests += 1
        if self.silent:
            return []
        me = "999999999999" if self.wrong_address else self.address
        if request.function == Control.READ_ADDRESS:
            return [Frame(me, 0x93, bytes.fromhex(self.address)[::-1])]
        if request.function not in (Control.READ, Control.READ_FOLLOWUP):
            return [Frame(me, 0xC0 | request.function, b"\x01")]
        di = int.from_bytes(request.data[:4], "little")
        value = self.value_bytes(di)
        if self.error_status is not None or value is None:
            status = self.error_status if self.error_status is not None else 0x02
            return [Frame(me, 0xD1, bytes([status]))]
        piece = self.followup_bytes
        if piece is None or len(value) <= piece:
            return [Frame(me, 0x91, di_bytes(di) + value)]
        seq = request.data[4] if request.function == Control.READ_FOLLOWUP else 0
        chunk = value[seq * piece : (seq + 1) * piece]
        more = (seq + 1) * piece < len(value)
        control = (0xB0 if more else 0x90) | request.function
        tail = bytes([seq]) if request.function == Control.READ_FOLLOWUP else b""
        return [Frame(me, control, di_bytes(di) + chunk + tail)]


class Dlt645SimServer:
    """Serves simulated meters on one serial device (the meter side of a pty pair)."""

    def __init__(self, meters: Iterable[SimDltMeter]) -> None:
        self.meters = {m.address: m for m in meters}
        self.baud = 2400
        self.bits_per_char = 11
        self.paced = False
        self._fd: int | None = None
        self._close: list[Callable[[], None]] = []
        self._rx = Receiver()
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()
        self.bad_frames = 0

    def meter(self, address: str) -> SimDltMeter:
        return self.meters[address]

    async def start_serial(
        self,
        port: str,
        baud: int = 2400,
        parity: str = "E",
        stopbits: int = 1,
        *,
        paced: bool = False,
    ) -> None:
        self.baud, self.paced = baud, paced
        self.bits_per_char = 1 + 8 + (0 if parity == "N" else 1) + stopbits
        line = serial.Serial(port, baudrate=baud, parity=parity, stopbits=stopbits, timeout=0)
        self._listen(line.fileno(), [line.close])

    async def start_pty(self) -> str:
        """Serve on a new pseudo-terminal (no socat needed); returns the device the gateway
        opens. The meter side keeps the other end open, so the gateway may close and reopen."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._listen(master, [lambda: os.close(master), lambda: os.close(slave)])
        return os.ttyname(slave)

    def _listen(self, fd: int, close: list[Callable[[], None]]) -> None:
        self._fd, self._close = fd, close
        asyncio.get_running_loop().add_reader(fd, self._readable)
        self._task = asyncio.create_task(self._serve())

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, OSError):
            return
        self._rx.feed(data)
        while (event := self._rx.next_event()) is not None:
            if isinstance(event, FrameError):
                self.bad_frames += 1
            elif not event.is_reply:
                self._queue.put_nowait(event)

    def _targets(self, request: Frame) -> list[SimDltMeter]:
        if request.address == WILDCARD:
            return list(self.meters.values())
        meter = self.meters.get(request.address)
        return [meter] if meter is not None else []

    async def _serve(self) -> None:
        while True:
            request = await self._queue.get()
            for meter in self._targets(request):
                await self._reply(meter, request)

    async def _reply(self, meter: SimDltMeter, request: Frame) -> None:
        assert self._fd is not None
        wire = b""
        if meter.echo:
            wire += encode_frame(request)
        wire += meter.noise
        for frame in meter.answer(request):
            raw = bytearray(encode_frame(frame))
            if meter.bad_checksum:
                raw[-2] ^= 0x5A
            wire += bytes(raw)
        if not wire:
            return
        delay = meter.reply_delay_s
        if self.paced:  # the request and reply bytes on the wire, and the turnaround gap
            chars = len(encode_frame(request)) + len(wire) + TURNAROUND_CHARS
            delay += chars * self.bits_per_char / self.baud
        if delay:
            await asyncio.sleep(delay)
        with contextlib.suppress(OSError):
            os.write(self._fd, wire)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            for close in self._close:
                close()
            self._fd = None


def _meter_arg(text: str) -> tuple[str, str]:
    name, sep, address = text.partition(":")
    if not sep or len(address) != 12 or not address.isdigit():
        raise argparse.ArgumentTypeError(f"expected PROFILE:ADDRESS (12 digits), found {text!r}")
    return name, address


async def _main(args: argparse.Namespace) -> None:
    profiles = load_dlt645_profiles()
    meters = []
    for name, address in args.meter:
        meters.append(SimDltMeter(profiles[name], address, clock=time.time, power_w=args.power_w))
    server = Dlt645SimServer(meters)
    await server.start_serial(args.serial, args.baud, args.parity, paced=args.paced)
    print(f"ready serial {args.serial}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated DL/T 645-2007 meters on a serial port")
    parser.add_argument("--meter", action="append", type=_meter_arg, required=True)
    parser.add_argument("--serial", required=True, metavar="DEV")
    parser.add_argument("--baud", type=int, default=2400)
    parser.add_argument("--parity", default="E", choices=("N", "E", "O"))
    parser.add_argument("--power-w", type=float, default=0.0)
    parser.add_argument("--paced", action="store_true", help="reply after the wire time")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
