"""Hourly and daily statistics per connector (station statistics and problem statistics).

Connectors report what happens (energy increments, a session started, charging time, an
alarm raised, an order's StopReason) into the open buckets; when time passes a period boundary
(hours and local midnight, ``sampling.stats_utc_offset_h``) the bucket becomes one
``station_stats`` record and a fresh one opens at the current period. A gateway that was off
for hours writes the bucket it had and starts again: it never invents empty periods.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from agent.records.bodies import ConnectorStatsBody, StationStatsBody
from agent.records.envelope import iso_ts

Period = Literal["hour", "day"]
_LENGTH_S: dict[str, float] = {"hour": 3600.0, "day": 86400.0}


@dataclass(slots=True)
class _Counts:
    energy_kwh: float = 0.0
    sessions: int = 0
    charging_s: float = 0.0
    alarms: Counter[int] = field(default_factory=Counter)
    stop_reasons: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class _Bucket:
    period: Period
    start_ts: float
    end_ts: float
    counts: dict[str, _Counts] = field(default_factory=dict)


class StatsRoller:
    """Open hour and day buckets for a fixed set of connectors (connector id → equipment id)."""

    def __init__(self, connectors: dict[str, str], utc_offset_h: float, ts: float) -> None:
        self.connectors = dict(connectors)
        self.offset_s = utc_offset_h * 3600.0
        self._buckets = {p: self._open(p, ts) for p in ("hour", "day")}  # type: ignore[arg-type]

    def _open(self, period: Period, ts: float) -> _Bucket:
        length = _LENGTH_S[period]
        start = math.floor((ts + self.offset_s) / length) * length - self.offset_s
        counts = {cid: _Counts() for cid in self.connectors}
        return _Bucket(period, start, start + length, counts)

    @property
    def next_boundary(self) -> float:
        return self._buckets["hour"].end_ts

    def _each(self, cid: str) -> list[_Counts]:
        return [b.counts[cid] for b in self._buckets.values() if cid in b.counts]

    def add_energy(self, cid: str, kwh: float) -> None:
        for c in self._each(cid):
            c.energy_kwh += kwh

    def add_session(self, cid: str) -> None:
        for c in self._each(cid):
            c.sessions += 1

    def add_charging(self, cid: str, seconds: float) -> None:
        for c in self._each(cid):
            c.charging_s += seconds

    def add_alarm(self, cid: str, code: int) -> None:
        for c in self._each(cid):
            c.alarms[code] += 1

    def add_stop_reason(self, cid: str, reason: int) -> None:
        for c in self._each(cid):
            c.stop_reasons[reason] += 1

    def set_connectors(self, connectors: dict[str, str]) -> None:
        """After a config reload: new connectors get counters, removed ones keep theirs."""
        self.connectors.update(connectors)
        for b in self._buckets.values():
            for cid in connectors:
                b.counts.setdefault(cid, _Counts())

    def roll(self, ts: float) -> list[StationStatsBody]:
        """Close every bucket that ended at or before ``ts`` (hour first, then day)."""
        out: list[StationStatsBody] = []
        for period in ("hour", "day"):
            b = self._buckets[period]
            if ts >= b.end_ts:
                out.append(self._body(b))
                self._buckets[period] = self._open(period, ts)  # type: ignore[arg-type]
        return out

    def _body(self, b: _Bucket) -> StationStatsBody:
        return StationStatsBody(
            period=b.period,
            period_start_ts=iso_ts(b.start_ts),
            period_end_ts=iso_ts(b.end_ts),
            connectors=tuple(
                ConnectorStatsBody(
                    connector_id=cid,
                    equipment_id=self.connectors.get(cid, ""),
                    energy_kwh=round(c.energy_kwh, 3),
                    sessions=c.sessions,
                    charging_minutes=round(c.charging_s / 60.0, 2),
                    alarms={str(k): v for k, v in sorted(c.alarms.items())},
                    stop_reasons={str(k): v for k, v in sorted(c.stop_reasons.items())},
                )
                for cid, c in b.counts.items()
            ),
        )
