"""Sessions left open by a gateway that stopped mid-session, recovered from the ledger.

After a restart the model cannot continue a session it no longer follows: the service finds
the last session of each connector in the ledger that has status or battery records but no
``charge_order``, and :meth:`agent.station.model.StationModel.startup` closes it as
*interrupted* with the last values the ledger holds. This module turns the ledger records of
one session into that summary; it does no I/O itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.records.envelope import Record, parse_iso_ts


@dataclass(frozen=True, slots=True)
class OpenSession:
    connector_id: str
    session_id: str
    start_ts: float
    last_ts: float
    meter_energy_start_kwh: float | None
    meter_energy_last_kwh: float | None
    energy_kwh: float
    soc_start_pct: int | None
    soc_last_pct: int | None
    vin: str | None


def open_session(records: Iterable[Record]) -> OpenSession | None:
    """Summarise the ``connector_status`` and ``bms_process`` records of one session (in
    ledger order). Returns None when they hold no session."""
    first: Record | None = None
    start_ts: float | None = None
    last_ts = 0.0
    meter_start = meter_last = None
    energy = 0.0
    soc_start = soc_last = None
    vin = None
    for r in records:
        body = r.body
        sid = body.get("session_id")
        if not isinstance(sid, str):
            continue
        if first is None:
            first = r
        last_ts = max(last_ts, parse_iso_ts(r.ts))
        if start_ts is None and isinstance(body.get("session_start_ts"), str):
            start_ts = parse_iso_ts(body["session_start_ts"])
        soc = body.get("soc_pct")
        if isinstance(soc, int):
            soc_start = soc if soc_start is None else soc_start
            soc_last = soc
        if r.kind == "connector_status":
            charged = body.get("charge_energy_kwh")
            if isinstance(charged, int | float):
                energy = float(charged)
            register = body.get("energy_kwh")
            if isinstance(register, int | float):
                meter_last = float(register)
                if meter_start is None:
                    meter_start = float(register) - energy
        elif r.kind == "bms_process" and body.get("vin"):
            vin = body["vin"]
    if first is None or first.connector_id is None:
        return None
    return OpenSession(
        connector_id=first.connector_id,
        session_id=first.body["session_id"],
        start_ts=start_ts if start_ts is not None else parse_iso_ts(first.ts),
        last_ts=last_ts,
        meter_energy_start_kwh=meter_start,
        meter_energy_last_kwh=meter_last,
        energy_kwh=energy,
        soc_start_pct=soc_start,
        soc_last_pct=soc_last,
        vin=vin,
    )
