"""A meter's identity and electronic seal in the station (docs/METERS.md §9.5).

The driver (:mod:`drivers.modbus.seal`) reports what the meter says; this module compares it
with what the ledger last recorded and writes the records:

* ``MeterIdentity`` → a ``meter_identity`` event; one that differs from the identity recorded
  before (this run or an earlier one) is also a ``meter_replaced`` event and alarm 9107.
  ``MeterReplaced`` (an exchange between two reads) is the same.
* ``MeterCounters`` (first read after a start) → a ``meter_counters`` event; every counter
  above the count recorded before raises its tamper alarm: it moved while evgw was down.
* ``MeterTamper`` → a ``meter_tamper`` event and the counter's tamper alarm (9101–9106) with
  the counts, the meter's time of the latest event and the session in progress, whose order
  is flagged (``stop_bits`` ``meter.tamper.<counter>`` and a note).
* ``MeterClockDrift`` → alarm 9108 raised and cleared.

**One counted event, one alarm.** A tamper or replacement alarm is raised when the gateway
sees the count rise; it clears ``seal_clear_after_s`` after the last counted event (and at
least two seal reads later) at a reading of that meter, if no further event was counted. A
new event of the same counter while the alarm is still up clears it and raises it again, so
the platform gets one raise per opening. The counts are the meter's: nothing is reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from agent.config.schema import MeterSection
from agent.records.bodies import EventBody
from agent.records.envelope import Record, iso_ts
from agent.station import codes
from agent.station.place import Place, open_sessions
from drivers.modbus.events import (
    MeterClockDrift,
    MeterCounters,
    MeterIdentity,
    MeterReplaced,
    MeterTamper,
    SealEvent,
)

COUNTER_CODES: Final[dict[str, int]] = {
    "meter_cover_open": codes.METER_COVER_OPENED,
    "terminal_cover_open": codes.METER_TERMINAL_COVER_OPENED,
    "programmed": codes.METER_PROGRAMMED,
    "cleared": codes.METER_CLEARED,
    "clock_set": codes.METER_CLOCK_SET,
    "power_down": codes.METER_POWER_DOWN,
}
"""The tamper alarm of each event counter (the counters of ``drivers.dlt645.profile``)."""

#: the ``event`` names this module writes (docs/RECORDS.md)
METER_IDENTITY: Final = "meter_identity"
METER_REPLACED: Final = "meter_replaced"
METER_COUNTERS: Final = "meter_counters"
METER_TAMPER: Final = "meter_tamper"
SEAL_EVENTS: Final = (METER_IDENTITY, METER_REPLACED, METER_COUNTERS, METER_TAMPER)


@dataclass(slots=True)
class MeterSeal:
    """One meter: the identity and counts last recorded, and its tamper alarms still up."""

    identity: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    raised: dict[int, float] = field(default_factory=dict)
    """Tamper or replacement code → the gateway time of its last counted event."""


def cause_of(meter_id: str, code: int) -> str:
    return f"seal.{meter_id}.{code}"


def clear_after_s(meter: MeterSection) -> float:
    return max(meter.seal_clear_after_s, 2 * meter.seal_interval_s)


def _event(place: Place, ts: float, event: str, message: str, **details: Any) -> Record:
    return place.record("event", ts, EventBody(event=event, message=message, details=details))


def _session_text(place: Place) -> tuple[str | None, str]:
    s = place.session
    return (None, "") if s is None else (s.session_id, f", during session {s.session_id}")


def _raise(
    place: Place, seal: MeterSeal, meter_id: str, ts: float, code: int, msg: str
) -> list[Record]:
    """Raise ``code`` for this event; one still up is cleared first (one raise per event)."""
    cause = cause_of(meter_id, code)
    out: list[Record] = []
    if code in seal.raised:
        out += place.clear_alarm(ts, code, cause, "a further event was counted")
    seal.raised[code] = ts
    return out + place.raise_alarm(ts, code, cause, msg, "device")


def _flag(place: Place, counter: str, text: str) -> None:
    """Flag the order of the session in progress (and of one waiting for its end reading)."""
    for s in open_sessions(place):
        s.extra_bits[f"meter.tamper.{counter}"] = 1
        s.notes.append(text)


def on_identity(place: Place, seal: MeterSeal, ev: MeterIdentity | MeterReplaced) -> list[Record]:
    current = ev.identity if isinstance(ev, MeterIdentity) else ev.current
    known = seal.identity or (ev.previous if isinstance(ev, MeterReplaced) else {})
    changed = {k: (known[k], v) for k, v in current.items() if k in known and known[k] != v}
    seal.identity = {**seal.identity, **current}
    out: list[Record] = []
    if changed:
        what = ", ".join(f"{k} {a} → {b}" for k, (a, b) in sorted(changed.items()))
        msg = f"meter {ev.meter_id}: {what}"
        sid, during = _session_text(place)
        out.append(
            _event(
                place,
                ev.ts,
                METER_REPLACED,
                msg + during,
                meter_id=ev.meter_id,
                previous=known,
                current=dict(current),
                session_id=sid,
            )
        )
        out += _raise(place, seal, ev.meter_id, ev.ts, codes.METER_REPLACED, msg + during)
        _flag(place, "replaced", f"meter identity changed during the session ({what})")
    if isinstance(ev, MeterIdentity):
        text = ", ".join(f"{k} {v}" for k, v in sorted(seal.identity.items()))
        out.append(
            _event(
                place,
                ev.ts,
                METER_IDENTITY,
                f"meter {ev.meter_id}: {text}",
                meter_id=ev.meter_id,
                identity=dict(seal.identity),
            )
        )
    return out


def _when(ts: float | None) -> str:
    return "no record" if ts is None else iso_ts(ts)


def on_counters(place: Place, seal: MeterSeal, ev: MeterCounters) -> list[Record]:
    """The first read after a start: what moved while evgw was down."""
    before = dict(seal.counts)
    rose = {n: (before[n], c) for n, c in ev.counts.items() if n in before and c > before[n]}
    went_back = {n: (before[n], c) for n, c in ev.counts.items() if n in before and c < before[n]}
    seal.counts = {**seal.counts, **ev.counts}
    last = {n: None if t is None else iso_ts(t) for n, t in ev.last_event_ts.items()}
    text = ", ".join(f"{n} {c}" for n, c in ev.counts.items())
    out = [
        _event(
            place,
            ev.ts,
            METER_COUNTERS,
            f"meter {ev.meter_id} event counters: {text}",
            meter_id=ev.meter_id,
            counts=dict(ev.counts),
            last_event_ts=last,
            previous=before or None,
            rose={n: list(v) for n, v in rose.items()},
            went_back={n: list(v) for n, v in went_back.items()},
        )
    ]
    for name, (a, b) in rose.items():
        msg = (
            f"meter {ev.meter_id}: {name} {a}→{b} while evgw was not running, latest event "
            f"{_when(ev.last_event_ts.get(name))}"
        )
        out += _raise(place, seal, ev.meter_id, ev.ts, COUNTER_CODES[name], msg)
    return out


def on_tamper(place: Place, seal: MeterSeal, ev: MeterTamper) -> list[Record]:
    seal.counts[ev.counter] = ev.current
    sid, during = _session_text(place)
    msg = (
        f"meter {ev.meter_id}: {ev.counter} {ev.previous}→{ev.current}, latest event "
        f"{_when(ev.last_event_ts)}{during}"
    )
    out = [
        _event(
            place,
            ev.ts,
            METER_TAMPER,
            msg,
            meter_id=ev.meter_id,
            counter=ev.counter,
            previous=ev.previous,
            current=ev.current,
            last_event_ts=None if ev.last_event_ts is None else iso_ts(ev.last_event_ts),
            session_id=sid,
            counts=dict(seal.counts),
        )
    ]
    out += _raise(place, seal, ev.meter_id, ev.ts, COUNTER_CODES[ev.counter], msg)
    note = f"meter {ev.counter} counted {ev.previous}→{ev.current} during the session"
    _flag(place, ev.counter, note)
    return out


def on_drift(place: Place, ev: MeterClockDrift) -> list[Record]:
    cause = cause_of(ev.meter_id, codes.METER_CLOCK_DRIFT)
    msg = (
        f"meter {ev.meter_id} clock {ev.drift_s:+.0f} s from the gateway's "
        f"(limit {ev.threshold_s:.0f} s)"
    )
    if ev.active:
        return place.raise_alarm(ev.ts, codes.METER_CLOCK_DRIFT, cause, msg, "device")
    return place.clear_alarm(ev.ts, codes.METER_CLOCK_DRIFT, cause, msg)


def on_seal_event(place: Place, seal: MeterSeal, ev: SealEvent) -> list[Record]:
    if isinstance(ev, MeterIdentity | MeterReplaced):
        return on_identity(place, seal, ev)
    if isinstance(ev, MeterCounters):
        return on_counters(place, seal, ev)
    if isinstance(ev, MeterTamper):
        return on_tamper(place, seal, ev)
    return on_drift(place, ev)


def clear_quiet(place: Place, seal: MeterSeal, meter: MeterSection, ts: float) -> list[Record]:
    """At a reading of the meter: clear the alarms whose last event is old enough."""
    out: list[Record] = []
    quiet_s = clear_after_s(meter)
    for code, since in list(seal.raised.items()):
        if ts - since >= quiet_s:
            del seal.raised[code]
            msg = f"meter {meter.meter_id}: no further event counted for {ts - since:.0f} s"
            out += place.clear_alarm(ts, code, cause_of(meter.meter_id, code), msg)
    return out


def recorded(events: list[Record]) -> dict[str, MeterSeal]:
    """Per meter, the identity and counts the newest seal events of the ledger hold (the
    ``event`` records newest first)."""
    seals: dict[str, MeterSeal] = {}
    for r in events:
        details = r.body.get("details")
        if r.body.get("event") not in SEAL_EVENTS or not isinstance(details, dict):
            continue
        meter_id = details.get("meter_id")
        if not isinstance(meter_id, str):
            continue
        seal = seals.setdefault(meter_id, MeterSeal())
        identity = details.get("identity") or details.get("current")
        if not seal.identity and isinstance(identity, dict):
            seal.identity = {str(k): str(v) for k, v in identity.items()}
        counts = details.get("counts")
        if not seal.counts and isinstance(counts, dict):
            seal.counts = {str(k): v for k, v in counts.items() if type(v) is int}
    return seals
