"""Meter profile values: what one meter model's TOML file says, as frozen dataclasses.

A profile says how to read a meter: link defaults, function code, and for each standard
quantity the register address, data type, word/byte order, scale or exponent register,
and the unit the meter reports in. Disputed registers (see the spec) are ``options`` with
named ``choices``; the commissioning probe picks one on the real meter and
:meth:`Profile.resolve` applies the pick. Parsing is in :mod:`drivers.modbus.profile_toml`,
finding the files in :mod:`drivers.modbus.profile`; the format is in ``docs/METERS.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

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
IDENTITY_TYPES: Final = ("u16", "i16", "u32", "i32", "u64", "i64")
IDENTITY: Final[dict[str, str]] = {
    "serial": "serial number",
    "firmware": "firmware (software) version",
    "ct_ratio": "current-transformer ratio",
    "pt_ratio": "voltage-transformer (PT) ratio",
    "rated_current_a": "rated primary current",
    "protocol": "protocol and parity setting",
    "baud_code": "baud-rate setting (the meter's code, not the baud)",
    "modbus_address": "Modbus address setting",
}
"""Names an ``[identity]`` register may have (or a vendor name ``x_…``), with what they are:
the registers that say which meter this is and how it is programmed."""


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
class IdentityRegister:
    """An identity or configuration register, read at every seal read (not every poll):
    a change of its value means the meter was exchanged or reprogrammed."""

    name: str
    address: int
    function: int
    type: str
    word_order: str

    @property
    def count(self) -> int:
        return TYPES[self.type]


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
    identity: tuple[IdentityRegister, ...] = ()

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
        flags, identity = self.flags, self.identity
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
            identity = tuple(
                IdentityRegister(
                    r.name,
                    r.address,
                    fc if r.function == self.function else r.function,
                    r.type,
                    r.word_order,
                )
                for r in identity
            )
        return ResolvedProfile(self, fc, chosen, quantities, flags, identity)


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
    identity: tuple[IdentityRegister, ...] = ()
