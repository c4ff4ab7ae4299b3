"""Sans-I/O meter identity and electronic-seal tracking, for any meter protocol.

A poller reads what the profile names (identity fields, event counters with the time of
each counter's latest event, the meter's clock) into a :class:`SealRead` and feeds it with
the caller's timestamp; :class:`SealTracker` returns the events:

- :class:`MeterIdentity` and :class:`MeterCounters` at the first read (the station compares
  them with what it recorded before a restart), :class:`MeterReplaced` when the identity
  changes afterwards;
- :class:`MeterTamper` for each counter that rose; a counter read lower than before is a
  ``counter_decreased`` :class:`MeterAnomaly` (once), that value is rejected and the old
  count kept;
- :class:`MeterClockDrift`: its state at the first read (so the station can clear an alarm a
  previous run left raised), then raised when the meter's clock is off by more than the
  threshold, cleared when it is back within half of it.

It also keeps the schedule of the slow read: :meth:`SealTracker.due` at the first poll, then
``interval_s`` after each read fed, and again at the next poll after
:meth:`SealTracker.request` (the service asks at session start and end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.modbus.events import (
    MeterAnomaly,
    MeterClockDrift,
    MeterCounters,
    MeterEvent,
    MeterIdentity,
    MeterReplaced,
    MeterTamper,
)


@dataclass(frozen=True, slots=True)
class SealRead:
    """One slow read of a meter: every field holds only what could be read this time."""

    identity: Mapping[str, str] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    last_event_ts: Mapping[str, float | None] = field(default_factory=dict)
    clock_drift_s: float | None = None


class SealTracker:
    def __init__(
        self, meter_id: str, clock_drift_max_s: float = 300.0, interval_s: float = 60.0
    ) -> None:
        self.meter_id = meter_id
        self.clock_drift_max_s = clock_drift_max_s
        self.interval_s = interval_s
        self._due_ts: float | None = None
        """When the slow read is next due (``None``: at the next poll)."""
        self.identity: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.clock_drift_s: float | None = None
        self._drift_active = False
        self._reported_back: set[str] = set()

    def due(self, ts: float) -> bool:
        return self._due_ts is None or ts >= self._due_ts

    def request(self) -> None:
        """Read at the next poll (session start or end)."""
        self._due_ts = None

    def feed(self, read: SealRead, ts: float) -> list[MeterEvent]:
        self._due_ts = ts + self.interval_s
        events = self._identity(read, ts) + self._counters(read, ts)
        return events + self._clock(read, ts)

    def _identity(self, read: SealRead, ts: float) -> list[MeterEvent]:
        if not read.identity:
            return []
        current = dict(read.identity)
        known = {k: v for k, v in self.identity.items() if k in current}
        if not self.identity:
            self.identity = current
            return [MeterIdentity(self.meter_id, ts, dict(current))]
        if known == current and set(current) <= set(self.identity):
            return []
        previous, self.identity = dict(self.identity), {**self.identity, **current}
        if known == {k: current[k] for k in known}:  # a field read for the first time
            return [MeterIdentity(self.meter_id, ts, dict(self.identity))]
        return [
            MeterReplaced(self.meter_id, ts, previous, dict(self.identity)),
            MeterIdentity(self.meter_id, ts, dict(self.identity)),
        ]

    def _counters(self, read: SealRead, ts: float) -> list[MeterEvent]:
        events: list[MeterEvent] = []
        first = not self.counts
        for name, count in read.counts.items():
            before = self.counts.get(name)
            if before is None:
                self.counts[name] = count
                continue
            if count < before:
                if name not in self._reported_back:
                    self._reported_back.add(name)
                    detail = (
                        f"event counter {name} read {count}, below the {before} read before "
                        f"(meter exchanged, or a bad read): kept {before}"
                    )
                    events.append(
                        MeterAnomaly(
                            self.meter_id, ts, "counter_decreased", name, detail, before, count
                        )
                    )
                continue
            self._reported_back.discard(name)
            if count > before:
                self.counts[name] = count
                last = read.last_event_ts.get(name)
                events.append(MeterTamper(self.meter_id, ts, name, before, count, last))
        if first and self.counts:
            last_ts = {n: read.last_event_ts.get(n) for n in self.counts}
            events.append(MeterCounters(self.meter_id, ts, dict(self.counts), last_ts))
        return events

    def _clock(self, read: SealRead, ts: float) -> list[MeterEvent]:
        drift = read.clock_drift_s
        if drift is None:
            return []
        first, self.clock_drift_s = self.clock_drift_s is None, drift
        limit = self.clock_drift_max_s
        if first:
            self._drift_active = abs(drift) > limit
            return [MeterClockDrift(self.meter_id, ts, drift, limit, self._drift_active)]
        if not self._drift_active and abs(drift) > limit:
            self._drift_active = True
            return [MeterClockDrift(self.meter_id, ts, drift, limit, True)]
        if self._drift_active and abs(drift) <= limit / 2:
            self._drift_active = False
            return [MeterClockDrift(self.meter_id, ts, drift, limit, False)]
        return []
