"""Poll the meters of one line; the caller's scheduler decides when.

Build a :class:`LinePoller` from plain frozen specs (a line spec and one
:class:`MeterSpec` per meter), then call ``await poller.poll(meter_id, ts)`` (or
``poll_line(ts)``) from the scheduler. Each poll reads the meter's planned blocks through
the line's lock, decodes them, checks plausibility and emits a :class:`MeterReading` and
any events (online/offline, anomaly, alarm) to the sink: a callable or an
``asyncio.Queue``. There are no sleeps here other than the line's inter-frame gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import ReadPlan, plan_reads
from drivers.modbus.events import MeterEvent, MeterReading
from drivers.modbus.health import MeterHealth
from drivers.modbus.line import LineDiscipline
from drivers.modbus.link import LineSpec, ModbusLine, ReadError
from drivers.modbus.profile_model import Profile

Sink = Callable[[MeterReading | MeterEvent], object] | asyncio.Queue


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter on a line. ``function``/``options`` are what the commissioning probe chose
    (``None``/empty: the profile's defaults). ``rated_power_w`` enables the power and
    energy-jump plausibility checks. ``poll_interval_s`` is for the caller's scheduler and is
    the first offline backoff step."""

    meter_id: str
    unit_id: int
    profile: str
    rated_power_w: float | None = None
    poll_interval_s: float = 1.0
    timeout_s: float | None = None
    retries: int = 1
    offline_after: int = 3
    function: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Meter:
    spec: MeterSpec
    plan: ReadPlan
    health: MeterHealth
    checker: ReadingChecker


class LinePoller:
    """All meters on one line. Raises ``ValueError`` for an inconsistent setup."""

    def __init__(
        self,
        line: LineSpec,
        meters: Sequence[MeterSpec],
        profiles: Mapping[str, Profile] | object,
        sink: Sink | None = None,
        *,
        discipline: LineDiscipline | None = None,
        backoff_max_s: float = 300.0,
    ) -> None:
        self._meters: dict[str, _Meter] = {}
        units: dict[int, str] = {}
        for spec in meters:
            if spec.meter_id in self._meters:
                raise ValueError(f"meter id {spec.meter_id!r} appears twice on {line.describe()}")
            if spec.unit_id in units:
                raise ValueError(
                    f"meters {units[spec.unit_id]!r} and {spec.meter_id!r} share unit id "
                    f"{spec.unit_id} on {line.describe()}"
                )
            units[spec.unit_id] = spec.meter_id
            try:
                profile = profiles[spec.profile]  # type: ignore[index]
            except KeyError as exc:
                raise ValueError(f"meter {spec.meter_id!r}: {exc.args[0]}") from None
            resolved = profile.resolve(spec.function, spec.options)
            self._meters[spec.meter_id] = _Meter(
                spec,
                plan_reads(resolved),
                MeterHealth(spec.meter_id, spec.offline_after, spec.poll_interval_s, backoff_max_s),
                ReadingChecker(
                    spec.meter_id, spec.rated_power_w, [f.name for f in resolved.flags if f.alarm]
                ),
            )
        timeouts = [line.timeout_s] + [m.timeout_s for m in meters if m.timeout_s]
        self.line = ModbusLine(line, timeout_s=max(timeouts), discipline=discipline)
        self._sink = sink

    @property
    def meter_ids(self) -> list[str]:
        return list(self._meters)

    def health(self, meter_id: str) -> MeterHealth:
        return self._meters[meter_id].health

    def _emit(self, item: MeterReading | MeterEvent) -> None:
        if self._sink is None:
            return
        if isinstance(self._sink, asyncio.Queue):
            self._sink.put_nowait(item)
        else:
            self._sink(item)

    async def poll(self, meter_id: str, ts: float) -> MeterReading | None:
        """Read one meter now. ``None`` when it failed, or is offline and not yet due."""
        m = self._meters[meter_id]
        if not m.health.due(ts):
            return None
        results: list[list[int] | str] = []
        for block in m.plan.blocks:
            reply = await self._read(m, block.function, block.address, block.count)
            if isinstance(reply, ReadError):
                if not reply.answered:
                    for event in m.health.failure(ts, reply.message):
                        self._emit(event)
                    return None
                results.append(reply.short)
            else:
                results.append(reply)
        decoded = m.plan.decode(results)
        reading, events = m.checker.check(decoded, ts)
        for event in m.health.success(ts) + events:
            self._emit(event)
        self._emit(reading)
        return reading

    async def _read(
        self, m: _Meter, function: int, address: int, count: int
    ) -> list[int] | ReadError:
        attempts = 1 + max(0, m.spec.retries)
        reply: list[int] | ReadError = ReadError("timeout", "not read")
        for _ in range(attempts):
            reply = await self.line.read(m.spec.unit_id, function, address, count, m.spec.timeout_s)
            if not isinstance(reply, ReadError) or reply.answered or reply.line_down:
                return reply
        return reply

    async def poll_line(self, ts: float) -> list[MeterReading]:
        """Poll every meter of the line once, in order; the readings that succeeded."""
        out = []
        for meter_id in self._meters:
            reading = await self.poll(meter_id, ts)
            if reading is not None:
                out.append(reading)
        return out

    def close(self) -> None:
        self.line.close()
