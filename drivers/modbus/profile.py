"""Meter profiles: one TOML file per meter model, validated into frozen values.

A profile says how to read a meter: link defaults, function code, and for each standard
quantity the register address, data type, word/byte order, scale or exponent register,
and the unit the meter reports in. Disputed registers (see the spec) are ``options`` with
named ``choices``; the commissioning probe picks one on the real meter and
:meth:`Profile.resolve` applies the pick. The format is documented in ``docs/METERS.md``.

Loading never stops at the first mistake: every problem is collected and reported
together, each naming the file, the key path, what was expected and what was found.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from drivers.modbus.quantities import (
    STANDARD,
    UNIT_CONVERSIONS,
    is_vendor_name,
)

TYPES: Final[dict[str, int]] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "f32": 2,
    "u64": 4,
    "i64": 4,
    "f64": 4,
}
"""Data type -> number of 16-bit registers."""

TYPE_ALIASES: Final = {"s16": "i16", "s32": "i32", "s64": "i64"}
ORDERS: Final = ("big", "little")
PARITIES: Final = ("N", "E", "O")
BAUDS: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
KINDS: Final = ("ac1", "ac3", "dc")
FUNCTIONS: Final = (3, 4)
MAX_REGISTERS: Final = 125


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a profile file."""

    file: str
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: expected {self.expected}, found {self.found}"


class ProfileError(Exception):
    """A profile file (or directory) is invalid; :attr:`problems` lists every mistake."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in meter profile(s):\n{lines}")


@dataclass(frozen=True, slots=True)
class LinkSetting:
    baud: int
    parity: str
    stopbits: int

    def __str__(self) -> str:
        return f"{self.baud} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class Exponent:
    """A decimal-point register: value = raw × 10^(R[address] + offset)."""

    address: int
    offset: int


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    address: int
    function: int
    type: str
    word_order: str
    byte_order: str
    scale: float
    """Multiplier from the raw number to the standard unit (profile scale × unit conversion)."""
    unit: str
    """The unit the profile says the meter reports in (after ``scale``)."""
    exponent: Exponent | None = None
    sentinel: int | None = None
    """Raw value the meter uses for "not available"."""

    @property
    def count(self) -> int:
        return TYPES[self.type]


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    address: int
    function: int
    bit: int | None
    """Bit number 0–15; ``None`` means "the register is non-zero"."""
    alarm: bool
    description: str


@dataclass(frozen=True, slots=True)
class Option:
    """A disputed part of the register map with its alternatives (spec: open conflicts)."""

    name: str
    description: str
    default: str
    choices: Mapping[str, tuple[Quantity, ...]]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    path: str
    vendor: str
    model: str
    kind: str
    description: str
    channels: int
    link: LinkSetting
    link_alternatives: tuple[LinkSetting, ...]
    unit_id: int
    function: int
    alt_function: int | None
    max_registers: int
    max_gap: int
    quantities: tuple[Quantity, ...]
    flags: tuple[Flag, ...]
    options: tuple[Option, ...] = ()

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(name)

    def resolve(
        self, function: int | None = None, options: Mapping[str, str] | None = None
    ) -> ResolvedProfile:
        """Apply a function code and option choices (defaults where not given).

        Raises ``ValueError`` naming the bad option, choice or function code.
        """
        chosen: dict[str, str] = {}
        given = dict(options or {})
        for name in given:
            if not any(o.name == name for o in self.options):
                known = ", ".join(o.name for o in self.options) or "none"
                raise ValueError(f"profile {self.name!r} has no option {name!r} (options: {known})")
        by_name = {q.name: q for q in self.quantities}
        for opt in self.options:
            pick = given.get(opt.name, opt.default)
            if pick not in opt.choices:
                raise ValueError(
                    f"option {opt.name!r} of profile {self.name!r} has no choice {pick!r} "
                    f"(choices: {', '.join(opt.choices)})"
                )
            chosen[opt.name] = pick
            for q in opt.choices[pick]:
                by_name[q.name] = q
        fc = self.function if function is None else function
        if fc not in FUNCTIONS:
            raise ValueError(f"function code must be 3 or 4, not {fc}")
        quantities = tuple(by_name.values())
        flags = self.flags
        if fc != self.function:
            quantities = tuple(_with_function(q, self.function, fc) for q in quantities)
            flags = tuple(
                Flag(
                    f.name,
                    f.address,
                    fc if f.function == self.function else f.function,
                    f.bit,
                    f.alarm,
                    f.description,
                )
                for f in flags
            )
        return ResolvedProfile(self, fc, chosen, quantities, flags)


def _with_function(q: Quantity, old: int, new: int) -> Quantity:
    if q.function != old:
        return q
    return Quantity(
        q.name,
        q.address,
        new,
        q.type,
        q.word_order,
        q.byte_order,
        q.scale,
        q.unit,
        q.exponent,
        q.sentinel,
    )


@dataclass(frozen=True, slots=True)
class ResolvedProfile:
    """A profile with every choice made: exactly what the poller reads."""

    profile: Profile
    function: int
    options: Mapping[str, str]
    quantities: tuple[Quantity, ...]
    flags: tuple[Flag, ...]


# --------------------------------------------------------------------------- loading

_TOP_KEYS: Final = ("meter", "link", "modbus", "quantities", "flags", "options")
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


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class _Checker:
    """Collects problems for one file while reading its tables."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, key: str, expected: str, found: str) -> None:
        self.problems.append(Problem(self.file, key, expected, found))

    def table(self, parent: Mapping[str, Any], key: str, path: str, required: bool) -> dict:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "a table", "nothing (missing)")
            return {}
        if not isinstance(value, dict):
            self.add(path, "a table", _type_name(value))
            return {}
        return value

    def unknown(self, table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if path else key,
                    f"one of the keys {', '.join(allowed)}",
                    "an unknown key",
                )

    def text(self, table: Mapping[str, Any], key: str, path: str, default: str | None) -> str:
        value = table.get(key, default)
        if value is None:
            self.add(path, "text", "nothing (missing)")
            return ""
        if not isinstance(value, str):
            self.add(path, "text", _type_name(value))
            return ""
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: int | None,
        low: int,
        high: int,
    ) -> int:
        value = table.get(key, default)
        if value is None:
            self.add(path, f"an integer {low}…{high}", "nothing (missing)")
            return low
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(path, f"an integer {low}…{high}", _type_name(value))
            return low
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, path: str, default: Any, allowed: Iterable[Any]
    ) -> Any:
        allowed = tuple(allowed)
        value = table.get(key, default)
        if value is None or isinstance(value, bool) or value not in allowed:
            found = "nothing (missing)" if value is None else _type_name(value)
            self.add(path, "one of " + ", ".join(str(a) for a in allowed), found)
            return allowed[0]
        return value

    def number(self, table: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value == 0
        ):
            self.add(path, "a finite non-zero number", _type_name(value))
            return 1.0
        return float(value)

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.add(path, "true or false", _type_name(value))
            return default
        return value


@dataclass(slots=True)
class _Defaults:
    function: int = 3
    type: str | None = None
    word_order: str = "big"
    byte_order: str = "big"


def _quantity(
    c: _Checker, name: str, raw: Any, path: str, d: _Defaults, *, partial_of: Mapping | None = None
) -> Quantity | None:
    if not isinstance(raw, dict):
        c.add(path, "a table", _type_name(raw))
        return None
    merged = dict(partial_of or {})
    merged.update(raw)
    before = len(c.problems)
    if not (name in STANDARD or is_vendor_name(name)):
        c.add(
            path, "a standard quantity name (see docs/METERS.md) or a vendor name x_…", f"{name!r}"
        )
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
    unit = merged.get("unit")
    factor = 1.0
    if not isinstance(unit, str) or unit not in UNIT_CONVERSIONS:
        c.add(
            f"{path}.unit",
            "one of " + ", ".join(repr(u) for u in UNIT_CONVERSIONS),
            "nothing (missing)" if unit is None else _type_name(unit),
        )
        unit = ""
    else:
        target, factor = UNIT_CONVERSIONS[unit]
        info = STANDARD.get(name)
        if info is not None and info.unit != target:
            c.add(
                f"{path}.unit",
                f"a unit convertible to {info.unit or 'no unit'!r} (the name {name!r} says so)",
                repr(unit),
            )
    exponent = None
    if "exponent" in merged:
        exp_raw = merged["exponent"]
        if not isinstance(exp_raw, dict):
            c.add(f"{path}.exponent", "a table {address = …, offset = …}", _type_name(exp_raw))
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


def _flag(c: _Checker, name: str, raw: Any, path: str, d: _Defaults) -> Flag | None:
    if not isinstance(raw, dict):
        c.add(path, "a table", _type_name(raw))
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


def _check_overlaps(c: _Checker, quantities: Iterable[Quantity], where: str) -> None:
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


def parse_profile(data: Mapping[str, Any], name: str, file: str) -> Profile:
    """Validate one profile's TOML data; raises :class:`ProfileError` with every problem."""
    c = _Checker(file)
    c.unknown(data, _TOP_KEYS, "")
    meter = c.table(data, "meter", "meter", required=True)
    c.unknown(meter, ("vendor", "model", "kind", "description", "channels"), "meter")
    vendor = c.text(meter, "vendor", "meter.vendor", None)
    model = c.text(meter, "model", "meter.model", None)
    kind = c.choice(meter, "kind", "meter.kind", None, KINDS)
    description = c.text(meter, "description", "meter.description", "")
    channels = c.integer(meter, "channels", "meter.channels", 1, 1, 8)

    link = c.table(data, "link", "link", required=True)
    c.unknown(link, ("baud", "parity", "stopbits", "unit_id", "alternatives"), "link")
    default_link = LinkSetting(
        c.choice(link, "baud", "link.baud", None, BAUDS),
        c.choice(link, "parity", "link.parity", "N", PARITIES),
        c.choice(link, "stopbits", "link.stopbits", 1, (1, 2)),
    )
    unit_id = c.integer(link, "unit_id", "link.unit_id", 1, 1, 247)
    alternatives: list[LinkSetting] = []
    alt_raw = link.get("alternatives", [])
    if not isinstance(alt_raw, list):
        c.add("link.alternatives", "a list of {baud, parity, stopbits} tables", _type_name(alt_raw))
        alt_raw = []
    for i, alt in enumerate(alt_raw):
        p = f"link.alternatives[{i}]"
        if not isinstance(alt, dict):
            c.add(p, "a table {baud, parity, stopbits}", _type_name(alt))
            continue
        c.unknown(alt, ("baud", "parity", "stopbits"), p)
        alternatives.append(
            LinkSetting(
                c.choice(alt, "baud", f"{p}.baud", default_link.baud, BAUDS),
                c.choice(alt, "parity", f"{p}.parity", default_link.parity, PARITIES),
                c.choice(alt, "stopbits", f"{p}.stopbits", default_link.stopbits, (1, 2)),
            )
        )

    modbus = c.table(data, "modbus", "modbus", required=True)
    c.unknown(
        modbus,
        (
            "function",
            "alt_function",
            "type",
            "word_order",
            "byte_order",
            "max_registers",
            "max_gap",
        ),
        "modbus",
    )
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

    flags: list[Flag] = []
    for fname, raw in c.table(data, "flags", "flags", required=False).items():
        p = f"flags.{fname}"
        if fname in q_raw:
            c.add(p, "a flag name different from every quantity name", repr(fname))
        f = _flag(c, fname, raw, p, d)
        if f is not None:
            flags.append(f)

    options: list[Option] = []
    for oname, raw in c.table(data, "options", "options", required=False).items():
        p = f"options.{oname}"
        if not isinstance(raw, dict):
            c.add(p, "a table", _type_name(raw))
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
                c.add(cp, "a table of quantity overrides", _type_name(overrides))
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

    if c.problems:
        raise ProfileError(c.problems)
    return Profile(
        name=name,
        path=file,
        vendor=vendor,
        model=model,
        kind=kind,
        description=description,
        channels=channels,
        link=default_link,
        link_alternatives=tuple(alternatives),
        unit_id=unit_id,
        function=d.function,
        alt_function=alt_function,
        max_registers=max_registers,
        max_gap=max_gap,
        quantities=tuple(quantities),
        flags=tuple(flags),
        options=tuple(options),
    )


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Load and validate one profile file; its name is the file name without ``.toml``."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(
            [Problem(str(p), "(file)", "an existing profile file", "no such file")]
        ) from None
    except OSError as exc:
        raise ProfileError(
            [Problem(str(p), "(file)", "a readable file", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError:
        raise ProfileError([Problem(str(p), "(file)", "UTF-8 text", "binary data")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([Problem(str(p), "(syntax)", "valid TOML", str(exc))]) from None
    return parse_profile(data, p.stem, str(p))


class ProfileSet(Mapping[str, Profile]):
    """Every profile found in a directory, by name (iterates in name order)."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self._profiles = dict(sorted(profiles.items()))

    def __getitem__(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(self._profiles) or "none"
            raise KeyError(f"no meter profile {name!r} (known: {known})") from None

    def __iter__(self):
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


def load_profiles(source: str | os.PathLike[str] | None = None) -> ProfileSet:
    """Load every ``*.toml`` profile in a directory (default: the built-in profiles), or one
    file. All problems of all files are reported together in one :class:`ProfileError`."""
    root = builtin_profiles_dir() if source is None else Path(source)
    if root.is_file():
        prof = load_profile(root)
        return ProfileSet({prof.name: prof})
    if not root.is_dir():
        raise ProfileError(
            [
                Problem(
                    str(root), "(directory)", "a directory of *.toml profiles", "no such directory"
                )
            ]
        )
    problems: list[Problem] = []
    found: dict[str, Profile] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        try:
            prof = load_profile(entry)
        except ProfileError as exc:
            problems.extend(exc.problems)
            continue
        except tomllib.TOMLDecodeError as exc:
            problems.append(Problem(str(entry), "(syntax)", "valid TOML", str(exc)))
            continue
        found[prof.name] = prof
    if problems:
        raise ProfileError(problems)
    return ProfileSet(found)


def builtin_profiles_dir() -> Path:
    """The shipped profiles: ``config/meters`` of a source checkout, or the same folder
    installed as ``agent/resources/meters`` beside this package in a wheel (a path lookup,
    no import of ``agent``)."""
    top = Path(__file__).resolve().parents[2]
    checkout = top / "config" / "meters"
    return checkout if checkout.is_dir() else top / "agent" / "resources" / "meters"
