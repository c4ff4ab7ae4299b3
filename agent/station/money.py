"""The money of a session: its tariff, the meter register at each tariff boundary, the bill.

The connector keeps, per session, a :class:`agent.billing.split.RegisterTrail` fed with every
meter read, so the register is known at each boundary (read there or interpolated between the
two reads around it) in constant memory. The order's bill splits the same energy the order
states: with a meter, the register from the session's start read to its end read; without,
the charger's counter or the V×I integral spread over the session's time (``energy_source``
says which).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.billing.split import Bill, RegisterTrail, bill
from agent.billing.tariff import TariffBook
from agent.records.bodies import ChargeDetailBody
from agent.records.envelope import iso_ts

if TYPE_CHECKING:
    from collections.abc import Iterable

    from agent.config.schema import Config
    from agent.station.connector import ConnectorModel
    from agent.station.session import Session


def tariff_book(config: Config) -> TariffBook | None:
    return (
        TariffBook.from_config(config.tariffs, config.station.timezone) if config.tariffs else None
    )


def apply_book(connectors: Iterable[ConnectorModel], book: TariffBook, horizon_h: float) -> None:
    """A new tariff book for every connector (a version pushed by the operator): a running
    session's trail learns the boundaries the new version adds, so its bill splits there."""
    for c in connectors:
        c.tariffs = book
        s = c.session
        if s is not None and s.trail is not None and c.tariff_id is not None:
            end = s.start_ts + horizon_h * 3600.0
            s.trail.add_boundaries(
                [seg.end_ts for seg in book.segments(c.tariff_id, s.start_ts, end)]
            )


def note_register(
    book: TariffBook | None,
    tariff_id: str | None,
    s: Session,
    ts: float,
    kwh: float,
    horizon_h: float,
) -> None:
    """Feed one meter read of the session to its trail (made at the first read)."""
    if book is None or tariff_id is None:
        return
    if s.trail is None:
        end = s.start_ts + horizon_h * 3600.0
        s.trail = RegisterTrail([seg.end_ts for seg in book.segments(tariff_id, s.start_ts, end)])
    s.trail.feed(ts, kwh)


def session_bill(
    book: TariffBook | None,
    tariff_id: str | None,
    s: Session,
    end_ts: float,
    energy_kwh: float,
    source: str,
) -> Bill | None:
    """The bill of a session ending at ``end_ts`` (None without a tariff)."""
    if book is None or tariff_id is None:
        return None
    end = max(end_ts, s.start_ts + 1.0)
    segments = book.segments(tariff_id, s.start_ts, end)
    if source == "meter" and s.meter_start is not None and s.meter_last is not None:
        # the order's registers stand at its start and end (its energy is their difference,
        # wherever the two reads fell); the boundaries between come from the reads
        inside = [
            (t, e) for t, e in (s.trail.readings() if s.trail else []) if s.start_ts < t < end
        ]
        readings = [(s.start_ts, s.meter_start.energy_kwh), *inside, (end, s.meter_last.energy_kwh)]
    else:
        readings = [(s.start_ts, 0.0), (end, energy_kwh)]
    return bill(readings, segments)


def order_money(b: Bill | None) -> dict[str, object]:
    """The money fields of a ``charge_order`` body from its bill (none without a tariff)."""
    if b is None:
        return {}
    details = tuple(
        ChargeDetailBody(
            start_ts=iso_ts(d.start_ts),
            end_ts=iso_ts(d.end_ts),
            elec_price_yuan_per_kwh=float(d.elec_price),
            service_price_yuan_per_kwh=float(d.service_price),
            energy_kwh=float(d.power_kwh),
            elec_money_yuan=float(d.elec_money),
            service_money_yuan=float(d.service_money),
        )
        for d in b.details
    )
    return {
        "tariff_id": b.tariff_id,
        "elec_money_yuan": float(b.total_elec_money),
        "service_money_yuan": float(b.total_service_money),
        "total_money_yuan": float(b.total_money),
        "charge_details": details,
    }
