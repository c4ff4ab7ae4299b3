"""What the meter pollers of every protocol share (Modbus :mod:`drivers.modbus.poller`,
DL/T 645 :mod:`drivers.dlt645.poller`).

:class:`MeterPollerBase` keeps the meters of one line by id (each with its
:class:`MeterHealth` and :class:`SealTracker`), refuses two meters with one id or one bus
address, sends every reading and event to the sink, and polls the line meter by meter.
:func:`with_retries` is the retry rule of a request: again only while nothing answered.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from drivers.modbus.events import MeterEvent, MeterReading
from drivers.modbus.health import MeterHealth
from drivers.modbus.line import ReadError
from drivers.modbus.seal import SealTracker

Sink = Callable[[MeterReading | MeterEvent], object] | asyncio.Queue


class PolledMeter(Protocol):
    health: MeterHealth
    seal: SealTracker


class _Line(Protocol):
    def close(self) -> None: ...


class _TimedSpec(Protocol):
    @property
    def timeout_s(self) -> float | None: ...


M = TypeVar("M", bound=PolledMeter)
T = TypeVar("T")
P = TypeVar("P")


async def with_retries(read: Callable[[], Awaitable[T | ReadError]], retries: int) -> T | ReadError:
    """``read``, and again up to ``retries`` times while nothing answered; an answer, an
    exception reply or a line that is down ends it at once."""
    reply = await read()
    for _ in range(max(0, retries)):
        if not isinstance(reply, ReadError) or reply.answered or reply.line_down:
            break
        reply = await read()
    return reply


def line_timeout_s(line_timeout: float, meters: Sequence[_TimedSpec]) -> float:
    """The line's client timeout: the longest any of its meters asks for."""
    return max([line_timeout] + [m.timeout_s for m in meters if m.timeout_s])


def lookup_profile(profiles: Mapping[str, P], meter_id: str, name: str) -> P:
    try:
        return profiles[name]
    except KeyError as exc:
        raise ValueError(f"meter {meter_id!r}: {exc.args[0]}") from None


class MeterPollerBase(ABC, Generic[M]):
    """The meters of one line; subclasses read them (``poll``) and set ``line``."""

    line: _Line

    def __init__(self, sink: Sink | None) -> None:
        self._meters: dict[str, M] = {}
        self._bus_ids: dict[str, str] = {}
        self._sink = sink

    def _add(self, meter_id: str, bus_id: str, where: str, meter: M) -> None:
        """Register ``meter``; ``bus_id`` is how the line addresses it (``unit id 3``)."""
        if meter_id in self._meters:
            raise ValueError(f"meter id {meter_id!r} appears twice on {where}")
        if bus_id in self._bus_ids:
            raise ValueError(
                f"meters {self._bus_ids[bus_id]!r} and {meter_id!r} share {bus_id} on {where}"
            )
        self._bus_ids[bus_id] = meter_id
        self._meters[meter_id] = meter

    @property
    def meter_ids(self) -> list[str]:
        return list(self._meters)

    def health(self, meter_id: str) -> MeterHealth:
        return self._meters[meter_id].health

    def seal(self, meter_id: str) -> SealTracker:
        return self._meters[meter_id].seal

    def check_seal(self, meter_id: str) -> None:
        """Read the meter's identity (and seal) at the next poll (session start or end)."""
        self._meters[meter_id].seal.request()

    def _emit(self, item: MeterReading | MeterEvent) -> None:
        if self._sink is None:
            return
        if isinstance(self._sink, asyncio.Queue):
            self._sink.put_nowait(item)
        else:
            self._sink(item)

    def _failed(self, m: M, ts: float, reason: str) -> None:
        for event in m.health.failure(ts, reason):
            self._emit(event)

    def _done(self, m: M, ts: float, reading: MeterReading, events: list[MeterEvent]) -> None:
        for event in m.health.success(ts) + events:
            self._emit(event)
        self._emit(reading)

    @abstractmethod
    async def poll(self, meter_id: str, ts: float) -> MeterReading | None:
        """Read one meter now. ``None`` when it failed, or is offline and not yet due."""

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
