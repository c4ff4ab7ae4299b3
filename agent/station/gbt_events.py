"""What each GB/T 27930 tracker event does to a connector: its session, battery records,
alarms and fault state. :meth:`agent.station.connector.ConnectorModel.feed_bms` dispatches
here; every function returns the records to write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.records.envelope import Record
from agent.station import codes, resume
from agent.station.bms_process import bms_body
from agent.station.status import CHARGING
from drivers.gbt27930.events import (
    ChargingPaused,
    ChargingResumed,
    ChargingSample,
    ChargingStarted,
    CommunicationLost,
    ErrorReported,
    ParametersReceived,
    Phase,
    PhaseChanged,
    SessionClosed,
    SessionEnded,
    SessionStarted,
    StopRequested,
    VehicleIdentified,
)
from drivers.gbt27930.messages import BST, CST

if TYPE_CHECKING:
    from agent.station.connector import ConnectorModel


def on_started(c: ConnectorModel, ev: SessionStarted) -> list[Record]:
    out: list[Record] = []
    if c.pending is not None:
        out += c.finalize(ev.ts)
    if c.session is not None:
        out += c.close_session(ev.ts, "restarted_without_end")
    s = c.open_session(ev.ts)
    s.tracker_session = ev.session_id
    s.phase = ev.phase.value
    resume.late_start(c, s, ev)
    return out


def on_phase(c: ConnectorModel, ev: PhaseChanged) -> list[Record]:
    s = c.session_for(ev)
    if s is None:
        return []
    s.phase = ev.phase.value
    out: list[Record] = []
    if ev.reason == "reconnect" and c.fault:
        c.fault = False
        out += c.alarm_records(c.alarms.clear_cause(ev.ts, "bem", "reconnected"))
        out += c.alarm_records(c.alarms.clear_cause(ev.ts, "cem", "reconnected"))
    if ev.phase is Phase.CHARGING:
        s.bms_due = True
        if s.charging_started_ts is None:
            s.charging_started_ts = ev.ts
    return out


def on_facts(c: ConnectorModel, ev: VehicleIdentified | ParametersReceived) -> list[Record]:
    s = c.session_for(ev)
    if s is not None:
        s.gbt = ev.facts
    return []


def on_charging(c: ConnectorModel, ev: ChargingStarted) -> list[Record]:
    s = c.session_for(ev)
    if s is not None:
        s.phase = Phase.CHARGING.value
        s.bms_due = True
        if s.charging_started_ts is None:
            s.charging_started_ts = ev.ts
    return []


def on_sample(c: ConnectorModel, ev: ChargingSample) -> list[Record]:
    s = c.session_for(ev)
    if s is None:
        return []
    out: list[Record] = []
    s.last_sample, s.last_sample_ts = ev, ev.ts
    if ev.timestamps_constant:
        s.timestamps_constant = True
    before = s.ccs_energy_kwh
    s.integrate(ev.ts, ev.charger_voltage_v, ev.charger_current_a)
    s.peak_bms_current_a = max(s.peak_bms_current_a, abs(ev.bms_current_a or 0.0))
    if c.meter is None:
        c.stats.add_energy(c.connector_id, s.ccs_energy_kwh - before)
    if ev.soc_pct is not None:
        if s.soc_start_pct is None:
            s.soc_start_pct = ev.soc_pct
        if s.soc_last_pct is not None and ev.soc_pct != s.soc_last_pct:
            s.bms_due = True
        s.soc_last_pct = ev.soc_pct
    for cause in ("rule.bms_timeout", "comm.lost"):
        out += c.alarm_records(c.alarms.clear_cause(ev.ts, cause, "battery data again"))
    for f in s.safety.evaluate(ev, s.bcp):
        if f.active:
            out += c.raise_alarm(ev.ts, f.code, f.cause, f.message)
        else:
            out += c.clear_alarm(ev.ts, f.code, f.cause, f.message)
    body = bms_body(s, ev, CHARGING)
    if body is not None:
        s.last_bms = body
        interval = c.config.sampling.bms_process_interval_s
        if (
            s.bms_due
            or s.last_bms_emit_ts is None
            or ev.ts - s.last_bms_emit_ts >= interval
            or ev.timestamps_constant  # no time to wait for: one per message cycle
        ):
            s.bms_due = False
            s.last_bms_emit_ts = ev.ts
            out.append(c.record("bms_process", ev.ts, body))
    out += c.heartbeat(ev.ts)
    return out


def on_pause(c: ConnectorModel, ev: ChargingPaused | ChargingResumed) -> list[Record]:
    s = c.session_for(ev)
    if s is not None:
        s.paused = isinstance(ev, ChargingPaused)
        if not s.paused:
            s.bms_due = True
            s.last_sample_ts = ev.ts
    return []


def on_stop(c: ConnectorModel, ev: StopRequested) -> list[Record]:
    s = c.session_for(ev)
    if s is None:
        return []
    s.gbt = ev.facts
    msg = ev.message
    out: list[Record] = []
    if isinstance(msg, BST):
        coded = {
            n: codes.BST_CODES[n]
            for n in codes.active_fields(msg, codes.BST_FIELDS)
            if n in codes.BST_CODES
        }
        faulty = any(
            n.startswith(("fault_", "error_")) for n in codes.active_fields(msg, codes.BST_FIELDS)
        )
        prefix = "bst"
    else:
        assert isinstance(msg, CST)
        active = codes.active_fields(msg, codes.CST_FIELDS)
        coded = {n: codes.CST_CODES[n] for n in active if n in codes.CST_CODES}
        faulty = any(n.startswith(("fault_", "error_")) or n == "stop_fault" for n in active)
        prefix = "cst"
    for name, code in coded.items():
        out += c.raise_alarm(ev.ts, code, f"{prefix}.{name}", f"{prefix.upper()} {name}")
    if faulty:
        c.fault = True
    return out


def on_ended(c: ConnectorModel, ev: SessionEnded) -> list[Record]:
    s = c.session_for(ev)
    if s is not None:
        s.gbt = ev.facts
    if s is not None and ev.soc_end_pct is not None:
        s.soc_last_pct = ev.soc_end_pct  # the BMS's own figure (BSD) wins
    return []


def on_error(c: ConnectorModel, ev: ErrorReported) -> list[Record]:
    s = c.session_for(ev)
    if s is None:
        return []
    s.gbt = ev.facts
    c.fault = True
    cause = "bem" if ev.side == "bms" else "cem"
    if ev.timeouts:
        who = "BMS (BEM)" if ev.side == "bms" else "charger (CEM)"
        return c.raise_alarm(
            ev.ts, codes.BMS_TIMEOUT, cause, f"{who} timed out on {', '.join(ev.timeouts)}"
        )
    return []


def on_lost(c: ConnectorModel, ev: CommunicationLost) -> list[Record]:
    s = c.session_for(ev)
    if s is None or ev.phase is not Phase.CHARGING:
        return []
    return c.raise_alarm(
        ev.ts,
        codes.BMS_TIMEOUT,
        "comm.lost",
        f"bus silent for {ev.silent_s:.1f} s while charging",
    )


def on_closed(c: ConnectorModel, ev: SessionClosed) -> list[Record]:
    s = c.session_for(ev)
    if s is None:
        return []
    sm = ev.summary
    if sm.timestamps_constant:
        s.timestamps_constant = True
    if s.soc_last_pct is None and sm.soc_end_pct is not None:
        s.soc_last_pct = int(sm.soc_end_pct)
    if s.soc_start_pct is None and sm.soc_start_pct is not None:
        s.soc_start_pct = int(sm.soc_start_pct)
    return c.close_session(ev.ts, ev.end_reason)
