"""The building blocks of every config section: the frozen base and the constrained types.

Kept apart from :mod:`agent.config.schema` so that an uplink plug-in can declare its own
section (``agent/uplink/<name>/config.py``) without importing the whole schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Meta = msgspec.Meta

NonEmpty = Annotated[str, Meta(min_length=1)]
Port = Annotated[int, Meta(ge=1, le=65535)]
UnitId = Annotated[int, Meta(ge=1, le=247)]
Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0, le=100)]
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
CanBitrate = Literal[125000, 250000, 500000, 1000000]
OperatorId = Annotated[
    str, Meta(pattern=r"^[0-9A-Za-z]{9}$", description="exactly 9 letters or digits")
]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config section: immutable, unknown keys rejected."""


class Secret(str):
    """A string that never shows itself in ``repr``/logs."""

    def __repr__(self) -> str:
        return "Secret('***')"


def default_of(section: type[msgspec.Struct], name: str) -> Any:
    """The default of ``section``'s field ``name``: settings objects built from a section take
    their defaults from here, so a default is written once."""
    for field in msgspec.structs.fields(section):
        if field.name == name:
            if field.default is not msgspec.NODEFAULT:
                return field.default
            if field.default_factory is not msgspec.NODEFAULT:
                return field.default_factory()
    raise KeyError(f"{section.__name__}.{name} has no default")
