"""One Modbus line (RS-485 serial, TCP, or RTU over TCP) around a pymodbus async client;
the rules it shares with the other links of an RS-485 line are in :mod:`drivers.modbus.line`.

:class:`ModbusLine` serialises every request through one lock and keeps the configured
silent interval between frames (the bus is half-duplex), opens the port on demand and
reopens it after it vanished (USB adapter unplugged and back). Failures come back as
:class:`ReadError` values a technician can act on, never as tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from drivers.modbus.line import LineDiscipline, ReadError, exception_text, gap_s, port_problem


@dataclass(frozen=True, slots=True)
class SerialLineSpec:
    """An RS-485 line on a serial device. ``frame_gap_s`` ``None`` = 3.5 character times."""

    port: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 0.5
    frame_gap_s: float | None = None

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def gap_s(self) -> float:
        if self.frame_gap_s is not None:
            return self.frame_gap_s
        return gap_s(self.baud, self.bits_per_char)

    def describe(self) -> str:
        return f"{self.port} {self.baud} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class TcpLineSpec:
    """Modbus TCP, or RTU frames over TCP (``rtu_framing``: a transparent serial gateway)."""

    host: str
    port: int = 502
    timeout_s: float = 1.0
    rtu_framing: bool = False
    frame_gap_s: float = 0.0

    @property
    def gap_s(self) -> float:
        return self.frame_gap_s

    def describe(self) -> str:
        return f"{'rtu-over-tcp' if self.rtu_framing else 'tcp'} {self.host}:{self.port}"


LineSpec = SerialLineSpec | TcpLineSpec


def quiet_library_logging(level: int = logging.CRITICAL) -> None:
    """pymodbus logs every timeout with a frame dump; the driver reports failures itself."""
    logging.getLogger("pymodbus").setLevel(level)


class ModbusLine:
    """A Modbus line: one client, the line's lock and inter-frame gap (shared with the other
    links of the line through ``discipline``), open/reopen on demand."""

    def __init__(
        self,
        spec: LineSpec,
        timeout_s: float | None = None,
        discipline: LineDiscipline | None = None,
    ) -> None:
        self.spec = spec
        self.timeout_s = timeout_s if timeout_s is not None else spec.timeout_s
        self.discipline = discipline or LineDiscipline(spec.gap_s)
        self._rx = False
        self.client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self.opened_count = 0

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx = True
        return data

    def _make_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        s = self.spec
        if isinstance(s, SerialLineSpec):
            return AsyncModbusSerialClient(
                s.port,
                framer=FramerType.RTU,
                baudrate=s.baud,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace,
            )
        return AsyncModbusTcpClient(
            s.host,
            port=s.port,
            framer=FramerType.RTU if s.rtu_framing else FramerType.SOCKET,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace,
        )

    def _port_problem(self) -> ReadError | None:
        s = self.spec
        return port_problem(s.port) if isinstance(s, SerialLineSpec) else None

    async def open(self) -> ReadError | None:
        """Open (or reopen) the port; ``None`` when connected."""
        if self.client is not None and self.client.connected:
            return None
        if self.client is not None:
            self.client.close()
            self.client = None
        problem = self._port_problem()
        if problem is not None:
            return problem
        client = self._make_client()
        client.set_max_no_responses(1 << 30)  # a silent meter must not close a shared line
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:  # pragma: no cover - pymodbus returns False
            ok = False
            detail = f" ({exc})"
        else:
            detail = ""
        if not ok:
            client.close()
            problem = self._port_problem()
            if problem is not None:
                return problem
            where = self.spec.describe()
            hint = (
                "is another program using the port?"
                if isinstance(self.spec, SerialLineSpec)
                else "check the address, that the meter/gateway is powered and reachable"
            )
            return ReadError("connect_failed", f"cannot open {where}{detail}: {hint}")
        self.client = client
        self.opened_count += 1
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.discipline.released(self)

    def release_port(self) -> None:
        self.close()

    async def read(
        self, unit: int, function: int, address: int, count: int, timeout_s: float | None = None
    ) -> list[int] | ReadError:
        """Read ``count`` registers with FC03/FC04; the registers or a :class:`ReadError`."""
        reply = await self._request(unit, function, address, count, timeout_s)
        return reply if isinstance(reply, ReadError) else list(reply.registers)

    async def read_bits(
        self, unit: int, function: int, address: int, count: int, timeout_s: float | None = None
    ) -> list[bool] | ReadError:
        """Read ``count`` coils (FC01) or discrete inputs (FC02); the bits or a
        :class:`ReadError`."""
        reply = await self._request(unit, function, address, count, timeout_s)
        return reply if isinstance(reply, ReadError) else list(reply.bits[:count])

    async def _request(
        self, unit: int, function: int, address: int, count: int, timeout_s: float | None
    ) -> Any:
        async with self.discipline.lock:
            await self.discipline.before_frame(self)
            problem = await self.open()
            if problem is not None:
                return problem
            client = self.client
            assert client is not None
            self._rx = False
            call = {
                1: client.read_coils,
                2: client.read_discrete_inputs,
                3: client.read_holding_registers,
                4: client.read_input_registers,
            }[function]
            try:
                if timeout_s is not None and timeout_s < self.timeout_s:
                    async with asyncio.timeout(timeout_s):
                        reply = await call(address, count=count, device_id=unit)
                else:
                    reply = await call(address, count=count, device_id=unit)
            except (ModbusException, TimeoutError) as exc:
                return self._failure(unit, exc)
            finally:
                self.discipline.after_frame()
            if reply.isError():
                code = int(getattr(reply, "exception_code", 0))
                return ReadError("exception", f"unit {unit}: {exception_text(code)}", code)
            return reply

    def _failure(self, unit: int, exc: Exception) -> ReadError:
        if self.client is not None and not self.client.connected:
            problem = self._port_problem()
            if problem is not None:
                return problem
            return ReadError("connect_failed", f"{self.spec.describe()}: connection lost ({exc})")
        if self._rx:
            return ReadError(
                "garbled",
                f"unit {unit}: reply unreadable (CRC error or noise): check baud rate, parity, "
                "termination and that only one master drives the line",
            )
        return ReadError(
            "timeout",
            f"unit {unit}: no answer within {self.timeout_s:g} s: check wiring (A/B swapped?), "
            "baud rate and parity, and the meter's unit id",
        )
