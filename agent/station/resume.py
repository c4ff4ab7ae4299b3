"""A connector's first moments after the gateway started (docs/STATION.md, "Restart
mid-session"): one plug-in, one order, billed from the meter register.

* **Resume.** A session a previous run left open is held for ``sampling.resume_window_s``. If
  the bus shows a session the tracker joined late (charging, stopping or statistics frames
  first) and it is consistent with the open one — no other VIN, the SOC and the charger's
  charging time not behind what the ledger holds — it continues under the same session id and
  start register, and closes normally.
* **Close from the register.** Otherwise (a handshake, another vehicle, nothing on the bus
  within the window) the open session is closed with the register read at restart as its end
  register (exact energy), its end time estimated. A meter that does not answer within a
  bounded time leaves the last register the ledger holds, flagged.
* **Late join.** A session first seen charging takes the last idle reading the ledger holds as
  its start register when no other session was seen since.
* **Energy nobody saw.** A register that moved while the gateway was down with no session to
  explain it gives an ``unobserved_energy`` event (T/CEC 7002) and audit alarm 9007.

:class:`Restart` is the connector's state for that; the functions here are called by
:class:`~agent.station.connector.ConnectorModel` and return the records to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.records.bodies import EventBody
from agent.records.envelope import Record, iso_ts
from agent.station import codes
from agent.station.restart import SESSION_RESUMED, OpenSession, RestartFacts
from agent.station.safety import SafetyMonitor
from agent.station.session import MeterPoint, Session
from drivers.gbt27930.events import (
    BmsEvent,
    ChargingSample,
    Phase,
    SessionClosed,
    SessionEnded,
    SessionStarted,
    StopRequested,
    VehicleIdentified,
)

if TYPE_CHECKING:
    from agent.station.connector import ConnectorModel

#: phases a late-joined session may continue a charging open session in
RESUME_PHASES = frozenset({Phase.CHARGING, Phase.STOPPING, Phase.STATISTICS})
#: the order of the phases: a session never goes back to an earlier one
_RANK = {p: n for n, p in enumerate(Phase)}
#: a late-joined session is judged on what arrived after this long at the latest (a BCS with
#: the SOC comes every 250 ms while charging)
DECIDE_AFTER_S = 2.0
#: the meter's first reading after a start is awaited this many poll intervals, plus a margin
METER_WAIT_POLLS = 5
METER_WAIT_MARGIN_S = 2.0
#: register movement below this is the meter's resolution, not energy
MIN_UNOBSERVED_KWH = 0.005
#: the charger's charging-time counter (CCS, whole minutes) may lag the station's by this much
ELAPSED_SLACK_MIN = 1
#: the ``event`` of energy nobody saw, and its T/CEC carrier (EventType 6 other, 7002 station
#: service fault)
UNOBSERVED_ENERGY = "unobserved_energy"
TCEC_EVENT_TYPE_OTHER = 6
TCEC_STATION_SERVICE_FAULT = 7002


@dataclass(slots=True)
class Restart:
    """What a connector still has to settle after a start."""

    facts: RestartFacts
    startup_ts: float
    window_end_ts: float
    meter_deadline_ts: float
    open: OpenSession | None
    """The open session, until it continues or is closed."""
    reading: MeterPoint | None = None
    """The first register read after the start."""
    held: list[BmsEvent] = field(default_factory=list)
    """A late-joined session's events, held until it is judged."""
    closing: OpenSession | None = None
    closing_note: str = ""
    closing_last: MeterPoint | None = None
    """Close with this register the ledger holds, not the first read after the start (the
    open session had stopped and another one was charging before the start)."""
    late_start_register: MeterPoint | None = None
    """The start register of a session found charging right after the start: the last idle
    reading (no open session) or the stopped open session's last register."""
    watch_unobserved: bool = False
    """No session explains a register movement yet; it may still (a late join)."""
    report_unobserved: bool = False
    sessions_seen: int = 0
    judging: bool = False
    """The held events are being processed (the restart is not over before they are)."""

    @property
    def settled(self) -> bool:
        return not (
            self.judging
            or self.open
            or self.held
            or self.closing
            or self.watch_unobserved
            or self.report_unobserved
            or self.late_start_register
        )


def begin(c: ConnectorModel, facts: RestartFacts, ts: float) -> list[Record]:
    """At start: hold the open session; close at once what cannot continue (older open
    sessions, one open longer than ``max_session_h``)."""
    cfg = c.config.sampling
    wait_s = 0.0 if c.meter is None else METER_WAIT_POLLS * c.meter.poll_interval_s
    r = Restart(
        facts,
        startup_ts=ts,
        window_end_ts=ts + (cfg.resume_window_s if c.has_can else wait_s + METER_WAIT_MARGIN_S),
        meter_deadline_ts=ts + wait_s + METER_WAIT_MARGIN_S,
        open=facts.open,
        watch_unobserved=facts.open is None,
        late_start_register=facts.last_register if facts.open is None else None,
    )
    c.restart = r
    if facts.last_register is not None:  # a lower first reading is a register that went back
        c.registers.update({"energy_import_kwh": facts.last_register.energy_kwh})
    out: list[Record] = []
    for older in facts.older_open:
        note = "a later session began before this one was closed: closed at restart"
        out += c.order_now(_restored(c, older, note, None, ts), ts)
    o = facts.open
    if o is not None and ts - o.last_ts > cfg.max_session_h * 3600.0:
        r.open, r.watch_unobserved = None, True
        hours = (ts - o.last_ts) / 3600.0
        note = (
            f"open for {hours:.1f} h, longer than max_session_h ({cfg.max_session_h:g} h): "
            "closed at restart with the last register the ledger holds"
        )
        out += c.order_now(_restored(c, o, note, None, ts), ts)
    return out + _settle(c, ts)


def before_bms(c: ConnectorModel, ev: BmsEvent) -> tuple[list[Record], bool]:
    """The records the restart logic writes for ``ev`` and whether it took the event (held it
    or judged the held session with it); when not taken, the connector processes it."""
    r = c.restart
    assert r is not None
    if r.held:
        if ev.session_id != r.held[0].session_id:
            return _judge(c, ev.ts), False
        r.held.append(ev)
        return (_judge(c, ev.ts) if _ready(r.held, ev.ts) else []), True
    if not isinstance(ev, SessionStarted):
        return [], False
    r.sessions_seen += 1
    late = ev.joined_late and ev.phase in RESUME_PHASES
    if not late:
        r.late_start_register = None  # a session seen from its start: nothing to bill back
    if r.open is not None and may_continue(r.open, ev):
        r.held = [ev]
        return [], True
    out: list[Record] = []
    o = r.open
    if o is not None:
        seen = f"joined late in {ev.phase.value.lower()}" if ev.joined_late else "its handshake"
        note = f"a new session began after the restart ({seen})"
        if o.stopped and late and o.meter_energy_last_kwh is not None:
            # it had stopped; the new one charged before the start: split at its last register
            last = MeterPoint(o.meter_last_ts or o.last_ts, o.meter_energy_last_kwh)
            newest = r.facts.last_register  # a sample after its stop, taken before the kill
            if newest is not None and newest.ts > last.ts and newest.energy_kwh >= last.energy_kwh:
                last = newest
            r.closing_last, r.late_start_register = last, last
            note += f"; it had reached {o.last_phase}: the end register is its last one"
        out += _close_open(c, ev.ts, note)
    elif r.watch_unobserved and not late:
        r.watch_unobserved, r.report_unobserved = False, True
        out += _settle(c, ev.ts)
    return out, False


def late_start(c: ConnectorModel, s: Session, ev: SessionStarted) -> None:
    """A session the tracker joined late: its start is estimated; right after a restart with
    no other session seen since, the last register the ledger holds is its start register."""
    if not ev.joined_late:
        return
    s.start_estimated = True
    r = c.restart
    reg = None if r is None else r.late_start_register
    if r is not None and reg is not None and r.sessions_seen == 1 and ev.phase in RESUME_PHASES:
        s.meter_start = reg
        s.start_ts_earliest = reg.ts
        r.watch_unobserved, r.late_start_register = False, None
        s.notes.append(
            "begun while the gateway was down: the start register is the last idle reading"
        )
        return
    if r is not None and r.reading is not None:
        s.meter_start = r.reading  # the earliest register the gateway read while it charged
    if s.meter_start is not None and s.meter_start.ts < s.start_ts:
        s.start_ts_earliest = s.meter_start.ts
    s.notes.append("joined late: the start of the session was not seen")


def ac_reading(c: ConnectorModel, current_a: float | None, ts: float) -> list[Record]:
    """An AC connector (no bus): its first reading after the start decides — current still
    flowing continues the open session, none closes it from this reading."""
    r = c.restart
    assert r is not None
    o = r.open
    if o is None or current_a is None:
        return []
    if current_a > c.config.sampling.ac_charging_current_a:
        r.open = None
        return _resume(c, o, ts, None, Phase.CHARGING)
    return _close_open(c, ts, "no current at the first reading after the restart")


def on_reading(c: ConnectorModel, point: MeterPoint) -> list[Record]:
    """A register reading: the first after the start settles what waited for it."""
    r = c.restart
    assert r is not None
    if r.reading is None:
        r.reading = point
    return _settle(c, point.ts)


def tick(c: ConnectorModel, ts: float) -> list[Record]:
    r = c.restart
    assert r is not None
    out: list[Record] = []
    if r.held and ts - r.held[0].ts >= DECIDE_AFTER_S:
        out += _judge(c, ts)
    if r.open is not None and ts >= r.window_end_ts:
        window = c.config.sampling.resume_window_s
        out += _close_open(c, ts, f"no charging on the bus within {window:g} s of the restart")
    if r.watch_unobserved and ts >= r.window_end_ts:
        r.watch_unobserved, r.report_unobserved = False, True
    if ts >= r.window_end_ts:
        r.late_start_register = None
    return out + _settle(c, ts)


# --------------------------------------------------------------------------- judging


def may_continue(o: OpenSession, ev: SessionStarted) -> bool:
    """A session the tracker joined late may be ``o`` going on: it is charging, stopping or in
    its statistics — or, when ``o`` had not begun charging yet, still being configured."""
    if not ev.joined_late or _RANK[ev.phase] < _RANK.get(str(o.last_phase).upper(), 0):
        return False  # a phase before the one the session had reached: another session
    if ev.phase in RESUME_PHASES:
        return True
    return o.charging_started_ts is None and ev.phase in (Phase.RECOGNITION, Phase.CONFIGURATION)


def _ready(held: list[BmsEvent], ts: float) -> bool:
    if ts - held[0].ts >= DECIDE_AFTER_S:
        return True
    return any(
        isinstance(e, SessionClosed | StopRequested | SessionEnded | VehicleIdentified)
        or (isinstance(e, ChargingSample) and e.soc_pct is not None)
        for e in held
    )


def mismatch(o: OpenSession, held: list[BmsEvent]) -> str | None:
    """Why the late-joined session is not the open one ``o``, or None (it continues)."""
    for e in held:
        if isinstance(e, VehicleIdentified) and e.vin and o.vin and e.vin != o.vin:
            return f"another vehicle: VIN {e.vin}, the open session's is {o.vin}"
        soc = _soc_of(e)
        if soc is not None and o.soc_last_pct is not None and soc < o.soc_last_pct:
            return f"SOC {soc} % is behind the open session's {o.soc_last_pct} %"
        minutes = e.cumulative_charge_time_min if isinstance(e, ChargingSample) else None
        if (
            minutes is not None
            and o.elapsed_minutes is not None
            and minutes + ELAPSED_SLACK_MIN < o.elapsed_minutes
        ):
            return (
                f"the charger's charging time ({minutes} min) is behind the open session's "
                f"({o.elapsed_minutes} min)"
            )
    return None


def _soc_of(e: BmsEvent) -> int | None:
    if isinstance(e, ChargingSample):
        return e.soc_pct
    if isinstance(e, SessionEnded):
        return e.soc_end_pct
    return None


def _judge(c: ConnectorModel, ts: float) -> list[Record]:
    """Continue the open session with the held one, or close it and let the held one be a
    session of its own; then process the held events."""
    r = c.restart
    assert r is not None and r.open is not None
    o, held = r.open, r.held
    r.held, r.judging = [], True
    why = mismatch(o, held)
    out: list[Record] = []
    started = held[0]
    assert isinstance(started, SessionStarted)
    if why is None:
        r.open = None
        out += _resume(c, o, started.ts, started.session_id, started.phase)
        held = held[1:]
    else:
        out += _close_open(c, ts, f"not continued after the restart: {why}")
    for e in held:
        out += c.feed_bms(e)
    r.judging = False
    return out + _settle(c, ts)


def _resume(
    c: ConnectorModel, o: OpenSession, ts: float, tracker_session: int | None, phase: Phase
) -> list[Record]:
    """``o`` goes on from ``ts`` (followed by the tracker's ``tracker_session``, DC)."""
    gap_s = max(0.0, ts - o.last_ts)
    s = Session(
        session_id=o.session_id,
        start_ts=o.start_ts,
        safety=SafetyMonitor(c.config.safety),
        tracker_session=tracker_session,
        restored_vin=o.vin,
        phase=phase.value,
        charging_started_ts=o.charging_started_ts,
        soc_start_pct=o.soc_start_pct,
        soc_last_pct=o.soc_last_pct,
        resumes=o.resumes + 1,
        unobserved_s=o.unobserved_s + gap_s,
    )
    start = start_register(c, o)
    if start is not None:
        s.meter_start = start
        last = o.meter_energy_last_kwh
        s.meter_last = start if last is None else MeterPoint(o.meter_last_ts or o.last_ts, last)
    elif o.energy_kwh:
        s.ccs_energy_kwh, s.ccs_seen = o.energy_kwh, True
    c.session = s
    c.fault = False
    body = EventBody(
        event=SESSION_RESUMED,
        message=(
            f"connector {c.connector_id}: session {o.session_id} continues after a gateway "
            f"restart ({gap_s:.1f} s not seen)"
        ),
        details={
            "session_id": o.session_id,
            "last_seen_ts": iso_ts(o.last_ts),
            "resumed_ts": iso_ts(ts),
            "unobserved_s": round(gap_s, 1),
        },
    )
    return [c.record("event", ts, body)]


# --------------------------------------------------------------------------- closing


def start_register(c: ConnectorModel, o: OpenSession) -> MeterPoint | None:
    """The open session's start register: from its status records, else (it had none with a
    register yet) the ledger's last reading when that was taken before it began charging."""
    if o.meter_energy_start_kwh is not None:
        return MeterPoint(o.start_ts, o.meter_energy_start_kwh)
    r = c.restart
    reg = None if r is None else r.facts.last_register
    if reg is not None and reg.ts <= (o.charging_started_ts or o.last_ts):
        return reg
    return None


def _close_open(c: ConnectorModel, ts: float, note: str) -> list[Record]:
    r = c.restart
    assert r is not None
    r.closing, r.closing_note, r.open = r.open, note, None
    return _settle(c, ts)


def _settle(c: ConnectorModel, ts: float) -> list[Record]:
    """Do what waited for the first register reading after the start (or for the meter's
    bounded wait to pass); forget the restart once nothing is left."""
    r = c.restart
    if r is None:
        return []
    out: list[Record] = []
    if r.reading is not None or c.meter is None or ts >= r.meter_deadline_ts:
        if r.closing is not None:
            o, r.closing = r.closing, None
            reading = r.reading if r.closing_last is None else r.closing_last
            silent = reading is None and c.meter is not None
            session = _restored(c, o, r.closing_note, reading, ts, meter_silent=silent)
            out += c.order_now(session, ts)
        if r.report_unobserved:
            r.report_unobserved = False
            out += _unobserved(c, r)
    if r.settled:
        c.restart = None
    return out


def _restored(
    c: ConnectorModel,
    o: OpenSession,
    note: str,
    reading: MeterPoint | None,
    ts: float,
    *,
    meter_silent: bool = False,
) -> Session:
    """The open session ``o`` closed after a restart: ended unseen between its last fact and
    the start; its end register the first reading after the start (``reading``)."""
    r = c.restart
    s = Session(
        session_id=o.session_id,
        start_ts=o.start_ts,
        safety=SafetyMonitor(c.config.safety),
        soc_start_pct=o.soc_start_pct,
        soc_last_pct=o.soc_last_pct,
        restored_vin=o.vin,
        end_reason="gateway_restart",
        end_ts=o.last_ts,
        end_estimated=True,
        end_ts_latest=max(o.last_ts, ts if r is None else r.startup_ts),
        resumes=o.resumes,
        unobserved_s=o.unobserved_s,
        notes=[note],
    )
    start = start_register(c, o)
    if start is not None:
        last = start.energy_kwh if o.meter_energy_last_kwh is None else o.meter_energy_last_kwh
        s.meter_start = start
        known = MeterPoint(o.meter_last_ts or start.ts, last, online=False)
        if reading is not None and reading.energy_kwh >= last:
            s.meter_last = reading
        else:
            s.meter_last = known
            s.energy_estimated = True
            if reading is None:
                if meter_silent:
                    s.notes.append("the meter did not answer after the restart")
                s.notes.append("the end register is the last one the ledger holds")
            else:
                s.extra_bits["meter.energy_decreased"] = 1
                s.notes.append(
                    f"the meter register went back while the gateway was down ({last:g} → "
                    f"{reading.energy_kwh:g} kWh): the energy is what was measured before"
                )
    elif o.energy_kwh:
        s.ccs_energy_kwh, s.ccs_seen = o.energy_kwh, True
    return s


def _unobserved(c: ConnectorModel, r: Restart) -> list[Record]:
    before, after = r.facts.last_register, r.reading
    if before is None or after is None:
        return []
    delta = after.energy_kwh - before.energy_kwh
    if delta < MIN_UNOBSERVED_KWH:
        return []
    message = (
        f"connector {c.connector_id}: the meter register moved {delta:.3f} kWh "
        f"({before.energy_kwh:g} → {after.energy_kwh:g}) between {iso_ts(before.ts)} and "
        f"{iso_ts(after.ts)} while the gateway was down; no session explains it"
    )
    body = EventBody(
        event=UNOBSERVED_ENERGY,
        message=message,
        details={
            "connector_id": c.connector_id,
            "register_before_kwh": before.energy_kwh,
            "register_after_kwh": after.energy_kwh,
            "energy_kwh": round(delta, 3),
            "register_before_ts": iso_ts(before.ts),
            "register_after_ts": iso_ts(after.ts),
            "down_from_ts": iso_ts(before.ts),
            "down_to_ts": iso_ts(r.startup_ts),
        },
        tcec_event_type=TCEC_EVENT_TYPE_OTHER,
        tcec_event_code=TCEC_STATION_SERVICE_FAULT,
    )
    out = [c.record("event", after.ts, body)]
    out += c.raise_alarm(
        after.ts, codes.UNOBSERVED_ENERGY, "audit.unobserved_energy", message, "device"
    )
    return out
