"""What the ledger says about a connector when the gateway starts: the session a previous run
left open (status or battery records, no ``charge_order``) and the last meter register it
read.

The model does not close an open session at once: for ``sampling.resume_window_s`` it watches
the bus, and either continues the session (same id, same start register) or closes it from the
meter register read at restart (:mod:`agent.station.resume`). This module turns the ledger
records of one connector into that summary; it does no I/O itself (the writer queries the
ledger).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from agent.records.envelope import Record, parse_iso_ts
from agent.station.session import MeterPoint

#: the ``event`` a resumed session leaves in the ledger (``details.session_id`` names it)
SESSION_RESUMED = "session_resumed"


@dataclass(frozen=True, slots=True)
class OpenSession:
    connector_id: str
    session_id: str
    start_ts: float
    last_ts: float
    """The last fact of the session the ledger holds (its latest record)."""
    meter_energy_start_kwh: float | None
    meter_energy_last_kwh: float | None
    energy_kwh: float
    soc_start_pct: int | None
    soc_last_pct: int | None
    vin: str | None
    charging_started_ts: float | None = None
    """The first battery record of the session (it is written when charging starts)."""
    elapsed_minutes: int | None = None
    """The last charging time a battery record holds (the charger's counter must not be behind
    it for the session to continue)."""
    meter_last_ts: float | None = None
    resumes: int = 0
    """How often earlier runs already continued this session after a restart."""
    unobserved_s: float = 0.0
    """Seconds of the session earlier runs did not see (the gateway was down)."""
    last_phase: str | None = None
    """The GB/T phase of its latest status record (``stopping``, ``statistics`` …)."""

    @property
    def stopped(self) -> bool:
        """It had stopped charging: no energy flowed after its last register."""
        return self.last_phase in ("stopping", "statistics")


@dataclass(frozen=True, slots=True)
class RestartFacts:
    """One connector at start: its open session (if any) and the last register reading the
    ledger holds (read while the connector was idle when no session is open)."""

    connector_id: str
    open: OpenSession | None = None
    older_open: tuple[OpenSession, ...] = ()
    """Earlier sessions without an order (a run stopped before closing them): closed at once."""
    last_register: MeterPoint | None = None

    @property
    def all_open(self) -> tuple[OpenSession, ...]:
        """Every session without an order, newest first."""
        return self.older_open if self.open is None else (self.open, *self.older_open)


def open_session(records: Iterable[Record]) -> OpenSession | None:
    """Summarise the ``connector_status`` and ``bms_process`` records of one session (in
    ledger order). Returns None when they hold no session."""
    first: Record | None = None
    start_ts: float | None = None
    last_ts = 0.0
    meter_start = meter_last = meter_last_ts = None
    energy = 0.0
    soc_start = soc_last = vin = charging_ts = elapsed = phase = None
    for r in records:
        body = r.body
        sid = body.get("session_id")
        if not isinstance(sid, str):
            continue
        if first is None:
            first = r
        ts = parse_iso_ts(r.ts)
        last_ts = max(last_ts, ts)
        if start_ts is None and isinstance(body.get("session_start_ts"), str):
            start_ts = parse_iso_ts(body["session_start_ts"])
        soc = body.get("soc_pct")
        if isinstance(soc, int):
            soc_start = soc if soc_start is None else soc_start
            soc_last = soc
        if r.kind == "connector_status":
            phase = body.get("phase") if isinstance(body.get("phase"), str) else phase
            charged = body.get("charge_energy_kwh")
            if isinstance(charged, int | float):
                energy = float(charged)
            register = body.get("energy_kwh")
            if isinstance(register, int | float):
                meter_last, meter_last_ts = float(register), ts
                if meter_start is None:
                    meter_start = float(register) - energy
        elif r.kind == "bms_process":
            charging_ts = ts if charging_ts is None else charging_ts
            if isinstance(body.get("elapsed_minutes"), int):
                elapsed = body["elapsed_minutes"]
            if body.get("vin"):
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
        charging_started_ts=charging_ts,
        elapsed_minutes=elapsed,
        meter_last_ts=meter_last_ts,
        last_phase=phase,
    )


def with_resumes(o: OpenSession, events: Iterable[Record]) -> OpenSession:
    """``o`` with the resumes (and unobserved seconds) earlier runs recorded for it."""
    resumes, unobserved = 0, 0.0
    for r in events:
        details = r.body.get("details") or {}
        if r.body.get("event") == SESSION_RESUMED and details.get("session_id") == o.session_id:
            resumes += 1
            gap = details.get("unobserved_s")
            unobserved += float(gap) if isinstance(gap, int | float) else 0.0
    if not resumes:
        return o
    return replace(o, resumes=resumes, unobserved_s=unobserved)


def last_register(
    statuses: Iterable[Record], samples: Iterable[Record], orders: Iterable[Record]
) -> MeterPoint | None:
    """The newest register reading among a connector's status records, meter samples and the
    end readings of its orders (an order's end reading is taken after its ``end_ts``)."""
    found: list[MeterPoint] = []
    for r in orders:
        end = r.body.get("meter_energy_end_kwh")
        if isinstance(end, int | float):
            found.append(MeterPoint(parse_iso_ts(r.body["end_ts"]), float(end)))
    for r in (*statuses, *samples):
        energy = r.body.get("energy_kwh")
        if isinstance(energy, int | float):
            found.append(MeterPoint(parse_iso_ts(r.ts), float(energy)))
    return max(found, key=lambda p: p.ts, default=None)
