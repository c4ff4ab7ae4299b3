"""A session's metered energy split at each tariff boundary, with exact money.

The energy at a boundary comes from the meter register: the read at the boundary, or the
linear interpolation between the two reads around it (the service schedules a poll at every
boundary so the interpolation spans seconds). Rounding rule, the same on every path:

- energy is rounded on the **cumulative** register delta at each boundary (0.01 kWh, half up),
  and each detail's ``DetailPower`` is the difference of two rounded cumulatives — so
  ``Σ DetailPower == TotalPower == round(metered delta, 0.01)`` exactly, never drifting by
  the number of periods;
- ``DetailElecMoney = round(DetailPower × ElecPrice, 0.01)`` and likewise the service money,
  so every line can be checked by hand;
- totals are the sums of the rounded details and ``TotalMoney = TotalElecMoney +
  TotalSeviceMoney``, exactly, on the wire.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from agent.billing.tariff import Segment

FEN: Final = Decimal("0.01")
CENTI_KWH: Final = Decimal("0.01")
PRICE_STEP: Final = Decimal("0.0001")
"""Prices have at most four decimals (yuan/kWh); records and the wire show all four."""


def round_half_up(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class ChargeDetail:
    start_ts: float
    end_ts: float
    period_type: str
    elec_price: Decimal
    service_price: Decimal
    power_kwh: Decimal
    elec_money: Decimal
    service_money: Decimal


@dataclass(frozen=True, slots=True)
class Bill:
    details: tuple[ChargeDetail, ...]
    total_power_kwh: Decimal
    total_elec_money: Decimal
    total_service_money: Decimal
    total_money: Decimal
    tariff_id: str | None

    @classmethod
    def empty(cls, tariff_id: str | None = None) -> Bill:
        zero = Decimal("0.00")
        return cls((), zero, zero, zero, zero, tariff_id)


def energy_at(readings: Sequence[tuple[float, float]], ts: float) -> float:
    """The register at ``ts`` from time-ordered ``(ts, kWh)`` reads: the read itself, the
    interpolation between the two around it, or the nearest end outside them."""
    times = [r[0] for r in readings]
    i = bisect.bisect_left(times, ts)
    if i < len(readings) and readings[i][0] == ts:
        return readings[i][1]
    if i == 0:
        return readings[0][1]
    if i >= len(readings):
        return readings[-1][1]
    (t0, e0), (t1, e1) = readings[i - 1], readings[i]
    return e0 + (e1 - e0) * (ts - t0) / (t1 - t0)


def bill(readings: Sequence[tuple[float, float]], segments: Sequence[Segment]) -> Bill:
    """Charge details for the energy ``readings`` show over ``segments`` (time-ordered,
    contiguous). The energy before the first segment's start is not billed."""
    if not readings or not segments:
        return Bill.empty(segments[0].tariff.id if segments else None)
    origin = Decimal(repr(energy_at(readings, segments[0].start_ts)))
    previous = Decimal("0.00")
    details = []
    for seg in segments:
        cumulative = Decimal(repr(energy_at(readings, seg.end_ts))) - origin
        rounded = max(round_half_up(cumulative, CENTI_KWH), previous)  # a register never falls
        power = rounded - previous
        previous = rounded
        p = seg.period
        details.append(
            ChargeDetail(
                seg.start_ts,
                seg.end_ts,
                p.type,
                p.elec_price,
                p.service_price,
                power,
                round_half_up(power * p.elec_price, FEN),
                round_half_up(power * p.service_price, FEN),
            )
        )
    elec = sum((d.elec_money for d in details), Decimal("0.00"))
    service = sum((d.service_money for d in details), Decimal("0.00"))
    return Bill(
        tuple(details),
        sum((d.power_kwh for d in details), Decimal("0.00")),
        elec,
        service,
        elec + service,
        segments[0].tariff.id,
    )


class RegisterTrail:
    """The register at the moments a bill needs — the session's first read, each tariff
    boundary, the latest read — kept from a stream of meter reads in constant memory.

    A boundary between two reads gets the linear interpolation between them; a boundary
    before the first read gets that read (nothing was measured earlier)."""

    def __init__(self, boundaries: Sequence[float]) -> None:
        self._pending = sorted(boundaries)
        self._points: list[tuple[float, float]] = []
        self._last: tuple[float, float] | None = None

    def feed(self, ts: float, energy_kwh: float) -> None:
        last = self._last
        if last is not None and ts <= last[0]:
            return  # a late or repeated read adds nothing
        if last is None:
            self._points.append((ts, energy_kwh))
        while self._pending and self._pending[0] <= ts:
            boundary = self._pending.pop(0)
            if last is None or boundary <= last[0]:
                continue  # before the first read: the first read stands for it
            self._points.append((boundary, energy_at((last, (ts, energy_kwh)), boundary)))
        self._last = (ts, energy_kwh)

    def add_boundaries(self, boundaries: Sequence[float]) -> None:
        """More boundaries (a tariff version pushed while the session runs): those after the
        latest read are kept like the first ones; earlier ones are past (nothing to keep)."""
        after = self._last[0] if self._last is not None else float("-inf")
        self._pending = sorted(set(self._pending) | {b for b in boundaries if b > after})

    def readings(self) -> list[tuple[float, float]]:
        """Time-ordered ``(ts, kWh)``: what :func:`bill` needs for the session so far."""
        if self._last is None:
            return []
        return self._points + ([self._last] if self._points[-1] != self._last else [])
