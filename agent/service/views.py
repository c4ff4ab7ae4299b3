"""Read-only views of the live station for people: `evgw status` and the demo's screen."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from agent.records.envelope import iso_ts
from agent.station.codes import ALARM_CODES
from agent.station.connector import ConnectorModel
from agent.station.model import StationModel

STATUS_NAMES = {0: "offline", 1: "idle", 2: "occupied", 3: "charging", 4: "reserved", 255: "fault"}


def tariff_in_force(cm: ConnectorModel, now: float) -> str | None:
    """``std peak 1.0200+0.8000`` (the period in force, electricity + service yuan/kWh), with
    ``(from …)`` for a later version of the tariff; None without a tariff."""
    if cm.tariffs is None or cm.tariff_id is None:
        return None
    tariff = cm.tariffs.in_force(cm.tariff_id, now)
    if tariff is None:
        return f"{cm.tariff_id} (not yet in force)"
    local = dt.datetime.fromtimestamp(now, cm.tariffs.tz)
    second = local.hour * 3600 + local.minute * 60 + local.second
    period, _end = tariff.period_at(second)
    since = f" (from {tariff.valid_from})" if tariff.valid_from is not None else ""
    return f"{tariff.id} {period.type} {period.elec_price}+{period.service_price}{since}"


def connector_row(cm: ConnectorModel, now: float | None = None) -> dict[str, Any]:
    """One connector: T/CEC status, GB/T phase, SOC, power, meter energy, active alarms and
    the tariff in force."""
    s = cm.session
    reading = cm.reading
    power_w = reading.power_w if reading is not None else None
    if power_w is None and s is not None and s.ccs_seen:
        power_w = s.last_ccs_power_kw * 1000
    return {
        "connector": cm.connector_id,
        "status": STATUS_NAMES.get(cm.status, "-") if cm.status is not None else "-",
        "phase": s.phase if s is not None else None,
        "soc_pct": s.soc_last_pct if s is not None else None,
        "power_kw": round(power_w / 1000, 1) if power_w is not None else None,
        "energy_kwh": round(cm.last_energy_kwh, 2) if cm.last_energy_kwh is not None else None,
        "session": s.session_id if s is not None else None,
        "alarms": cm.alarms.active_codes(),
        "tariff": tariff_in_force(cm, time.time() if now is None else now),
    }


def connector_rows(model: StationModel) -> list[dict[str, Any]]:
    return [connector_row(cm) for cm in model.connectors.values()]


def station_alarm_rows(model: StationModel) -> list[dict[str, Any]]:
    """The station's own active alarms (no connector: a site input of the whole station, the
    main meter's grid and seal alarms, an input module's fault): code, meaning, since when
    and what raised it (``input.…``, ``seal.<meter>.…``)."""
    book = model.site.station.alarms
    rows = []
    for code in book.active_codes():
        raised_ts = book.raised_ts(code)
        known = ALARM_CODES.get(code)
        rows.append(
            {
                "code": code,
                "meaning": known.meaning if known is not None else None,
                "since": iso_ts(raised_ts) if raised_ts is not None else None,
                "causes": list(book.causes(code)),
            }
        )
    return rows
