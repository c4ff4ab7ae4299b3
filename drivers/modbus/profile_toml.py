"""Parsing one Modbus meter profile's TOML data into a :class:`Profile`.

Never stops at the first mistake: every problem is collected (see
:mod:`drivers.modbus.profile_check`) and reported together, each naming the file, the key
path, what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from drivers.modbus.profile_check import Checker, ProfileError, type_name
from drivers.modbus.profile_model import (
    FUNCTIONS,
    IDENTITY,
    IDENTITY_TYPES,
    MAX_REGISTERS,
    ORDERS,
    TYPE_ALIASES,
    TYPES,
    Exponent,
    Flag,
    IdentityRegister,
    LinkSetting,
    Option,
    Profile,
    Quantity,
)
from drivers.modbus.profile_parts import (
    check_quantity_name,
    link_setting,
    named_tables,
    parse_link_alternatives,
    parse_meter_table,
    quantity_unit,
)

_TOP_KEYS: Final = ("meter", "link", "modbus", "quantities", "flags", "options", "identity")
_QUANTITY_KEYS: Final = (
    "address",
    "function",
    "type",
    "word_order",
    "byte_order",
    "scale",
    "unit",
    "exponent",
    "sentinel",
)


@dataclass(slots=True)
class _Defaults:
    function: int = 3
    type: str | None = None
    word_order: str = "big"
    byte_order: str = "big"


def _quantity(
    c: Checker, name: str, raw: Any, path: str, d: _Defaults, *, partial_of: Mapping | None = None
) -> Quantity | None:
    if not isinstance(raw, dict):
        c.add(path, "a table", type_name(raw))
        return None
    merged = dict(partial_of or {})
    merged.update(raw)
    before = len(c.problems)
    check_quantity_name(c, name, path)
    c.unknown(raw, _QUANTITY_KEYS, path)
    address = c.integer(merged, "address", f"{path}.address", None, 0, 0xFFFF)
    function = c.choice(merged, "function", f"{path}.function", d.function, FUNCTIONS)
    type_raw = merged.get("type", d.type)
    if isinstance(type_raw, str):
        type_raw = TYPE_ALIASES.get(type_raw, type_raw)
    typ = c.choice({"type": type_raw}, "type", f"{path}.type", None, TYPES)
    word = c.choice(merged, "word_order", f"{path}.word_order", d.word_order, ORDERS)
    byte = c.choice(merged, "byte_order", f"{path}.byte_order", d.byte_order, ORDERS)
    scale = c.number(merged, "scale", f"{path}.scale", 1.0)
    unit, factor = quantity_unit(c, name, merged, path)
    exponent = None
    if "exponent" in merged:
        exp_raw = merged["exponent"]
        if not isinstance(exp_raw, dict):
            c.add(f"{path}.exponent", "a table {address = …, offset = …}", type_name(exp_raw))
        else:
            c.unknown(exp_raw, ("address", "offset"), f"{path}.exponent")
            exponent = Exponent(
                c.integer(exp_raw, "address", f"{path}.exponent.address", None, 0, 0xFFFF),
                c.integer(exp_raw, "offset", f"{path}.exponent.offset", 0, -20, 20),
            )
            if typ == "f32" or typ == "f64":
                c.add(
                    f"{path}.exponent",
                    "an integer type with a decimal-point register",
                    f"type {typ}",
                )
    sentinel = None
    if "sentinel" in merged:
        limit = (1 << (16 * TYPES.get(typ, 1))) - 1
        sentinel = c.integer(merged, "sentinel", f"{path}.sentinel", None, 0, limit)
    if address + TYPES.get(typ, 1) - 1 > 0xFFFF:
        c.add(f"{path}.address", "a register range inside 0…0xFFFF", f"0x{address:04X}")
    if len(c.problems) > before:
        return None
    return Quantity(
        name, address, function, typ, word, byte, scale * factor, unit, exponent, sentinel
    )


def _flag(c: Checker, name: str, raw: Any, path: str, d: _Defaults) -> Flag | None:
    if not isinstance(raw, dict):
        c.add(path, "a table", type_name(raw))
        return None
    before = len(c.problems)
    if not name.isidentifier() or name != name.lower():
        c.add(path, "a lower-case name made of letters, digits and _", repr(name))
    c.unknown(raw, ("address", "function", "bit", "alarm", "description"), path)
    address = c.integer(raw, "address", f"{path}.address", None, 0, 0xFFFF)
    function = c.choice(raw, "function", f"{path}.function", d.function, FUNCTIONS)
    bit = None
    if "bit" in raw:
        bit = c.integer(raw, "bit", f"{path}.bit", None, 0, 15)
    alarm = c.boolean(raw, "alarm", f"{path}.alarm", False)
    description = c.text(raw, "description", f"{path}.description", "")
    if len(c.problems) > before:
        return None
    return Flag(name, address, function, bit, alarm, description)


def _identity(c: Checker, data: Mapping[str, Any], d: _Defaults) -> list[IdentityRegister]:
    """``[identity]``: registers that say which meter this is and how it is programmed."""
    out: list[IdentityRegister] = []
    for name, raw, path in named_tables(
        c, data, "identity", IDENTITY, "{address, type}", vendor_names=True
    ):
        before = len(c.problems)
        c.unknown(raw, ("address", "function", "type", "word_order"), path)
        address = c.integer(raw, "address", f"{path}.address", None, 0, 0xFFFF)
        function = c.choice(raw, "function", f"{path}.function", d.function, FUNCTIONS)
        typ_raw = raw.get("type", "u16")
        typ_raw = TYPE_ALIASES.get(typ_raw, typ_raw) if isinstance(typ_raw, str) else typ_raw
        typ = c.choice({"type": typ_raw}, "type", f"{path}.type", None, IDENTITY_TYPES)
        word = c.choice(raw, "word_order", f"{path}.word_order", d.word_order, ORDERS)
        if address + TYPES[typ] - 1 > 0xFFFF:
            c.add(f"{path}.address", "a register range inside 0…0xFFFF", f"0x{address:04X}")
        if len(c.problems) == before:
            out.append(IdentityRegister(name, address, function, typ, word))
    _check_overlaps(c, out, "identity")
    return out


def _check_overlaps(
    c: Checker, quantities: Iterable[Quantity | IdentityRegister], where: str
) -> None:
    taken: dict[tuple[int, int], str] = {}
    for q in quantities:
        for reg in range(q.address, q.address + q.count):
            other = taken.get((q.function, reg))
            if other is not None and other != q.name:
                c.add(
                    f"{where}.{q.name}.address",
                    f"registers not already used by {other}",
                    f"0x{q.address:04X}",
                )
                break
            taken[(q.function, reg)] = q.name


@dataclass(frozen=True, slots=True)
class _LinkPart:
    default: LinkSetting
    alternatives: tuple[LinkSetting, ...]
    unit_id: int


@dataclass(frozen=True, slots=True)
class _ModbusPart:
    defaults: _Defaults
    alt_function: int | None
    max_registers: int
    max_gap: int


def _parse_link(c: Checker, data: Mapping[str, Any]) -> _LinkPart:
    link = c.table(data, "link", "link", required=True)
    c.unknown(link, ("baud", "parity", "stopbits", "unit_id", "alternatives"), "link")
    default = link_setting(c, link, "link", None)
    unit_id = c.integer(link, "unit_id", "link.unit_id", 1, 1, 247)
    return _LinkPart(default, parse_link_alternatives(c, link, default), unit_id)


_MODBUS_KEYS: Final = (
    "function",
    "alt_function",
    "type",
    "word_order",
    "byte_order",
    "max_registers",
    "max_gap",
)


def _parse_modbus(c: Checker, data: Mapping[str, Any]) -> _ModbusPart:
    modbus = c.table(data, "modbus", "modbus", required=True)
    c.unknown(modbus, _MODBUS_KEYS, "modbus")
    d = _Defaults()
    d.function = c.choice(modbus, "function", "modbus.function", None, FUNCTIONS)
    alt_function = None
    if "alt_function" in modbus:
        alt_function = c.choice(modbus, "alt_function", "modbus.alt_function", None, FUNCTIONS)
        if alt_function == d.function:
            c.add(
                "modbus.alt_function",
                "the other function code than modbus.function",
                str(alt_function),
            )
    if "type" in modbus:
        t = modbus["type"]
        t = TYPE_ALIASES.get(t, t) if isinstance(t, str) else t
        d.type = c.choice({"type": t}, "type", "modbus.type", None, TYPES)
    d.word_order = c.choice(modbus, "word_order", "modbus.word_order", "big", ORDERS)
    d.byte_order = c.choice(modbus, "byte_order", "modbus.byte_order", "big", ORDERS)
    max_registers = c.integer(
        modbus, "max_registers", "modbus.max_registers", MAX_REGISTERS, 1, MAX_REGISTERS
    )
    max_gap = c.integer(modbus, "max_gap", "modbus.max_gap", 0, 0, 64)
    return _ModbusPart(d, alt_function, max_registers, max_gap)


def _parse_quantities(
    c: Checker, data: Mapping[str, Any], d: _Defaults
) -> tuple[list[Quantity], dict[str, dict]]:
    q_raw = c.table(data, "quantities", "quantities", required=True)
    if not q_raw and "quantities" in data and isinstance(data["quantities"], dict):
        c.add("quantities", "at least one quantity", "an empty table")
    quantities: list[Quantity] = []
    raw_by_name: dict[str, dict] = {}
    for qname, raw in q_raw.items():
        q = _quantity(c, qname, raw, f"quantities.{qname}", d)
        if q is not None:
            quantities.append(q)
            raw_by_name[qname] = raw
    _check_overlaps(c, quantities, "quantities")
    return quantities, raw_by_name


def _parse_flags(
    c: Checker, data: Mapping[str, Any], d: _Defaults, quantity_names: Iterable[str]
) -> list[Flag]:
    names = set(quantity_names)
    flags: list[Flag] = []
    for fname, raw in c.table(data, "flags", "flags", required=False).items():
        p = f"flags.{fname}"
        if fname in names:
            c.add(p, "a flag name different from every quantity name", repr(fname))
        f = _flag(c, fname, raw, p, d)
        if f is not None:
            flags.append(f)
    return flags


def _parse_options(
    c: Checker,
    data: Mapping[str, Any],
    d: _Defaults,
    quantities: list[Quantity],
    raw_by_name: Mapping[str, dict],
) -> list[Option]:
    options: list[Option] = []
    for oname, raw in c.table(data, "options", "options", required=False).items():
        p = f"options.{oname}"
        if not isinstance(raw, dict):
            c.add(p, "a table", type_name(raw))
            continue
        c.unknown(raw, ("description", "default", "choices"), p)
        odesc = c.text(raw, "description", f"{p}.description", None)
        choices_raw = c.table(raw, "choices", f"{p}.choices", required=True)
        if len(choices_raw) < 2 and "choices" in raw:
            c.add(f"{p}.choices", "at least two choices", f"{len(choices_raw)}")
        default = c.choice(raw, "default", f"{p}.default", None, tuple(choices_raw) or ("",))
        choices: dict[str, tuple[Quantity, ...]] = {}
        for cname, overrides in choices_raw.items():
            cp = f"{p}.choices.{cname}"
            if not isinstance(overrides, dict) or not overrides:
                c.add(cp, "a table of quantity overrides", type_name(overrides))
                continue
            picked: list[Quantity] = []
            for qname, qraw in overrides.items():
                q = _quantity(c, qname, qraw, f"{cp}.{qname}", d, partial_of=raw_by_name.get(qname))
                if q is not None:
                    picked.append(q)
            replaced = {q.name for q in picked}
            _check_overlaps(c, [q for q in quantities if q.name not in replaced] + picked, cp)
            choices[cname] = tuple(picked)
        options.append(Option(oname, odesc, default, choices))
    return options


def parse_profile(data: Mapping[str, Any], name: str, file: str) -> Profile:
    """Validate one profile's TOML data; raises :class:`ProfileError` with every problem."""
    c = Checker(file)
    c.unknown(data, _TOP_KEYS, "")
    meter = parse_meter_table(c, data)
    link = _parse_link(c, data)
    modbus = _parse_modbus(c, data)
    quantities, raw_by_name = _parse_quantities(c, data, modbus.defaults)
    raw_quantities = data.get("quantities")
    quantity_names = raw_quantities if isinstance(raw_quantities, dict) else {}
    flags = _parse_flags(c, data, modbus.defaults, quantity_names)
    options = _parse_options(c, data, modbus.defaults, quantities, raw_by_name)
    identity = _identity(c, data, modbus.defaults)
    if c.problems:
        raise ProfileError(c.problems)
    return Profile(
        name=name,
        path=file,
        vendor=meter.vendor,
        model=meter.model,
        kind=meter.kind,
        description=meter.description,
        channels=meter.channels,
        link=link.default,
        link_alternatives=link.alternatives,
        unit_id=link.unit_id,
        function=modbus.defaults.function,
        alt_function=modbus.alt_function,
        max_registers=modbus.max_registers,
        max_gap=modbus.max_gap,
        quantities=tuple(quantities),
        flags=tuple(flags),
        options=tuple(options),
        identity=tuple(identity),
    )
