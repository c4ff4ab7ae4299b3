"""Tariffs and the split of metered energy into charge details: boundaries (one, two, midnight,
a tariff change mid-session), the rounding rule (sums always exact), and every config rule."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.billing.split import bill, energy_at
from agent.billing.tariff import TariffBook
from agent.config.errors import ConfigError
from agent.config.load import parse_config
from tests.foundation.test_config import BASE, CEC

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
STD = """
[[tariffs]]
id = "std"
default = true
periods = [
  { start = "00:00", type = "valley", elec_price = 0.3100, service_price = 0.8000 },
  { start = "08:00", type = "flat",   elec_price = 0.6200, service_price = 0.8000 },
  { start = "10:00", type = "peak",   elec_price = 1.0200, service_price = 0.8000 },
]
"""


def config_with(tariffs: str, *, cec: bool = True) -> str:
    text = BASE.replace("SECRETS", "/nonexistent")
    if cec:
        text = text.replace("[[can_buses]]", CEC.split("[[tariffs]]")[0] + "[[can_buses]]", 1)
    return text.replace("[[can_buses]]", tariffs + "\n[[can_buses]]", 1)


def book(tariffs: str = STD) -> TariffBook:
    config = parse_config(config_with(tariffs))
    return TariffBook.from_config(config.tariffs, config.station.timezone)


def at(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ).timestamp()


def linear(start: float, end: float, kwh: float, step_s: float = 60.0) -> list[tuple[float, float]]:
    """Register reads every ``step_s`` for a constant power session of ``kwh``."""
    n = max(1, int((end - start) // step_s))
    reads = [(start + i * (end - start) / n, 1000.0 + kwh * i / n) for i in range(n + 1)]
    return reads


def test_one_boundary_splits_in_two() -> None:
    b = book()
    start, end = at("2026-12-03 07:30:00"), at("2026-12-03 08:30:00")
    result = bill(linear(start, end, 30.0), b.segments("std", start, end))
    assert [d.period_type for d in result.details] == ["valley", "flat"]
    assert [d.power_kwh for d in result.details] == [Decimal("15.00"), Decimal("15.00")]
    assert result.details[0].end_ts == at("2026-12-03 08:00:00")
    assert result.details[0].elec_money == Decimal("4.65")  # 15 × 0.31
    assert result.details[1].elec_money == Decimal("9.30")  # 15 × 0.62
    assert result.total_service_money == Decimal("24.00")
    assert result.total_money == Decimal("37.95")


def test_two_boundaries_and_midnight() -> None:
    b = book()
    start, end = at("2026-12-03 23:00:00"), at("2026-12-04 10:30:00")
    details = bill(linear(start, end, 115.0), b.segments("std", start, end)).details
    assert [d.period_type for d in details] == ["peak", "valley", "flat", "peak"]
    midnight = at("2026-12-04 00:00:00")
    assert details[0].end_ts == midnight and details[1].start_ts == midnight
    assert [d.power_kwh for d in details] == [
        Decimal("10.00"),
        Decimal("80.00"),
        Decimal("20.00"),
        Decimal("5.00"),
    ]


def test_interpolation_between_reads_around_a_boundary() -> None:
    reads = [(at("2026-12-03 07:59:00"), 100.0), (at("2026-12-03 08:01:00"), 101.0)]
    assert energy_at(reads, at("2026-12-03 08:00:00")) == pytest.approx(100.5)


def test_tariff_change_during_a_session() -> None:
    changed = (
        STD
        + """
[[tariffs]]
id = "std"
default = true
valid_from = "2026-12-03 12:00:00"
periods = [{ start = "00:00", type = "flat", elec_price = 0.5000, service_price = 0.6000 }]
"""
    )
    b = book(changed)
    start, end = at("2026-12-03 11:00:00"), at("2026-12-03 13:00:00")
    details = bill(linear(start, end, 20.0), b.segments("std", start, end)).details
    assert [(d.period_type, d.elec_price, d.service_price) for d in details] == [
        ("peak", Decimal("1.02"), Decimal("0.8")),
        ("flat", Decimal("0.5"), Decimal("0.6")),
    ]
    assert details[0].end_ts == at("2026-12-03 12:00:00")
    assert b.in_force("std", at("2026-12-04 09:00:00")).periods[0].elec_price == Decimal("0.5")


@settings(max_examples=300, deadline=None)
@given(
    start_min=st.integers(min_value=0, max_value=3 * 24 * 60),
    duration_min=st.integers(min_value=1, max_value=26 * 60),
    steps=st.lists(st.floats(min_value=0, max_value=3.0), min_size=1, max_size=60),
)
def test_rounding_sums_are_always_exact(
    start_min: int, duration_min: int, steps: list[float]
) -> None:
    b = book()
    start = at("2026-12-01 00:00:00") + start_min * 60
    end = start + duration_min * 60
    reads, energy = [], 5000.0
    for i, step in enumerate(steps):
        reads.append((start + (end - start) * i / max(1, len(steps) - 1), energy))
        energy += step
    result = bill(reads, b.segments("std", start, end))
    metered = Decimal(repr(energy_at(reads, end))) - Decimal(repr(energy_at(reads, start)))
    assert sum(d.power_kwh for d in result.details) == result.total_power_kwh
    assert result.total_power_kwh == metered.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert result.total_money == result.total_elec_money + result.total_service_money
    assert sum(d.elec_money for d in result.details) == result.total_elec_money
    for d in result.details:
        assert d.power_kwh >= 0
        assert d.elec_money == (d.power_kwh * d.elec_price).quantize(
            Decimal("0.01"), "ROUND_HALF_UP"
        )
    assert all(a.end_ts == b_.start_ts for a, b_ in itertools.pairwise(result.details))


def periods(*rows: str) -> str:
    return '[[tariffs]]\nid = "t"\ndefault = true\nperiods = [\n' + ",\n".join(rows) + "\n]\n"


P = '{{ start = "{}", type = "flat", elec_price = {}, service_price = 0.8 }}'


@pytest.mark.parametrize(
    ("tariffs", "expected"),
    [
        (
            periods(P.format("01:00", 0.5)),
            "tariffs[0].periods[0].start: the first period starts at 00:00",
        ),
        (
            periods(P.format("00:00", 0.5), P.format("09:00", 0.5), P.format("08:00", 0.5)),
            "tariffs[0].periods[2].start: '08:00' is not after '09:00'",
        ),
        (
            periods(P.format("00:00", 0.5), P.format("00:00", 0.5)),
            "tariffs[0].periods[1].start: '00:00' is not after",
        ),
        (periods(P.format("00:00", -0.1)), "tariffs[0].periods[0].elec_price: expected"),
        (periods(P.format("00:00", 10.5)), "tariffs[0].periods[0].elec_price: expected"),
        (
            periods(P.format("00:00", 0.12345)),
            "tariffs[0].periods[0].elec_price: at most 4 decimals",
        ),
        (
            periods(
                P.format("00:00", 0.5),
                *[P.format(f"{h:02d}:30", 0.5) for h in range(0, 24)],
                *[P.format(f"{h:02d}:45", 0.5) for h in range(0, 10)],
            ),
            "tariffs[0].periods: 35 periods, at most 32",
        ),
        (
            periods(P.format("24:00", 0.5)),
            "tariffs[0].periods[0].start: expected HH:MM or HH:MM:SS",
        ),
        (
            periods(P.format("00:00", 0.5)) + periods(P.format("00:00", 0.5)).replace('"t"', '"u"'),
            "tariffs: more than one default tariff (t, u)",
        ),
        (
            periods(P.format("00:00", 0.5)) + periods(P.format("00:00", 0.5)),
            "tariffs: tariff 't' has 2 entries with no valid_from",
        ),
        (
            periods(P.format("00:00", 0.5)).replace(
                "default = true\n", 'default = true\nvalid_from = "2026-02-30 00:00:00"\n'
            ),
            "tariffs[0].valid_from: not a date and time",
        ),
        (
            periods(P.format("00:00", 0.5)).replace('type = "flat"', 'type = "cheap"'),
            "tariffs[0].periods[0].type: expected one of 'sharp', 'peak', 'flat', 'valley'",
        ),
        (
            periods(P.format("00:00", 0.5)).replace("default = true\n", ""),
            "equipment[0].connectors[0].tariff: connector 'C1' has no tariff and no tariff is the default",
        ),
    ],
)
def test_broken_tariffs_name_the_key(tariffs: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(tariffs))
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_unknown_tariff_and_time_zone() -> None:
    text = config_with(STD).replace(
        'connector_id = "C1"\n', 'connector_id = "C1"\n  tariff = "night"\n', 1
    )
    text = text.replace('name = "Station"\n', 'name = "Station"\ntimezone = "Mars/Olympus"\n', 1)
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    problems = "\n".join(caught.value.problems)
    assert "equipment[0].connectors[0].tariff: no tariff 'night' (known: std)" in problems
    assert "station.timezone: unknown time zone 'Mars/Olympus'" in problems


def test_no_tariff_is_fine_without_the_city_platform() -> None:
    config = parse_config(config_with("", cec=False))
    assert config.tariffs == []


def test_register_trail_keeps_only_what_the_bill_needs() -> None:
    from agent.billing.split import RegisterTrail

    b = book()
    start, end = at("2026-12-03 07:00:00"), at("2026-12-03 11:00:00")
    segments = b.segments("std", start, end)
    trail = RegisterTrail([s.end_ts for s in segments[:-1]])
    reads = linear(start, end, 40.0, step_s=7.0)
    for ts, kwh in reads:
        trail.feed(ts, kwh)
    kept = trail.readings()
    assert len(kept) == 4  # first read, 08:00, 10:00, last read — of 2,057 reads
    assert bill(kept, segments) == bill(reads, segments)
    trail.feed(reads[10][0], 0.0)  # a late read is ignored
    assert trail.readings() == kept
