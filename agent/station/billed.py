"""Billed against metered: the operator's billing system says what it charged for a session
(MQTT ``billed``), the gateway compares it with its metered order and its own money
(docs/BILLING.md, "The billing audit").

Pure functions of ledger records: an order (``charge_order``), the session's earlier audit
events, a billed figure and the time give the records to write — a ``billed_checked`` or
``billed_missing`` event (:class:`~agent.records.bodies.BillingEventBody`, found again by the
session's index after a restart) and the edges of alarms 9008 (energy), 9009 (money) and 9010
(no billed figure within the deadline). Every amount is a :class:`~decimal.Decimal`.

Energy agrees when ``|billed - metered| <= max(billed_energy_tolerance_kwh,
billed_energy_tolerance_pct % of metered)``; money when ``|billed - own| <=
billed_money_tolerance_yuan``. A later figure for the same session replaces the earlier one:
the alarms it raised clear when the new figure agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from agent.config.schema import SafetySection
from agent.records.bodies import BillingEventBody, ChargeOrderBody, body_to_dict, decode_body
from agent.records.envelope import Record, StoredRecord, iso_ts, parse_iso_ts
from agent.station import codes
from agent.station.alarms import AlarmEdge, alarm_body

CENT: Final = Decimal("0.01")
KWH_DECIMALS: Final = 3
"""A billed energy has at most this many decimals (the meter's 0.001 kWh)."""
YUAN_DECIMALS: Final = 2
"""A billed amount has at most this many decimals (fen)."""
MAX_BILLED_KWH: Final = Decimal(100_000)
MAX_BILLED_YUAN: Final = Decimal(1_000_000)


class BilledError(ValueError):
    """A billed figure that is not an amount the audit can take (the reason in words)."""


def amount(value: object, what: str, decimals: int, ceiling: Decimal) -> Decimal:
    """A billed figure as a Decimal: a decimal string or a JSON number, not negative, at most
    ``decimals`` decimals and ``ceiling``; :class:`BilledError` says why not."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BilledError(f"{what}: expected a decimal string or a number, found {value!r}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        number = Decimal(text)
    except ArithmeticError:
        raise BilledError(f"{what}: not a decimal number: {text[:40]!r}") from None
    if not number.is_finite():
        raise BilledError(f"{what}: not a finite number: {text[:40]!r}")
    if number < 0:
        raise BilledError(f"{what}: negative ({number})")
    if number > ceiling:
        raise BilledError(f"{what}: {number} is above {ceiling}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -decimals:
        raise BilledError(f"{what}: at most {decimals} decimals, found {text[:40]!r}")
    return number


@dataclass(frozen=True, slots=True)
class BilledFigure:
    billed_kwh: Decimal
    billed_yuan: Decimal
    command_id: str = ""
    """The MQTT command that carried it (empty when it came another way)."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    energy_kwh: Decimal
    energy_pct: Decimal
    money_yuan: Decimal

    @classmethod
    def of(cls, safety: SafetySection) -> Tolerance:
        return cls(
            Decimal(repr(safety.billed_energy_tolerance_kwh)),
            Decimal(repr(safety.billed_energy_tolerance_pct)),
            Decimal(repr(safety.billed_money_tolerance_yuan)),
        )

    def energy_for(self, metered_kwh: Decimal) -> Decimal:
        return max(self.energy_kwh, self.energy_pct / 100 * metered_kwh)


@dataclass(frozen=True, slots=True)
class AuditState:
    """Which of the session's billing alarms stand raised (from its earlier audit events)."""

    energy: bool = False
    money: bool = False
    missing: bool = False
    billed: bool = False
    """A billed figure has arrived (the missing check is done for this session)."""


def audit_state(events: Iterable[StoredRecord]) -> AuditState:
    """The state after the session's ``billed_checked`` / ``billed_missing`` events, in seq
    order."""
    state = AuditState()
    for record in sorted(events, key=lambda r: r.seq):
        body = decode_body("event", record.body)
        if not isinstance(body, BillingEventBody):
            continue
        if body.event == "billed_missing":
            state = AuditState(state.energy, state.money, True, state.billed)
        else:
            d = body.details
            state = AuditState(not d["energy_agrees"], not d["money_agrees"], False, True)
    return state


def order_figures(order: ChargeOrderBody) -> tuple[Decimal, Decimal]:
    """The order's metered energy (kWh, as the meter gave it) and its own money (yuan, to the
    fen: an order of an earlier version may hold ``12.3`` for ``12.30``)."""
    metered = Decimal(repr(order.energy_kwh))
    own = order.total_money_yuan.quantize(CENT, ROUND_HALF_UP)
    return metered, own


def _record(order: StoredRecord, kind: str, ts: float, body: Any) -> Record:
    return Record(
        kind=kind,
        ts=iso_ts(ts),
        station_id=order.station_id,
        equipment_id=order.equipment_id,
        connector_id=order.connector_id,
        body=body_to_dict(body),
    )


def _edge(order: StoredRecord, ts: float, code: int, raise_: bool, message: str) -> Record:
    session = order.body["session_id"]
    edge = AlarmEdge(
        ts,
        code,
        "raised" if raise_ else "cleared",
        message,
        (f"billed.{session}",) if raise_ else (),
    )
    return _record(order, "alarm", ts, alarm_body(edge, None))


def check_billed(
    order: StoredRecord,
    figure: BilledFigure,
    tolerance: Tolerance,
    before: AuditState,
    now: float,
) -> tuple[list[Record], dict[str, Any]]:
    """The records of one billed figure for ``order`` and the comparison (the command's
    reply): a ``billed_checked`` event, and the alarm edges that change."""
    body = decode_body("charge_order", order.body)
    metered, own = order_figures(body)
    energy_tol = tolerance.energy_for(metered)
    energy_diff = figure.billed_kwh - metered
    money_diff = figure.billed_yuan - own
    energy_ok = abs(energy_diff) <= energy_tol
    money_ok = abs(money_diff) <= tolerance.money_yuan
    details: dict[str, Any] = {
        "session_id": body.session_id,
        "order_seq": order.seq,
        "order_hash": order.hash,
        "command_id": figure.command_id,
        "metered_kwh": str(metered),
        "billed_kwh": str(figure.billed_kwh),
        "energy_diff_kwh": str(energy_diff),
        "energy_tolerance_kwh": str(energy_tol),
        "energy_agrees": energy_ok,
        "own_yuan": str(own),
        "billed_yuan": str(figure.billed_yuan),
        "money_diff_yuan": str(money_diff),
        "money_tolerance_yuan": str(tolerance.money_yuan),
        "money_agrees": money_ok,
    }
    energy_text = (
        f"session {body.session_id}: metered {metered} kWh, billed {figure.billed_kwh} kWh "
        f"(diff {energy_diff}, tolerance {energy_tol})"
    )
    money_text = (
        f"session {body.session_id}: own {own} yuan, billed {figure.billed_yuan} yuan "
        f"(diff {money_diff}, tolerance {tolerance.money_yuan})"
    )
    agree = energy_ok and money_ok
    event = BillingEventBody(
        event="billed_checked",
        session_id=body.session_id,
        message=(
            f"billed agrees with metered: {energy_text}; {money_text}"
            if agree
            else f"billed differs from metered: {energy_text}; {money_text}"
        )[:255],
        details=details,
    )
    out = [_record(order, "event", now, event)]
    if energy_ok == before.energy:  # a change: raise when it now differs, clear when it agrees
        out.append(_edge(order, now, codes.BILLED_ENERGY_MISMATCH, not energy_ok, energy_text))
    if money_ok == before.money:
        out.append(_edge(order, now, codes.BILLED_MONEY_MISMATCH, not money_ok, money_text))
    if before.missing:
        out.append(_edge(order, now, codes.BILLED_MISSING, False, "a billed figure arrived"))
    return out, {**details, "agrees": agree}


def billed_missing(order: StoredRecord, deadline_s: float, now: float) -> list[Record]:
    """The ``billed_missing`` event and alarm 9010 for an order with no billed figure."""
    body = decode_body("charge_order", order.body)
    waited_s = now - parse_iso_ts(body.end_ts)
    text = (
        f"session {body.session_id}: no billed figure {waited_s / 3600:.1f} h after the order "
        f"ended (deadline {deadline_s / 3600:.1f} h)"
    )
    event = BillingEventBody(
        event="billed_missing",
        session_id=body.session_id,
        message=text,
        details={"order_seq": order.seq, "deadline_s": deadline_s, "end_ts": body.end_ts},
    )
    return [
        _record(order, "event", now, event),
        _edge(order, now, codes.BILLED_MISSING, True, text),
    ]
