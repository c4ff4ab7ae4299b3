"""Simulated energy meters: a pymodbus server that emulates any meter profile.

:class:`SimMeter` holds one meter's electrical state. The charging simulator (or a test)
drives it with :meth:`SimMeter.set_power`, :meth:`SimMeter.set_voltage`,
:meth:`SimMeter.set_current` and :meth:`SimMeter.set`; energy is integrated from power,
either explicitly with :meth:`SimMeter.advance` or from an injected ``clock``. The
profile's identity registers hold :attr:`SimMeter.identity` (set one with
:meth:`SimMeter.set_identity`: a CT ratio reprogrammed, another meter swapped in). Faults:
``no_answer``, ``exception_code``, ``garbage`` (a reply with a broken CRC), ``refused``
(registers answered with exception 02) and :meth:`SimMeter.reset_energy`.

:class:`MeterSimServer` puts several meters (one per unit id) on one line, served over TCP,
RTU-over-TCP or a serial port (e.g. one end of a socat pty pair). Run it standalone with
``python -m sim.meter --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.decode import choose_exponent, encode_value, plan_reads
from drivers.modbus.identity import identity_words
from drivers.modbus.profile import load_profiles
from drivers.modbus.profile_model import Profile

_SQRT3 = math.sqrt(3.0)


class MeterPhysics:
    """What a simulated meter measures, whatever its protocol: power, voltage and current,
    energies integrated over time (from ``clock`` or :meth:`advance`), forced values."""

    def __init__(
        self,
        kind: str,
        *,
        clock: Callable[[], float] | None = None,
        power_w: float = 0.0,
        voltage_v: float = 230.0,
        energy_import_kwh: float = 0.0,
    ) -> None:
        self.kind = kind
        self.clock = clock
        self._last = clock() if clock else 0.0
        self.power_w = power_w
        self.voltage_v = voltage_v
        self.current_a: float | None = None  # None: derived from power and voltage
        self.energy_import_kwh = energy_import_kwh
        self.energy_export_kwh = 0.0
        self.overrides: dict[str, float] = {}

    # ---------------------------------------------------------------- driving
    def _integrate(self) -> None:
        if self.clock is None:
            return
        now = self.clock()
        self.advance(now - self._last)

    def advance(self, dt_s: float) -> None:
        """Integrate energy over ``dt_s`` seconds at the present power."""
        if self.clock is not None:
            self._last += dt_s
        if dt_s <= 0:
            return
        kwh = abs(self.power_w) * dt_s / 3_600_000.0
        if self.power_w >= 0:
            self.energy_import_kwh += kwh
        else:
            self.energy_export_kwh += kwh

    def set_power(self, power_w: float) -> None:
        """Set active power (negative = export); energy so far is integrated first."""
        self._integrate()
        self.power_w = power_w

    def set_voltage(self, voltage_v: float) -> None:
        """Phase (or DC) voltage; line voltages follow as ×√3."""
        self._integrate()
        self.voltage_v = voltage_v

    def set_current(self, current_a: float | None) -> None:
        """Phase (or DC) current; ``None`` derives it from power and voltage."""
        self.current_a = current_a

    def set(self, name: str, value: float) -> None:
        """Force one quantity's value (e.g. NaN, an out-of-range value, x_… quantities)."""
        self.overrides[name] = value

    def clear(self, name: str) -> None:
        self.overrides.pop(name, None)

    def reset_energy(self, energy_kwh: float = 0.0) -> None:
        """The energy registers go back (meter reset or exchanged)."""
        self._integrate()
        self.energy_import_kwh = energy_kwh
        self.energy_export_kwh = 0.0

    def value(self, name: str) -> float:
        """The value this meter reports for a quantity, in standard units."""
        if name in self.overrides:
            return self.overrides[name]
        phases = 3 if self.kind == "ac3" else 1
        p = self.power_w
        if self.current_a is not None:
            i = self.current_a
        else:
            i = abs(p) / phases / self.voltage_v if self.voltage_v else 0.0
        if name == "energy_import_kwh":
            return self.energy_import_kwh
        if name == "energy_export_kwh":
            return self.energy_export_kwh
        if name == "energy_total_kwh":
            return self.energy_import_kwh + self.energy_export_kwh
        if name == "power_w":
            return p
        if name.startswith("power_l"):
            return p / phases
        if name == "apparent_power_va":
            return abs(p)
        if name.startswith("x_apparent_power_l"):
            return abs(p) / phases
        if name.startswith("power_factor"):
            return 1.0
        if name.startswith("voltage_l") and name.count("_l") == 2:
            return self.voltage_v * _SQRT3
        if name.startswith("voltage"):
            return self.voltage_v
        if name.startswith("current"):
            return i if self.kind != "dc" else math.copysign(i, p)
        if name == "frequency_hz":
            return 0.0 if self.kind == "dc" else 50.0
        if name == "temperature_c":
            return 25.0
        if name.endswith("_ratio"):
            return 1.0
        return 0.0


class SimMeter(MeterPhysics):
    """One simulated meter speaking the registers of ``profile``.

    ``function``/``options`` choose how the simulated firmware behaves (which function
    code it answers, which energy block exists…); by default the profile's defaults.
    ``functions`` lists the function codes it answers (others get exception 01).
    """

    def __init__(
        self,
        profile: Profile,
        unit_id: int,
        *,
        function: int | None = None,
        options: Mapping[str, str] | None = None,
        functions: Iterable[int] | None = None,
        clock: Callable[[], float] | None = None,
        power_w: float = 0.0,
        voltage_v: float = 230.0,
        energy_import_kwh: float = 0.0,
    ) -> None:
        super().__init__(
            profile.kind,
            clock=clock,
            power_w=power_w,
            voltage_v=voltage_v,
            energy_import_kwh=energy_import_kwh,
        )
        self.profile = profile
        self.unit_id = unit_id
        self.resolved = profile.resolve(function, options)
        self.plan = plan_reads(self.resolved)
        self.functions = frozenset(functions or {self.resolved.function})
        self.flags: dict[str, bool] = {}
        self.identity: dict[str, int] = {
            r.name: unit_id if r.name == "modbus_address" else 1 for r in self.resolved.identity
        }
        """The identity registers' values (the Modbus address setting: the unit id)."""
        self._shared = {
            q.name: (r.name, q.scale)
            for q in self.resolved.quantities
            for r in self.resolved.identity
            if (q.function, q.address) == (r.function, r.address)
        }
        """Quantities that read an identity register (a ratio also read at every poll)."""
        # fault injection
        self.no_answer = False
        self.exception_code: int | None = None
        self.garbage = False
        self.refused: set[int] = set()
        """Register addresses a read may not touch: exception 02 (illegal data address)."""
        self.requests = 0

    def set_flag(self, name: str, active: bool) -> None:
        self.flags[name] = active

    def set_identity(self, name: str, value: int) -> None:
        """Set an identity register (``ct_ratio`` …); ``ValueError`` for one the profile
        does not have or a value its type cannot hold."""
        regs = {r.name: r for r in self.resolved.identity}
        if name not in regs:
            known = ", ".join(regs) or "none"
            raise ValueError(f"profile {self.profile.name!r} has no identity {name!r} ({known})")
        identity_words(regs[name], value)
        self.identity[name] = value

    def value(self, name: str) -> float:
        shared = self._shared.get(name)
        if shared is not None and name not in self.overrides:
            return self.identity[shared[0]] * shared[1]
        return super().value(name)

    def identity_addresses(self) -> set[int]:
        """Every register of the profile's identity (to refuse them all, for instance)."""
        return {a for r in self.resolved.identity for a in range(r.address, r.address + r.count)}

    # ---------------------------------------------------------------- registers
    def image(self) -> dict[tuple[int, int], int]:
        """Every register of the simulated map: (function, address) -> value."""
        self._integrate()
        regs: dict[tuple[int, int], int] = {}
        for q in self.resolved.quantities:
            val = self.value(q.name)
            exp = 0
            try:
                if q.exponent is not None:
                    exp = choose_exponent(q, val)
                    regs[(q.function, q.exponent.address)] = exp
                words = encode_value(q, val, exp)
            except ValueError:  # NaN or out of range for an integer register
                words = [0xFFFF] * q.count
            for k, w in enumerate(words):
                regs[(q.function, q.address + k)] = w
        for f in self.resolved.flags:
            key = (f.function, f.address)
            mask = (1 << f.bit) if f.bit is not None else 1
            current = regs.get(key, 0)
            regs[key] = current | mask if self.flags.get(f.name) else current
        for r in self.resolved.identity:
            for k, w in enumerate(identity_words(r, self.identity[r.name])):
                regs[(r.function, r.address + k)] = w
        return regs

    def addresses(self) -> list[int]:
        """Every register address a read may touch (the planned blocks, the identity)."""
        out: set[int] = set()
        for b in self.plan.blocks:
            out.update(range(b.address, b.address + b.count))
        return sorted(out | self.identity_addresses())

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        if self.exception_code is not None:
            return ExcCodes(self.exception_code)
        if function_code not in self.functions:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.refused.intersection(range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        image = self.image()
        fc = self.resolved.function if function_code not in {3, 4} else function_code
        for addr in range(address, address + count):
            registers[addr - start_address] = image.get((fc, addr), 0)
        return None

    def sim_device(self) -> SimDevice:
        data = [
            SimData(address=a, count=1, values=0, datatype=DataType.REGISTERS)
            for a in self.addresses()
        ]
        return SimDevice(id=self.unit_id, simdata=data, action=self._action)


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class SimUnit(Protocol):
    """Anything a simulated line serves at one unit id: a meter, a digital-input module."""

    unit_id: int
    no_answer: bool
    garbage: bool

    def sim_device(self) -> SimDevice: ...


class MeterSimServer:
    """Meters on one line (one per unit id), served over TCP, RTU-over-TCP or serial.

    Units without a meter do not answer, as on a real RS-485 line.
    """

    def __init__(self, meters: Iterable[SimUnit]) -> None:
        self.meters: dict[int, SimUnit] = {}
        for m in meters:
            if m.unit_id in self.meters:
                raise ValueError(f"two simulated meters share unit id {m.unit_id}")
            self.meters[m.unit_id] = m
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._framer = FramerType.SOCKET
        self.port = 0

    def meter(self, unit_id: int) -> SimUnit:
        return self.meters[unit_id]

    def _devices(self) -> list[SimDevice]:
        # id 0 catches requests to absent units; _trace drops their replies
        absent = SimDevice(
            id=0,
            simdata=[SimData(address=0, count=1, values=0, datatype=DataType.REGISTERS)],
        )
        return [absent, *(m.sim_device() for m in self.meters.values())]

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit = data[6] if self._framer == FramerType.SOCKET else data[0]
        meter = self.meters.get(unit)
        if meter is None or meter.no_answer:
            return b""
        if meter.garbage:
            if self._framer == FramerType.SOCKET:
                return bytes(b ^ 0x5A for b in data)
            body = data[:-2]
            bad = (_crc16(body) ^ 0xFFFF).to_bytes(2, "little")
            return b"\x00\xff" + body + bad
        return data

    async def start_tcp(
        self, host: str = "127.0.0.1", port: int = 0, rtu_framing: bool = False
    ) -> int:
        """Serve Modbus TCP (or RTU frames over TCP); returns the port listened on."""
        self._framer = FramerType.RTU if rtu_framing else FramerType.SOCKET
        server = ModbusTcpServer(
            self._devices(), framer=self._framer, address=(host, port), trace_packet=self._trace
        )
        await server.serve_forever(background=True)
        self._server = server
        self.port = int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def start_serial(
        self, port: str, baud: int = 9600, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Serve Modbus RTU on a serial device (e.g. one end of a socat pty pair)."""
        self._framer = FramerType.RTU
        server = ModbusSerialServer(
            self._devices(),
            framer=FramerType.RTU,
            port=port,
            baudrate=baud,
            parity=parity,
            stopbits=stopbits,
            trace_packet=self._trace,
            reconnect_delay=0,
        )
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


# ------------------------------------------------------------------ command line


def _parse_meter(text: str, profiles) -> tuple[Profile, int, dict[str, str]]:
    parts = text.split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        raise SystemExit(f"--meter {text!r}: expected PROFILE:UNIT[:OPTION=CHOICE,…]")
    try:
        prof = profiles[parts[0]]
    except KeyError as exc:
        raise SystemExit(str(exc.args[0])) from None
    opts: dict[str, str] = {}
    for kv in parts[2].split(",") if len(parts) > 2 else []:
        name, sep, choice = kv.partition("=")
        if not sep:
            raise SystemExit(f"--meter {text!r}: options are OPTION=CHOICE, found {kv!r}")
        opts[name] = choice
    return prof, int(parts[1]), opts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim.meter",
        description="Simulated Modbus energy meters (any evgw profile) on TCP or a serial port.",
    )
    p.add_argument(
        "--meter",
        action="append",
        required=True,
        metavar="PROFILE:UNIT[:OPT=CHOICE]",
        help="a meter to simulate, e.g. sdm630:1 or dtsu666:2:energy_block=x4000 "
        "(repeat for several meters on the line)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP here (port 0: any)")
    where.add_argument("--serial", metavar="DEV", help="serve Modbus RTU on this serial device")
    p.add_argument("--rtu-over-tcp", action="store_true", help="RTU framing on the TCP socket")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument("--power-w", type=float, default=0.0, help="active power of every meter")
    p.add_argument("--voltage-v", type=float, default=230.0, help="phase (or DC) voltage")
    p.add_argument("--energy-kwh", type=float, default=0.0, help="initial import energy")
    p.add_argument("--profiles", metavar="DIR", help="profile directory (default: built-in)")
    p.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an identity register's value for every meter that has it, e.g. ct_ratio=200",
    )
    return p


def _set_identity(meter: SimMeter, items: Sequence[str]) -> None:
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise SystemExit(f"--identity {item!r}: expected NAME=INTEGER")
        if name in meter.identity:
            try:
                meter.set_identity(name, int(value))
            except ValueError as exc:
                raise SystemExit(f"--identity {item!r}: {exc}") from None


async def _serve(args: argparse.Namespace, meters: Sequence[SimMeter]) -> None:
    server = MeterSimServer(meters)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        bound = await server.start_tcp(host or "127.0.0.1", int(port), args.rtu_over_tcp)
        print(f"ready tcp {host or '127.0.0.1'}:{bound}", flush=True)
    else:
        await server.start_serial(args.serial, args.baud, args.parity, args.stopbits)
        print(f"ready serial {args.serial}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profiles = load_profiles(args.profiles)
    meters = []
    for spec in args.meter:
        prof, unit, opts = _parse_meter(spec, profiles)
        try:
            meter = SimMeter(
                prof,
                unit,
                options=opts,
                clock=time.monotonic,
                power_w=args.power_w,
                voltage_v=args.voltage_v,
                energy_import_kwh=args.energy_kwh,
            )
        except ValueError as exc:
            raise SystemExit(f"--meter {spec!r}: {exc}") from None
        _set_identity(meter, args.identity)
        meters.append(meter)
    try:
        asyncio.run(_serve(args, meters))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
