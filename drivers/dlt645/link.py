"""One DL/T 645 link on an RS-485 line: the frame codec over a serial port.

The line rules are the Modbus link's (:mod:`drivers.modbus.line`): one lock per line (shared
with any Modbus meter on the same port), the silent gap between frames, the port opened on
demand and reopened after it vanished. Replies are matched to the request: a frame without
the reply bit is the adapter echoing the request, a reply from another address or for another
identifier is set aside, noise and bad checksums are counted; only when no matching reply
came is the read a :class:`ReadError`. A reply marked "more follows" is completed with
follow-up reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections import Counter

import serial

from drivers.dlt645.frame import (
    WILDCARD,
    Control,
    Frame,
    FrameError,
    Receiver,
    encode_frame,
    error_text,
    followup_request,
    read_address_request,
    read_request,
)
from drivers.modbus.line import LineDiscipline, ReadError, port_problem
from drivers.modbus.link import SerialLineSpec

MAX_FOLLOWUPS = 15


class Dlt645Line:
    def __init__(
        self,
        spec: SerialLineSpec,
        timeout_s: float | None = None,
        discipline: LineDiscipline | None = None,
    ) -> None:
        self.spec = spec
        self.timeout_s = timeout_s if timeout_s is not None else spec.timeout_s
        self.discipline = discipline or LineDiscipline(spec.gap_s)
        self.counts: Counter[str] = Counter()
        """Frames set aside, by kind: noise, checksum, framing, address, echo, other_address,
        other_identifier."""
        self.opened_count = 0
        self._port: serial.Serial | None = None

    # ------------------------------------------------------------------ port

    def _open(self) -> ReadError | None:
        if self._port is not None:
            return None
        problem = port_problem(self.spec.port)
        if problem is not None:
            return problem
        s = self.spec
        try:
            self._port = serial.Serial(
                s.port,
                baudrate=s.baud,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=0,
            )
        except termios.error as exc:
            return ReadError(
                "connect_failed",
                f"{s.describe()}: the device refuses these serial settings ({exc}): check the "
                "adapter supports this baud rate and parity",
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            return port_problem(s.port) or ReadError(
                "connect_failed",
                f"cannot open {s.describe()} ({exc}): is another program using it?",
            )
        self.opened_count += 1
        return None

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):  # the device is gone
                self._port.close()
            self._port = None
        self.discipline.released(self)

    def release_port(self) -> None:
        self.close()

    def _lost(self, exc: Exception) -> ReadError:
        self.close()
        return port_problem(self.spec.port) or ReadError(
            "connect_failed", f"{self.spec.describe()}: connection lost ({exc})"
        )

    # ------------------------------------------------------------------ exchange

    async def _receive_some(self, fd: int, timeout_s: float) -> bytes | None:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        def ready() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError as exc:
                if not got.done():
                    got.set_exception(exc)
                return
            if not got.done():
                if data:
                    got.set_result(data)
                else:
                    got.set_exception(OSError("end of file on the serial device"))

        loop.add_reader(fd, ready)
        try:
            return await asyncio.wait_for(got, timeout_s)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(fd)

    async def _exchange(
        self, request: Frame, timeout_s: float, *, collect: bool = False
    ) -> list[Frame] | ReadError:
        """Send ``request`` and wait for matching replies (the first one, or with ``collect``
        every one until the timeout); the caller holds the line's lock."""
        await self.discipline.before_frame(self)
        problem = self._open()
        if problem is not None:
            return problem
        port = self._port
        assert port is not None
        try:
            port.reset_input_buffer()
            os.write(port.fileno(), encode_frame(request))
            return await self._replies(port.fileno(), request, timeout_s, collect)
        except (OSError, termios.error, serial.SerialException) as exc:
            return self._lost(exc)
        finally:
            self.discipline.after_frame()

    async def _replies(
        self, fd: int, request: Frame, timeout_s: float, collect: bool
    ) -> list[Frame] | ReadError:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        rx = Receiver()
        replies: list[Frame] = []
        set_aside: list[str] = []
        while True:
            event = rx.next_event()
            if event is None:
                remaining = deadline - loop.time()
                data = await self._receive_some(fd, remaining) if remaining > 0 else None
                if data is None:
                    break
                rx.feed(data)
                continue
            why = self._mismatch(event, request)
            if why is not None:
                self.counts[why[0]] += 1
                set_aside.append(why[1])
                continue
            assert isinstance(event, Frame)
            replies.append(event)
            if not collect:
                break
        if replies:
            return replies
        where = f"meter {request.address} on {self.spec.describe()}"
        if set_aside or rx.pending:
            detail = "; ".join(dict.fromkeys(set_aside)) or "a truncated frame"
            return ReadError(
                "garbled",
                f"{where}: reply unreadable ({detail}): check baud rate, parity (DL/T 645 is "
                "usually 8E1), termination, and that only one master drives the line",
            )
        return ReadError(
            "timeout",
            f"{where}: no answer within {timeout_s:g} s: check wiring (A/B swapped?), baud "
            "rate and parity, and the meter's address",
        )

    @staticmethod
    def _mismatch(event: Frame | FrameError, request: Frame) -> tuple[str, str] | None:
        if isinstance(event, FrameError):
            return event.kind, f"{event.kind}: {event.detail}"
        if not event.is_reply:
            return "echo", "an echo of the request"
        if event.function != request.function:
            return "other_identifier", f"a reply to control {event.function:02X}"
        if request.address != WILDCARD and event.address != request.address:
            return "other_address", f"a reply from address {event.address}"
        if (
            request.function == Control.READ
            and not event.is_error
            and event.data[:4] != request.data[:4]
        ):
            return "other_identifier", f"a reply for identifier {event.data[:4][::-1].hex()}"
        return None

    # ------------------------------------------------------------------ reads

    async def read(
        self, address: str, di: int, timeout_s: float | None = None
    ) -> bytes | ReadError:
        """The value bytes of one data identifier (offset removed, DI stripped, follow-ups
        joined), or why not. An error reply is a :class:`ReadError` of kind ``exception``."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        async with self.discipline.lock:
            result = await self._exchange(read_request(address, di), timeout)
            if isinstance(result, ReadError):
                return result
            reply = result[0]
            value = bytearray(reply.data[4:])
            seq = 0
            while reply.follows and not reply.is_error and seq < MAX_FOLLOWUPS:
                seq += 1
                more = await self._exchange(followup_request(address, di, seq), timeout)
                if isinstance(more, ReadError):
                    return more
                reply = more[0]
                value += reply.data[4:-1] if len(reply.data) > 5 else b""
        if reply.is_error:
            status = reply.data[0] if reply.data else 0
            text = error_text(status)
            return ReadError("exception", f"meter {address}: {text}", status, text)
        return bytes(value)

    async def read_addresses(self, timeout_s: float | None = None) -> list[str] | ReadError:
        """Every address that answered the wildcard read-address request (one, on a line
        with a lone meter; several, or a garbled reply, means a collision)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        async with self.discipline.lock:
            result = await self._exchange(read_address_request(), timeout, collect=True)
        if isinstance(result, ReadError):
            return result
        found = [f.data[:6][::-1].hex() for f in result if not f.is_error and len(f.data) >= 6]
        return list(dict.fromkeys(found)) or ReadError(
            "garbled", "the read-address reply carried no address"
        )
