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

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.dlt645.data import DataError, decode_number, decode_text, decode_time, parse_format
from drivers.dlt645.frame import check_address
from drivers.dlt645.link import Dlt645Line
from drivers.dlt645.profile import COUNT_FORMAT, RECORD_TIME, DltProfile
from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import Decoded
from drivers.modbus.events import MeterReading
from drivers.modbus.health import MeterHealth
from drivers.modbus.line import LineDiscipline, ReadError
from drivers.modbus.link import SerialLineSpec
from drivers.modbus.polling import (
    MeterPollerBase,
    Sink,
    line_timeout_s,
    lookup_profile,
    with_retries,
)
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


class Dlt645Poller(MeterPollerBase[_Meter]):
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
        super().__init__(sink)
        for spec in meters:
            check_address(spec.address)
            meter = _Meter(
                spec,
                lookup_profile(profiles, spec.meter_id, spec.profile),
                MeterHealth(spec.meter_id, spec.offline_after, spec.poll_interval_s, backoff_max_s),
                ReadingChecker(spec.meter_id, spec.rated_power_w),
                SealTracker(spec.meter_id, spec.clock_drift_max_s, spec.seal_interval_s),
            )
            self._add(spec.meter_id, f"address {spec.address}", line.describe(), meter)
        timeout_s = line_timeout_s(line.timeout_s, meters)
        self.line = Dlt645Line(line, timeout_s=timeout_s, discipline=discipline)

    async def _read(self, m: _Meter, di: int) -> bytes | ReadError:
        address, timeout_s = m.spec.address, m.spec.timeout_s
        return await with_retries(lambda: self.line.read(address, di, timeout_s), m.spec.retries)

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
                    self._failed(m, ts, raw.message)
                    return None
                rejected[q.name] = raw.short
                continue
            try:
                values[q.name] = decode_number(raw, q.format, signed=q.signed) * q.scale
            except DataError as exc:
                rejected[q.name] = f"identifier {q.di:08X}: {exc}"
        reading, events = m.checker.check(Decoded(values, rejected, {}), ts)
        if m.seal.due(ts):
            seal = await self._read_seal(m, ts)
            if seal is not None:
                events += m.seal.feed(seal, ts)
        self._done(m, ts, reading, events)
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
