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

from agent.billing.split import PRICE_STEP, Bill, RegisterTrail, bill
from agent.billing.tariff import TariffBook
from agent.records.bodies import ChargeDetailBody
from agent.records.envelope import iso_ts

if TYPE_CHECKING:
    from collections.abc import Iterable

    from agent.config.schema import Config, ConnectorSection
    from agent.station.connector import ConnectorModel
    from agent.station.session import Session


def tariff_book(config: Config) -> TariffBook | None:
    return (
        TariffBook.from_config(config.tariffs, config.station.timezone) if config.tariffs else None
    )


def connector_tariff(
    config: Config, connector: ConnectorSection
) -> tuple[TariffBook | None, str | None]:
    """The tariff book and the id of the tariff ``connector`` uses (None, None: no tariffs)."""
    book = tariff_book(config)
    return book, None if book is None else book.tariff_id_for(connector.tariff)


def tariff_text(
    book: TariffBook | None, tariff_id: str | None, start_ts: float, end_ts: float
) -> str | None:
    """The OCMF ``TT`` of a session: the text of each tariff version in force during it
    (``std: 00:00 valley 0.31+0.80; … CNY/kWh``), at most 250 characters and no ``|``."""
    if book is None or tariff_id is None:
        return None
    versions: list[str] = []
    for seg in book.segments(tariff_id, start_ts, max(end_ts, start_ts + 1.0)):
        text = seg.tariff.text()
        if seg.tariff.valid_from is not None:
            text += f" from {seg.tariff.valid_from:%Y-%m-%d %H:%M:%S}"
        if text not in versions:
            versions.append(text)
    return " / ".join(versions).replace("|", "/")[:250] or None


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


def money_so_far(
    book: TariffBook | None, tariff_id: str | None, s: Session | None, ts: float
) -> dict[str, object]:
    """The money fields of a ``connector_status`` body: the running session's bill up to
    ``ts`` (details and totals by the same rounding rule as its order), none when idle."""
    if s is None:
        return {}
    source = "meter" if s.meter_energy_kwh() is not None else "ccs_integral"
    money = order_money(session_bill(book, tariff_id, s, ts, s.energy_so_far_kwh(), source))
    if not money:
        return {}
    return {
        "elec_money_yuan": money["elec_money_yuan"],
        "service_money_yuan": money["service_money_yuan"],
        "charge_details": money["charge_details"],
    }


def order_money(b: Bill | None) -> dict[str, object]:
    """The money fields of a ``charge_order`` body from its bill (none without a tariff)."""
    if b is None:
        return {}
    details = tuple(
        ChargeDetailBody(
            start_ts=iso_ts(d.start_ts),
            end_ts=iso_ts(d.end_ts),
            elec_price_yuan_per_kwh=d.elec_price.quantize(PRICE_STEP),
            service_price_yuan_per_kwh=d.service_price.quantize(PRICE_STEP),
            energy_kwh=d.power_kwh,
            elec_money_yuan=d.elec_money,
            service_money_yuan=d.service_money,
        )
        for d in b.details
    )
    return {
        "tariff_id": b.tariff_id,
        "elec_money_yuan": b.total_elec_money,
        "service_money_yuan": b.total_service_money,
        "total_money_yuan": b.total_money,
        "charge_details": details,
    }
