"""Energy audit of a finished order: do the meter, the charger (CSD) and the integral of the
charger's reported output (CCS voltage × current) agree?

Each comparison uses the tolerance ``max(energy_tolerance_kwh, energy_tolerance_pct × the
larger energy)`` (defaults 0.5 kWh and 2 %). A comparison that cannot be made (no meter, no
CSD, no CCS samples) is skipped, and the CCS integral is only used when CCS samples covered the
session. Findings use the project codes 9001–9003 (:mod:`agent.station.codes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config.schema import SafetySection
from agent.station.codes import (
    ENERGY_CHARGER_VS_CCS,
    ENERGY_METER_VS_CCS,
    ENERGY_METER_VS_CHARGER,
)


@dataclass(frozen=True, slots=True)
class AuditResult:
    code: int
    mismatch: bool
    message: str


def tolerance_kwh(a: float, b: float, safety: SafetySection) -> float:
    return max(safety.energy_tolerance_kwh, safety.energy_tolerance_pct / 100 * max(a, b))


def _compare(code: int, what: str, a: float, b: float, safety: SafetySection) -> AuditResult:
    tol = tolerance_kwh(a, b, safety)
    diff = abs(a - b)
    return AuditResult(
        code, diff > tol, f"{what}: {a:.3f} vs {b:.3f} kWh (diff {diff:.3f}, tolerance {tol:.3f})"
    )


def audit_energy(
    meter_kwh: float | None,
    charger_kwh: float | None,
    ccs_kwh: float | None,
    safety: SafetySection,
) -> list[AuditResult]:
    out: list[AuditResult] = []
    if meter_kwh is not None:
        if charger_kwh is not None:
            out.append(
                _compare(
                    ENERGY_METER_VS_CHARGER, "meter vs charger CSD", meter_kwh, charger_kwh, safety
                )
            )
        if ccs_kwh is not None:
            out.append(
                _compare(ENERGY_METER_VS_CCS, "meter vs CCS integral", meter_kwh, ccs_kwh, safety)
            )
    elif charger_kwh is not None and ccs_kwh is not None:
        out.append(
            _compare(
                ENERGY_CHARGER_VS_CCS, "charger CSD vs CCS integral", charger_kwh, ccs_kwh, safety
            )
        )
    return out
