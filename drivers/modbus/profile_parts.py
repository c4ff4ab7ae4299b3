"""The parts every profile kind reads the same way (Modbus and DL/T 645 meters, input
modules): ``[meter]``, a serial setting of ``[link]`` and its alternatives, a quantity's
name and unit. Each reports its mistakes to the file's :class:`Checker` by key path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.modbus.profile_check import Checker, type_name
from drivers.modbus.profile_model import BAUDS, KINDS, PARITIES, LinkSetting
from drivers.modbus.quantities import STANDARD, UNIT_CONVERSIONS, is_vendor_name


@dataclass(frozen=True, slots=True)
class MeterPart:
    vendor: str
    model: str
    kind: str
    description: str
    channels: int


def parse_meter_table(c: Checker, data: Mapping[str, Any]) -> MeterPart:
    """``[meter]``: vendor, model, kind (shared by every protocol's profiles)."""
    meter = c.table(data, "meter", "meter", required=True)
    c.unknown(meter, ("vendor", "model", "kind", "description", "channels"), "meter")
    return MeterPart(
        c.text(meter, "vendor", "meter.vendor", None),
        c.text(meter, "model", "meter.model", None),
        c.choice(meter, "kind", "meter.kind", None, KINDS),
        c.text(meter, "description", "meter.description", ""),
        c.integer(meter, "channels", "meter.channels", 1, 1, 8),
    )


def link_setting(
    c: Checker,
    table: Mapping[str, Any],
    path: str,
    default: LinkSetting | None,
    bauds: Sequence[int] = BAUDS,
) -> LinkSetting:
    """``baud``, ``parity``, ``stopbits`` of ``table``; ``default`` fills what is not given
    (``None``: the baud is required, 8N1 otherwise)."""
    return LinkSetting(
        c.choice(table, "baud", f"{path}.baud", default.baud if default else None, bauds),
        c.choice(table, "parity", f"{path}.parity", default.parity if default else "N", PARITIES),
        c.choice(table, "stopbits", f"{path}.stopbits", default.stopbits if default else 1, (1, 2)),
    )


def parse_link_alternatives(
    c: Checker, link: Mapping[str, Any], default: LinkSetting
) -> tuple[LinkSetting, ...]:
    """``link.alternatives``: other serial settings seen in the field, tried by the scan."""
    alternatives: list[LinkSetting] = []
    alt_raw = link.get("alternatives", [])
    if not isinstance(alt_raw, list):
        c.add("link.alternatives", "a list of {baud, parity, stopbits} tables", type_name(alt_raw))
        alt_raw = []
    for i, alt in enumerate(alt_raw):
        p = f"link.alternatives[{i}]"
        if not isinstance(alt, dict):
            c.add(p, "a table {baud, parity, stopbits}", type_name(alt))
            continue
        c.unknown(alt, ("baud", "parity", "stopbits"), p)
        alternatives.append(link_setting(c, alt, p, default))
    return tuple(alternatives)


def check_quantity_name(c: Checker, name: str, path: str) -> None:
    if not (name in STANDARD or is_vendor_name(name)):
        c.add(
            path, "a standard quantity name (see docs/METERS.md) or a vendor name x_…", repr(name)
        )


def quantity_unit(c: Checker, name: str, raw: Mapping[str, Any], path: str) -> tuple[str, float]:
    """``unit`` of quantity ``name``: (the unit, the factor to the name's standard unit);
    ``("", 1.0)`` after a problem."""
    unit = raw.get("unit")
    if not isinstance(unit, str) or unit not in UNIT_CONVERSIONS:
        found = "nothing (missing)" if unit is None else type_name(unit)
        c.add(f"{path}.unit", "one of " + ", ".join(repr(u) for u in UNIT_CONVERSIONS), found)
        return "", 1.0
    target, factor = UNIT_CONVERSIONS[unit]
    info = STANDARD.get(name)
    if info is not None and info.unit != target:
        c.add(
            f"{path}.unit",
            f"a unit convertible to {info.unit or 'no unit'!r} (the name {name!r} says so)",
            repr(unit),
        )
    return unit, factor


def named_tables(
    c: Checker,
    data: Mapping[str, Any],
    key: str,
    names: Collection[str],
    shape: str,
    *,
    vendor_names: bool = False,
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """The entries of the optional table ``key`` that have one of ``names`` (or, with
    ``vendor_names``, a vendor name ``x_…``) and are tables themselves (``shape`` says which
    keys): ``(name, table, key path)``; the others are reported."""
    for name, raw in c.table(data, key, key, required=False).items():
        path = f"{key}.{name}"
        if name not in names and not (vendor_names and is_vendor_name(name)):
            vendor = " or a vendor name x_…" if vendor_names else ""
            c.add(path, f"one of {', '.join(names)}{vendor}", repr(name))
        elif not isinstance(raw, dict):
            c.add(path, f"a table {shape}", type_name(raw))
        else:
            yield name, raw, path
