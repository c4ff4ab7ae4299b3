"""What the digital-input drivers emit, as frozen values; ``ts`` is the caller's (POSIX s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

ROLES: Final = (
    "estop",
    "smoke_charger",
    "smoke_room",
    "door",
    "breaker_aux",
    "seal",
    "flood",
    "custom",
)
"""What a site input means; the station maps each role to its alarm (docs/METERS.md §10)."""


@dataclass(frozen=True, slots=True)
class InputChanged:
    """An input changed to ``active`` (after debouncing), or its first stable state after
    start (``initial``). ``connectors`` are the connectors it concerns; empty: the station."""

    kind: ClassVar[str] = "input_changed"
    input_id: str
    ts: float
    role: str
    active: bool
    connectors: tuple[str, ...] = ()
    initial: bool = False


@dataclass(frozen=True, slots=True)
class InputFault:
    """A digital-input source stopped answering (``active``) or answers again. While it is
    faulty its inputs keep their last state: silence is never a "door closed"."""

    kind: ClassVar[str] = "input_fault"
    source_id: str
    ts: float
    active: bool
    reason: str
    inputs: tuple[str, ...] = ()


InputEvent = InputChanged | InputFault
