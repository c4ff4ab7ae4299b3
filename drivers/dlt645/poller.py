"""Poll the DL/T 645 meters of one RS-485 line; the caller's scheduler decides when.

The same contract as :class:`drivers.modbus.poller.LinePoller`: build a :class:`Dlt645Poller`
from a line spec and one :class:`DltMeterSpec` per meter, ``await poller.poll(meter_id, ts)``
from the scheduler, and every :class:`MeterReading` and event (online/offline, anomalies,
and the identity and seal events) goes to the sink. The plausibility checks and the
online/offline state are the Modbus driver's, so the station sees no difference.

DL/T 645 reads one identifier per request. Measurements are read at every poll; the slow
part (identity, clock, event counters) every ``seal_interval_s``, and at the next poll after
:meth:`Dlt645Poller.check_seal` (the service calls it at session start and end).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.dlt645.data import DataError, decode_number, decode_text, decode_time, parse_format
from drivers.dlt645.frame import check_address
from drivers.dlt645.link import Dlt645Line
from drivers.dlt645.profile import COUNT_FORMAT, RECORD_TIME, DltProfile
from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import Decoded
from drivers.modbus.events import MeterEvent, MeterReading
from drivers.modbus.health import MeterHealth
from drivers.modbus.line import LineDiscipline, ReadError
from drivers.modbus.link import SerialLineSpec
from drivers.modbus.poller import Sink
from drivers.modbus.seal import SealRead, SealTracker

DATE = parse_format("YYMMDDWW")
TIME = parse_format("hhmmss")


@dataclass(frozen=True, slots=True)
class DltMeterSpec:
    """One DL/T 645 meter on a line. ``clock_utc_offset_h`` is the time zone the meter's
    clock keeps (China: +8); ``clock_drift_max_s`` the drift that raises an alarm."""

    meter_id: str
    address: str
    profile: str
    rated_power_w: float | None = None
    poll_interval_s: float = 5.0
    timeout_s: float | None = None
    retries: int = 1
    offline_after: int = 3
    seal_interval_s: float = 60.0
    clock_utc_offset_h: float = 8.0
    clock_drift_max_s: float = 300.0


@dataclass(slots=True)
class _Meter:
    spec: DltMeterSpec
    profile: DltProfile
    health: MeterHealth
    checker: ReadingChecker
    seal: SealTracker
    seal_due_ts: float | None = None
    """When the slow read is next due (``None``: at the next poll)."""


class Dlt645Poller:
    """All DL/T 645 meters on one line. Raises ``ValueError`` for an inconsistent setup."""

    def __init__(
        self,
        line: SerialLineSpec,
        meters: Sequence[DltMeterSpec],
        profiles: Mapping[str, DltProfile],
        sink: Sink | None = None,
        *,
        discipline: LineDiscipline | None = None,
        backoff_max_s: float = 300.0,
    ) -> None:
        self._meters: dict[str, _Meter] = {}
        addresses: dict[str, str] = {}
        for spec in meters:
            check_address(spec.address)
            if spec.meter_id in self._meters:
                raise ValueError(f"meter id {spec.meter_id!r} appears twice on {line.describe()}")
            if spec.address in addresses:
                raise ValueError(
                    f"meters {addresses[spec.address]!r} and {spec.meter_id!r} share address "
                    f"{spec.address} on {line.describe()}"
                )
            addresses[spec.address] = spec.meter_id
            try:
                profile = profiles[spec.profile]
            except KeyError as exc:
                raise ValueError(f"meter {spec.meter_id!r}: {exc.args[0]}") from None
            self._meters[spec.meter_id] = _Meter(
                spec,
                profile,
                MeterHealth(spec.meter_id, spec.offline_after, spec.poll_interval_s, backoff_max_s),
                ReadingChecker(spec.meter_id, spec.rated_power_w),
                SealTracker(spec.meter_id, spec.clock_drift_max_s),
            )
        timeouts = [line.timeout_s] + [m.timeout_s for m in meters if m.timeout_s]
        self.line = Dlt645Line(line, timeout_s=max(timeouts), discipline=discipline)
        self._sink = sink

    @property
    def meter_ids(self) -> list[str]:
        return list(self._meters)

    def health(self, meter_id: str) -> MeterHealth:
        return self._meters[meter_id].health

    def seal(self, meter_id: str) -> SealTracker:
        return self._meters[meter_id].seal

    def check_seal(self, meter_id: str) -> None:
        """Read identity, clock and counters at the next poll (session start or end)."""
        self._meters[meter_id].seal_due_ts = None

    def _emit(self, item: MeterReading | MeterEvent) -> None:
        if self._sink is None:
            return
        if isinstance(self._sink, asyncio.Queue):
            self._sink.put_nowait(item)
        else:
            self._sink(item)

    async def _read(self, m: _Meter, di: int) -> bytes | ReadError:
        reply: bytes | ReadError = ReadError("timeout", "not read")
        for _ in range(1 + max(0, m.spec.retries)):
            reply = await self.line.read(m.spec.address, di, m.spec.timeout_s)
            if not isinstance(reply, ReadError) or reply.answered or reply.line_down:
                return reply
        return reply

    async def poll(self, meter_id: str, ts: float) -> MeterReading | None:
        """Read one meter now. ``None`` when it failed, or is offline and not yet due."""
        m = self._meters[meter_id]
        if not m.health.due(ts):
            return None
        values: dict[str, float] = {}
        rejected: dict[str, str] = {}
        for q in m.profile.quantities:
            raw = await self._read(m, q.di)
            if isinstance(raw, ReadError):
                if not raw.answered:
                    for event in m.health.failure(ts, raw.message):
                        self._emit(event)
                    return None
                rejected[q.name] = raw.short
                continue
            try:
                values[q.name] = decode_number(raw, q.format, signed=q.signed) * q.scale
            except DataError as exc:
                rejected[q.name] = f"identifier {q.di:08X}: {exc}"
        reading, events = m.checker.check(Decoded(values, rejected, {}), ts)
        if m.seal_due_ts is None or ts >= m.seal_due_ts:
            seal = await self._read_seal(m, ts)
            if seal is not None:
                events += m.seal.feed(seal, ts)
                m.seal_due_ts = ts + m.spec.seal_interval_s
        for event in m.health.success(ts) + events:
            self._emit(event)
        self._emit(reading)
        return reading

    async def _read_seal(self, m: _Meter, ts: float) -> SealRead | None:
        """Identity, counters and clock; ``None`` when the meter stopped answering."""
        identity: dict[str, str] = {}
        for r in m.profile.identity:
            raw = await self._read(m, r.di)
            if isinstance(raw, ReadError):
                if not raw.answered:
                    return None
                continue
            try:
                identity[r.name] = decode_text(raw, r.format)
            except DataError:
                continue
        counts: dict[str, int] = {}
        last: dict[str, float | None] = {}
        for c in m.profile.counters:
            raw = await self._read(m, c.count_di)
            if isinstance(raw, ReadError):
                if not raw.answered:
                    return None
                continue
            try:
                counts[c.name] = int(decode_number(raw, COUNT_FORMAT))
            except DataError:
                continue
            last[c.name] = await self._last_event(m, c.last_di, c.time_at)
        drift = await self._clock_drift(m, ts)
        return SealRead(identity, counts, last, drift)

    def _meter_time(self, m: _Meter, local: datetime.datetime) -> float:
        offset = datetime.timedelta(hours=m.spec.clock_utc_offset_h)
        return (local - offset).replace(tzinfo=datetime.UTC).timestamp()

    async def _last_event(self, m: _Meter, di: int | None, time_at: int) -> float | None:
        if di is None:
            return None
        raw = await self._read(m, di)
        if isinstance(raw, ReadError) or not any(raw[time_at : time_at + RECORD_TIME.size]):
            return None
        try:
            moment = decode_time(raw[time_at:], RECORD_TIME)
        except DataError:
            return None
        assert isinstance(moment, datetime.datetime)
        return self._meter_time(m, moment)

    async def _clock_drift(self, m: _Meter, ts: float) -> float | None:
        clock = m.profile.clock
        if clock is None:
            return None
        date_raw = await self._read(m, clock.date_di)
        time_raw = await self._read(m, clock.time_di)
        if isinstance(date_raw, ReadError) or isinstance(time_raw, ReadError):
            return None
        try:
            day = decode_time(date_raw, DATE)
            moment = decode_time(time_raw, TIME)
        except DataError:
            return None
        assert isinstance(day, datetime.datetime) and isinstance(moment, datetime.time)
        if moment < datetime.time(0, 0, 10):
            return None  # the date may have been read before midnight, the time after
        return self._meter_time(m, datetime.datetime.combine(day.date(), moment)) - ts

    async def poll_line(self, ts: float) -> list[MeterReading]:
        out = []
        for meter_id in self._meters:
            reading = await self.poll(meter_id, ts)
            if reading is not None:
                out.append(reading)
        return out

    def close(self) -> None:
        self.line.close()
