"""``[[tariffs]]`` of evgw.toml (the technician's contract) and its cross-checks.

```toml
[[tariffs]]
id = "std"
default = true
valid_from = "2026-01-01 00:00:00"   # optional; entries sharing an id form its history
periods = [
  { start = "00:00", type = "valley", elec_price = 0.3100, service_price = 0.8000 },
  { start = "08:00", type = "flat",   elec_price = 0.6200, service_price = 0.8000 },
]
```
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Final, Literal

from agent.config.section import Meta, Section

if TYPE_CHECKING:
    from agent.config.schema import Config

PeriodType = Literal["sharp", "peak", "flat", "valley"]
"""尖 sharp, 峰 peak, 平 flat, 谷 valley."""

MAX_PRICE_YUAN_PER_KWH: Final = 10
MAX_PERIODS: Final = 32
"""T/CEC ``SumPeriod`` is 0–32."""
PRICE_DECIMALS: Final = 4

Price = Annotated[float, Meta(ge=0, le=MAX_PRICE_YUAN_PER_KWH)]
WallTime = Annotated[
    str,
    Meta(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        description="HH:MM or HH:MM:SS (00:00 to 23:59:59)",
    ),
]
LocalDateTime = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
        description="YYYY-MM-DD HH:MM:SS (station wall time)",
    ),
]


class TariffPeriodSection(Section, kw_only=True):
    start: WallTime
    type: PeriodType
    elec_price: Price
    """Electricity price, yuan per kWh, at most four decimals."""
    service_price: Price
    """Service fee, yuan per kWh, at most four decimals."""


class TariffSection(Section, kw_only=True):
    id: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="1-32 letters, digits, _ . -")
    ]
    default: bool = False
    """Used by connectors that name no tariff (at most one tariff id is the default)."""
    valid_from: LocalDateTime | None = None
    periods: Annotated[list[TariffPeriodSection], Meta(min_length=1)]


def seconds_of_day(start: str) -> int:
    parts = [int(p) for p in start.split(":")]
    hours, minutes, seconds = [*parts, 0][:3]
    return hours * 3600 + minutes * 60 + seconds


def price(value: float) -> Decimal:
    """The price as the technician wrote it (0.62 → Decimal('0.62'), never 0.6199999…)."""
    return Decimal(repr(value))


def too_precise(value: float) -> bool:
    exponent = price(value).as_tuple().exponent
    return isinstance(exponent, int) and exponent < -PRICE_DECIMALS


def check_periods(periods: list[TariffPeriodSection], where: str) -> list[str]:
    """Problems of one tariff entry's periods (also used for a pushed ``tariff`` command)."""
    problems = []
    if len(periods) > MAX_PERIODS:
        problems.append(f"{where}.periods: {len(periods)} periods, at most {MAX_PERIODS}")
    starts = [seconds_of_day(p.start) for p in periods]
    if starts and starts[0] != 0:
        problems.append(
            f"{where}.periods[0].start: the first period starts at 00:00, "
            f"found {periods[0].start!r}"
        )
    for i in range(1, len(starts)):
        if starts[i] <= starts[i - 1]:
            problems.append(
                f"{where}.periods[{i}].start: {periods[i].start!r} is not after "
                f"{periods[i - 1].start!r} (starts must be sorted and distinct)"
            )
    for i, p in enumerate(periods):
        for key in ("elec_price", "service_price"):
            if too_precise(getattr(p, key)):
                problems.append(
                    f"{where}.periods[{i}].{key}: at most {PRICE_DECIMALS} decimals, "
                    f"found {getattr(p, key)!r}"
                )
    return problems


def cross_check(config: Config, city_platform: bool) -> list[str]:
    """Problems of ``[[tariffs]]``, ``station.timezone`` and the connectors' ``tariff`` keys;
    with ``city_platform`` every connector must have a tariff (orders carry money)."""
    tariffs, timezone = config.tariffs, config.station.timezone
    problems = []
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"station.timezone: unknown time zone {timezone!r} (e.g. 'Asia/Shanghai')")
    for i, t in enumerate(tariffs):
        problems += check_periods(t.periods, f"tariffs[{i}]")
    defaults = sorted({t.id for t in tariffs if t.default})
    if len(defaults) > 1:
        problems.append(
            f"tariffs: more than one default tariff ({', '.join(defaults)}); at most one"
        )
    versions = Counter((t.id, t.valid_from) for t in tariffs)
    for (tid, since), n in versions.items():
        if n > 1:
            when = f"valid_from {since!r}" if since else "no valid_from"
            problems.append(f"tariffs: tariff {tid!r} has {n} entries with {when}")
    for i, t in enumerate(tariffs):
        if t.valid_from is not None:
            try:
                dt.datetime.strptime(t.valid_from, "%Y-%m-%d %H:%M:%S")
            except ValueError:
                problems.append(f"tariffs[{i}].valid_from: not a date and time: {t.valid_from!r}")
    known = sorted({t.id for t in tariffs})
    for e_i, e in enumerate(config.equipment):
        for c_i, c in enumerate(e.connectors):
            where = f"equipment[{e_i}].connectors[{c_i}].tariff"
            if c.tariff is not None and c.tariff not in known:
                problems.append(
                    f"{where}: no tariff {c.tariff!r} (known: {', '.join(known) or 'none'})"
                )
            elif c.tariff is None and not defaults and city_platform:
                problems.append(
                    f"{where}: connector {c.connector_id!r} has no tariff and no tariff is the "
                    "default; the city platform needs the money of every order"
                )
    return problems
