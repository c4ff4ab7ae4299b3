"""The one place that notices a meter's cumulative register going backwards.

A cumulative register (standard names ending in ``_kwh`` or ``_kvarh``) never decreases on a
healthy meter; when it does, the meter was reset, exchanged or tampered with. This is the
station's rule, not a driver's: it holds for any meter protocol (Modbus profiles, DL/T 645)
that reports readings with the standard names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_CUMULATIVE_SUFFIXES = ("_kwh", "_kvarh")
_EXTRA_PREFIX = "x_"  # project-specific quantities of a profile are not standard registers
_IMPORT = "energy_import_kwh"  # orders are measured on it: reported first


@dataclass(frozen=True, slots=True)
class RegisterDecrease:
    register: str
    previous: float
    current: float

    @property
    def message(self) -> str:
        return (
            f"{self.register} went back from {self.previous:g} to {self.current:g} "
            "(meter reset, replaced or tampered with)"
        )


class RegisterWatch:
    """The last value of every cumulative register of one meter."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def update(self, values: Mapping[str, float]) -> list[RegisterDecrease]:
        """Take a reading's values; the registers that went back since the last reading (the
        lower value becomes the new baseline), the import register first."""
        out: list[RegisterDecrease] = []
        for name in sorted(values, key=lambda n: n != _IMPORT):
            if not name.endswith(_CUMULATIVE_SUFFIXES) or name.startswith(_EXTRA_PREFIX):
                continue
            value = values[name]
            previous = self._last.get(name)
            self._last[name] = value
            if previous is not None and value < previous:
                out.append(RegisterDecrease(name, previous, value))
        return out
