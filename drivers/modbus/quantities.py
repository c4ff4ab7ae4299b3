"""The fixed vocabulary of meter quantities, their units and their physical limits.

The rest of the system relies on these names (``energy_import_kwh``, ``power_w`` …), so a
profile may only use them, or a vendor-specific name starting with ``x_``. A profile states
the unit the meter reports in (``kW``, ``Wh`` …); the loader converts to the standard unit
named by the quantity's suffix, so ``power_w`` is always watts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class QuantityInfo:
    """What a standard quantity means: its unit and the values that are physically possible."""

    unit: str
    low: float
    high: float
    description: str


_PHASES: Final = ("l1", "l2", "l3")
_LINES: Final = ("l1_l2", "l2_l3", "l3_l1")

_V = (-1.0, 1500.0)
_A = (-10_000.0, 10_000.0)
_W = (-10e6, 10e6)
_PF = (-1.001, 1.001)
_KWH = (0.0, 1e8)


def _build() -> dict[str, QuantityInfo]:
    q: dict[str, QuantityInfo] = {
        "energy_import_kwh": QuantityInfo("kWh", *_KWH, "imported (forward) active energy"),
        "energy_export_kwh": QuantityInfo("kWh", *_KWH, "exported (reverse) active energy"),
        "energy_total_kwh": QuantityInfo("kWh", *_KWH, "combined active energy"),
        "reactive_energy_import_kvarh": QuantityInfo("kvarh", *_KWH, "forward reactive energy"),
        "reactive_energy_export_kvarh": QuantityInfo("kvarh", *_KWH, "reverse reactive energy"),
        "power_w": QuantityInfo("W", *_W, "active power, total (negative = export)"),
        "reactive_power_var": QuantityInfo("var", *_W, "reactive power, total"),
        "apparent_power_va": QuantityInfo("VA", *_W, "apparent power, total"),
        "voltage_v": QuantityInfo("V", *_V, "voltage (single-phase or DC)"),
        "current_a": QuantityInfo("A", *_A, "current (single-phase or DC)"),
        "power_factor": QuantityInfo("", *_PF, "power factor, total"),
        "frequency_hz": QuantityInfo("Hz", 0.0, 70.0, "grid frequency"),
        "temperature_c": QuantityInfo("°C", -60.0, 150.0, "meter internal temperature"),
    }
    for p in _PHASES:
        q[f"voltage_{p}_v"] = QuantityInfo("V", *_V, f"phase voltage {p.upper()}-N")
        q[f"current_{p}_a"] = QuantityInfo("A", *_A, f"phase current {p.upper()}")
        q[f"power_{p}_w"] = QuantityInfo("W", *_W, f"active power {p.upper()}")
        q[f"reactive_power_{p}_var"] = QuantityInfo("var", *_W, f"reactive power {p.upper()}")
        q[f"power_factor_{p}"] = QuantityInfo("", *_PF, f"power factor {p.upper()}")
    for ln in _LINES:
        label = ln.upper().replace("_", "-")
        q[f"voltage_{ln}_v"] = QuantityInfo("V", *_V, f"line voltage {label}")
    return q


STANDARD: Final[dict[str, QuantityInfo]] = _build()
"""Every standard quantity name, with its unit and physical limits."""

ENERGY_NAMES: Final = tuple(n for n in STANDARD if n.endswith(("_kwh", "_kvarh")))
"""Cumulative registers: they never decrease on a healthy meter."""

# unit as the meter reports it -> (standard unit, factor to multiply by)
UNIT_CONVERSIONS: Final[dict[str, tuple[str, float]]] = {
    "V": ("V", 1.0),
    "kV": ("V", 1000.0),
    "mV": ("V", 0.001),
    "A": ("A", 1.0),
    "mA": ("A", 0.001),
    "kA": ("A", 1000.0),
    "W": ("W", 1.0),
    "kW": ("W", 1000.0),
    "MW": ("W", 1e6),
    "var": ("var", 1.0),
    "kvar": ("var", 1000.0),
    "VA": ("VA", 1.0),
    "kVA": ("VA", 1000.0),
    "Wh": ("kWh", 0.001),
    "kWh": ("kWh", 1.0),
    "MWh": ("kWh", 1000.0),
    "varh": ("kvarh", 0.001),
    "kvarh": ("kvarh", 1.0),
    "Hz": ("Hz", 1.0),
    "°C": ("°C", 1.0),
    "degC": ("°C", 1.0),
    "C": ("°C", 1.0),
    "": ("", 1.0),
}


def is_vendor_name(name: str) -> bool:
    """``x_…`` names are vendor-specific quantities outside the standard vocabulary."""
    return name.startswith("x_") and len(name) > 2


def physical_problem(name: str, value: float) -> str | None:
    """Why ``value`` cannot be a real reading of ``name`` (``None`` when it can be).

    NaN and infinity are never real; standard quantities must also lie within their
    physical limits (frequency is either 0, meaning no voltage, or 40–70 Hz).
    """
    if math.isnan(value):
        return "not a number (NaN)"
    if math.isinf(value):
        return "infinite value"
    info = STANDARD.get(name)
    if info is None:
        return None
    if not info.low <= value <= info.high:
        return f"{value:g} {info.unit} is outside the physical range {info.low:g}…{info.high:g}"
    if name == "frequency_hz" and 0.0 < value < 40.0:
        return f"{value:g} Hz is not a grid frequency (expected 0 or 40…70 Hz)"
    return None
