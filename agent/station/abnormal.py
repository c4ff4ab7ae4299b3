"""Abnormal transactions (#13 item 4): rules over a finished order, each with its project code
(9011–9015, type ``energy_audit``), its threshold in ``[safety]``, raised on the order that
breaks it and cleared by the connector's next order that passes it (docs/STATION.md).

- 9011: no metered energy (≤ 0) while the BMS reported more than ``no_energy_current_a``;
- 9012: shorter than ``short_session_s`` but more than ``short_session_energy_kwh``;
- 9013: a second order for a session whose order this connector wrote within
  ``duplicate_order_window_h`` (remembered across reloads, and across restarts from the
  ledger's newest orders);
- 9014: another meter than the one whose reads began the session (meter swapped);
- 9015: more energy than peak power × duration allows, by more than
  ``energy_above_power_pct`` plus ``energy_tolerance_kwh``.

A rule that cannot be judged (no BMS current, no meter, no duration) neither raises nor clears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from agent.records.bodies import ChargeOrderBody
from agent.records.envelope import parse_iso_ts
from agent.station import codes

if TYPE_CHECKING:
    from agent.config.schema import SafetySection
    from agent.records.envelope import Record
    from agent.station.connector import ConnectorModel
    from agent.station.session import Session

MAX_REMEMBERED_ORDERS: Final = 1000
"""Sessions whose orders the duplicate rule remembers per connector (the newest)."""


@dataclass(frozen=True, slots=True)
class Finding:
    code: int
    abnormal: bool
    message: str


@dataclass(slots=True)
class AbnormalWatch:
    """What the rules remember between orders of one connector: the orders written."""

    written: dict[str, float] = field(default_factory=dict)
    """Session id → end of its order (epoch s), the newest :data:`MAX_REMEMBERED_ORDERS`."""

    def remember(self, session_id: str, end_ts: str) -> None:
        """An order written (by this run, or by an earlier one: the ledger's at start)."""
        self.written.pop(session_id, None)
        self.written[session_id] = parse_iso_ts(end_ts)
        while len(self.written) > MAX_REMEMBERED_ORDERS:
            del self.written[next(iter(self.written))]

    def duplicate(self, order: ChargeOrderBody, window_h: float) -> Finding:
        end = parse_iso_ts(order.end_ts)
        before = self.written.get(order.session_id)
        self.remember(order.session_id, order.end_ts)
        twice = before is not None and abs(end - before) <= window_h * 3600.0
        return Finding(
            codes.ORDER_DUPLICATE,
            twice,
            f"session {order.session_id}: a second order (the first ended "
            f"{abs(end - (before or end)):.0f} s apart)"
            if twice
            else f"session {order.session_id}: one order",
        )


def _no_energy(s: Session, order: ChargeOrderBody, safety: SafetySection) -> Finding | None:
    if order.energy_source != "meter" or s.peak_bms_current_a == 0.0:
        return None
    bad = order.energy_kwh <= 0 and s.peak_bms_current_a > safety.no_energy_current_a
    return Finding(
        codes.ORDER_NO_ENERGY_WITH_CURRENT,
        bad,
        f"metered {order.energy_kwh:.3f} kWh while the BMS reported up to "
        f"{s.peak_bms_current_a:.1f} A (threshold {safety.no_energy_current_a:.1f} A)",
    )


def _short(order: ChargeOrderBody, safety: SafetySection) -> Finding | None:
    if order.duration_s is None:
        return None
    bad = (
        order.duration_s < safety.short_session_s
        and order.energy_kwh > safety.short_session_energy_kwh
    )
    return Finding(
        codes.ORDER_SHORT_WITH_ENERGY,
        bad,
        f"{order.duration_s} s with {order.energy_kwh:.3f} kWh (threshold "
        f"{safety.short_session_s:.0f} s, {safety.short_session_energy_kwh:.3f} kWh)",
    )


def _meter_swapped(s: Session, order: ChargeOrderBody) -> Finding | None:
    if order.meter_id is None or not s.meter_ids:
        return None
    first = s.meter_ids[0]
    bad = len(s.meter_ids) > 1 or order.meter_id != first
    seen = ", ".join(s.meter_ids)
    return Finding(
        codes.ORDER_METER_SWAPPED,
        bad,
        f"session began on meter {first}, order names meter {order.meter_id} (read: {seen})",
    )


def _above_power(order: ChargeOrderBody, safety: SafetySection) -> Finding | None:
    if order.duration_s is None or order.peak_power_kw <= 0:
        return None
    allowed = order.peak_power_kw * order.duration_s / 3600.0
    limit = allowed * (1 + safety.energy_above_power_pct / 100) + safety.energy_tolerance_kwh
    return Finding(
        codes.ORDER_ENERGY_ABOVE_POWER,
        order.energy_kwh > limit,
        f"{order.energy_kwh:.3f} kWh in {order.duration_s} s at a peak of "
        f"{order.peak_power_kw:.1f} kW (at most {limit:.3f} kWh)",
    )


def findings(
    watch: AbnormalWatch, s: Session, order: ChargeOrderBody, safety: SafetySection
) -> list[Finding]:
    """Every rule that can judge this order."""
    found = [
        _no_energy(s, order, safety),
        _short(order, safety),
        watch.duplicate(order, safety.duplicate_order_window_h),
        _meter_swapped(s, order),
        _above_power(order, safety),
    ]
    return [f for f in found if f is not None]


def alarms(c: ConnectorModel, ts: float, s: Session, order: ChargeOrderBody) -> list[Record]:
    """The alarm edges of the order's findings on connector ``c`` (device scope: they stand
    until an order passes the rule)."""
    out: list[Record] = []
    for f in findings(c.orders_seen, s, order, c.config.safety):
        cause = f"abnormal.{f.code}"
        message = f"session {order.session_id}: {f.message}"
        if f.abnormal:
            out += c.raise_alarm(ts, f.code, cause, message, "device")
        else:
            out += c.clear_alarm(ts, f.code, cause, message)
    return out
