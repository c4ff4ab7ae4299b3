"""Tariffs as the station applies them: which period is in force at any moment, across
midnight and across tariff changes (``valid_from``), in the station's wall time.

Sans-I/O: times are UTC epoch seconds passed in; the time zone comes from the config.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from agent.billing.config import TariffSection, price, seconds_of_day

MAX_SEGMENTS: Final = 10_000
"""A session is split at most this often (32 periods a day for over 300 days)."""


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int
    """Seconds after local midnight."""
    type: str
    elec_price: Decimal
    service_price: Decimal

    @property
    def start_text(self) -> str:
        h, rest = divmod(self.start_s, 3600)
        return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True, slots=True)
class Tariff:
    id: str
    valid_from: dt.datetime | None
    """Station wall time from which this version applies (None: since always)."""
    periods: tuple[Period, ...]

    def period_at(self, second_of_day: int) -> tuple[Period, int]:
        """The period in force and the second of the day at which it ends."""
        index = max(i for i, p in enumerate(self.periods) if p.start_s <= second_of_day)
        end = self.periods[index + 1].start_s if index + 1 < len(self.periods) else 86_400
        return self.periods[index], end

    def text(self) -> str:
        """A readable one-line form (the OCMF ``TT`` tariff text, receipts)."""
        parts = [
            f"{p.start_text[:5]} {p.type} {p.elec_price}+{p.service_price}" for p in self.periods
        ]
        return f"{self.id}: " + "; ".join(parts) + " CNY/kWh"


@dataclass(frozen=True, slots=True)
class Segment:
    start_ts: float
    end_ts: float
    tariff: Tariff
    period: Period


class TariffBook:
    """Every configured tariff with its history, and which one a connector uses."""

    def __init__(self, versions: Iterable[Tariff], default_id: str | None, tz: dt.tzinfo) -> None:
        self.tz = tz
        self.default_id = default_id
        self._versions: dict[str, list[Tariff]] = {}
        for t in versions:
            self._versions.setdefault(t.id, []).append(t)
        for history in self._versions.values():
            history.sort(key=lambda t: t.valid_from or dt.datetime.min)

    @classmethod
    def from_config(cls, sections: Iterable[TariffSection], timezone: str) -> TariffBook:
        sections = list(sections)
        versions = [tariff_from_section(s) for s in sections]
        default = next((s.id for s in sections if s.default), None)
        return cls(versions, default, zoneinfo.ZoneInfo(timezone))

    def tariff_id_for(self, connector_tariff: str | None) -> str | None:
        return connector_tariff or self.default_id

    def ids(self) -> list[str]:
        return sorted(self._versions)

    def in_force(self, tariff_id: str, ts: float) -> Tariff | None:
        """The version of ``tariff_id`` in force at ``ts`` (None before its first version)."""
        local = dt.datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None)
        found = None
        for t in self._versions.get(tariff_id, []):
            if t.valid_from is None or t.valid_from <= local:
                found = t
        return found

    def _next_version_ts(self, tariff_id: str, after_ts: float) -> float | None:
        for t in self._versions.get(tariff_id, []):
            if t.valid_from is not None:
                ts = t.valid_from.replace(tzinfo=self.tz).timestamp()
                if ts > after_ts:
                    return ts
        return None

    def segments(self, tariff_id: str, start_ts: float, end_ts: float) -> list[Segment]:
        """``[start_ts, end_ts)`` cut at every period boundary, midnight and tariff change; a
        stretch before the tariff's first version has no segment (nothing to bill it by)."""
        out: list[Segment] = []
        t = start_ts
        while t < end_ts and len(out) < MAX_SEGMENTS:
            tariff = self.in_force(tariff_id, t)
            change = self._next_version_ts(tariff_id, t)
            if tariff is None:
                if change is None:
                    break
                t = change
                continue
            local = dt.datetime.fromtimestamp(t, self.tz)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            second = int((local - midnight).total_seconds())
            period, period_end_s = tariff.period_at(second)
            boundary = midnight.replace(tzinfo=None) + dt.timedelta(seconds=period_end_s)
            boundary_ts = boundary.replace(tzinfo=self.tz).timestamp()
            end = min(x for x in (boundary_ts, change, end_ts) if x is not None)
            if end <= t:  # a wall-clock fold: step to the next second
                end = t + 1.0
            out.append(Segment(t, end, tariff, period))
            t = end
        return out


def tariff_from_section(s: TariffSection) -> Tariff:
    since = dt.datetime.strptime(s.valid_from, "%Y-%m-%d %H:%M:%S") if s.valid_from else None
    periods = tuple(
        Period(seconds_of_day(p.start), p.type, price(p.elec_price), price(p.service_price))
        for p in s.periods
    )
    return Tariff(s.id, since, periods)
