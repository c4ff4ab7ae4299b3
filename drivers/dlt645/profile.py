"""DL/T 645 meter profiles: one TOML file per meter model, in the Modbus profiles' style.

A file is a DL/T 645 profile when it has a ``[dlt645]`` table; it shares ``[meter]`` and
``[link]`` (defaults 2400 8E1, the protocol's custom) with the Modbus format, and the
checker that reports every problem at once. Instead of registers it names data
identifiers::

    [dlt645]
    edition = 2007
    [quantities]
    energy_import_kwh = { di = 0x00010000, format = "XXXXXX.XX", unit = "kWh" }
    power_w = { di = 0x02030000, format = "XX.XXXX", unit = "kW", signed = true }
    [identity]
    address = { di = 0x04000401, format = "NNNNNNNNNNNN" }
    [clock]
    date = 0x04000101
    time = 0x04000102
    [counters]
    meter_cover_open = { count = 0x03300D00, last = 0x03300D01 }

Shipped profiles live in ``profiles/`` beside this module; the technician's folders
(``[meter_profiles] dirs``) may hold both kinds. Format: ``docs/METERS.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from drivers.dlt645.data import Format, parse_format
from drivers.modbus.profile import ProfileSet, layer_profiles, read_profile_folder
from drivers.modbus.profile_check import Checker, ProfileError, read_toml, type_name
from drivers.modbus.profile_model import LinkSetting
from drivers.modbus.profile_parts import (
    check_quantity_name,
    link_setting,
    named_tables,
    parse_link_alternatives,
    parse_meter_table,
    quantity_unit,
)

COUNTERS: Final = (
    "meter_cover_open",
    "terminal_cover_open",
    "programmed",
    "cleared",
    "clock_set",
    "power_down",
)
"""The meter's event counters evgw watches (the electronic seal), in the order they are read."""
IDENTITY: Final = ("address", "serial", "firmware")
COUNT_FORMAT: Final = parse_format("XXXXXX")
RECORD_TIME: Final = parse_format("YYMMDDhhmmss")
"""An event record starts with the time the event began."""
EDITIONS: Final = (2007,)
BAUDS: Final = (1200, 2400, 4800, 9600)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value read by data identifier: ``scale`` turns the decoded number into the
    standard unit of ``name`` (``kW`` → ``W``: 1000)."""

    name: str
    di: int
    format: Format
    signed: bool = False
    scale: float = 1.0
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Counter:
    """An event counter and (optionally) its latest record, which holds the time the event
    began (``YYMMDDhhmmss``) at byte ``time_at`` (0 for most; the time-set record starts with
    the 4-byte operator code)."""

    name: str
    count_di: int
    last_di: int | None
    time_at: int = 0


@dataclass(frozen=True, slots=True)
class Clock:
    date_di: int
    time_di: int


@dataclass(frozen=True, slots=True)
class DltProfile:
    name: str
    path: str
    vendor: str
    model: str
    kind: str
    description: str
    link: LinkSetting
    link_alternatives: tuple[LinkSetting, ...]
    quantities: tuple[Reading, ...]
    identity: tuple[Reading, ...] = ()
    clock: Clock | None = None
    counters: tuple[Counter, ...] = ()
    edition: int = 2007

    protocol: ClassVar[str] = "dlt645"


def builtin_profiles_dir() -> Path:
    """The shipped DL/T 645 profiles: ``profiles/`` beside this module (package data)."""
    return Path(__file__).resolve().parent / "profiles"


def is_dlt645_profile(data: Mapping[str, Any]) -> bool:
    return "dlt645" in data


def _di(c: Checker, table: Mapping[str, Any], key: str, path: str) -> int:
    return c.integer(table, key, path, None, 0, 0xFFFFFFFF)


def _format(c: Checker, raw: Mapping[str, Any], path: str, default: str | None) -> Format:
    text = c.text(raw, "format", f"{path}.format", default)
    try:
        return parse_format(text)
    except ValueError as exc:
        if text:
            c.add(f"{path}.format", str(exc).split(", not ")[0], repr(text))
        return parse_format("XX")


def _quantity(c: Checker, name: str, raw: Any, path: str) -> Reading | None:
    if not isinstance(raw, dict):
        c.add(path, "a table {di, format, unit}", type_name(raw))
        return None
    before = len(c.problems)
    check_quantity_name(c, name, path)
    c.unknown(raw, ("di", "format", "unit", "signed"), path)
    di = _di(c, raw, "di", f"{path}.di")
    fmt = _format(c, raw, path, None)
    if fmt.kind != "number":
        c.add(f"{path}.format", "a number format like XXXXXX.XX", repr(fmt.pattern))
    signed = c.boolean(raw, "signed", f"{path}.signed", False)
    unit, factor = quantity_unit(c, name, raw, path)
    if len(c.problems) > before:
        return None
    return Reading(name, di, fmt, signed, factor, unit)


def _identity(c: Checker, data: Mapping[str, Any]) -> tuple[Reading, ...]:
    out: list[Reading] = []
    for name, raw, path in named_tables(c, data, "identity", IDENTITY, "{di, format}"):
        c.unknown(raw, ("di", "format"), path)
        fmt = _format(c, raw, path, "NNNNNNNNNNNN")
        if fmt.kind not in ("digits", "ascii"):
            c.add(f"{path}.format", "NNNN… (digits) or ascii", repr(fmt.pattern))
        out.append(Reading(name, _di(c, raw, "di", f"{path}.di"), fmt))
    return tuple(out)


def _clock(c: Checker, data: Mapping[str, Any]) -> Clock | None:
    if "clock" not in data:
        return None
    raw = c.table(data, "clock", "clock", required=True)
    c.unknown(raw, ("date", "time"), "clock")
    return Clock(_di(c, raw, "date", "clock.date"), _di(c, raw, "time", "clock.time"))


def _counters(c: Checker, data: Mapping[str, Any]) -> tuple[Counter, ...]:
    out: list[Counter] = []
    for name, raw, path in named_tables(c, data, "counters", COUNTERS, "{count, last}"):
        c.unknown(raw, ("count", "last", "time_at"), path)
        last = _di(c, raw, "last", f"{path}.last") if "last" in raw else None
        time_at = c.integer(raw, "time_at", f"{path}.time_at", 0, 0, 190)
        out.append(Counter(name, _di(c, raw, "count", f"{path}.count"), last, time_at))
    return tuple(sorted(out, key=lambda k: COUNTERS.index(k.name)))


def parse_dlt645_profile(data: Mapping[str, Any], name: str, file: str) -> DltProfile:
    """Validate one DL/T 645 profile's TOML data; :class:`ProfileError` lists every problem."""
    c = Checker(file)
    keys = ("meter", "link", "dlt645", "quantities", "identity", "clock", "counters")
    c.unknown(data, keys, "")
    meter = parse_meter_table(c, data)
    link = c.table(data, "link", "link", required=False)
    c.unknown(link, ("baud", "parity", "stopbits", "alternatives"), "link")
    default = link_setting(c, link, "link", LinkSetting(2400, "E", 1), BAUDS)
    alternatives = parse_link_alternatives(c, link, default)
    section = c.table(data, "dlt645", "dlt645", required=True)
    c.unknown(section, ("edition",), "dlt645")
    edition = c.choice(section, "edition", "dlt645.edition", 2007, EDITIONS)
    quantities: list[Reading] = []
    raw_q = c.table(data, "quantities", "quantities", required=True)
    for qname, raw in raw_q.items():
        q = _quantity(c, qname, raw, f"quantities.{qname}")
        if q is not None:
            quantities.append(q)
    identity, clock, counters = _identity(c, data), _clock(c, data), _counters(c, data)
    if c.problems:
        raise ProfileError(c.problems)
    return DltProfile(
        name=name,
        path=file,
        vendor=meter.vendor,
        model=meter.model,
        kind=meter.kind,
        description=meter.description,
        link=default,
        link_alternatives=alternatives,
        quantities=tuple(quantities),
        identity=identity,
        clock=clock,
        counters=counters,
        edition=edition,
    )


def load_dlt645_profile(path: str | os.PathLike[str]) -> DltProfile:
    p = Path(path)
    return parse_dlt645_profile(read_toml(p), p.stem, str(p))


def load_dlt645_profiles(
    folders: Sequence[str | os.PathLike[str]] = (), *, skip_missing: bool = True
) -> ProfileSet[DltProfile]:
    """The shipped DL/T 645 profiles overlaid with the technician's folders, in order."""
    shipped = read_profile_folder(builtin_profiles_dir(), parse_dlt645_profile, is_dlt645_profile)
    return layer_profiles(
        shipped, folders, parse_dlt645_profile, is_dlt645_profile, skip_missing=skip_missing
    )
