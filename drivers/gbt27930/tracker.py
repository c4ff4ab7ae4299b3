"""The GB/T 27930 session tracker (spec §5.4), sans-I/O.

``Tracker.feed(ts, msg)`` takes one decoded message and returns typed events
(:mod:`drivers.gbt27930.events`); ``tick(ts)`` checks for silence; ``finish(ts)`` closes whatever
is open when the input ends. Which phase a message leads to is the table
:data:`drivers.gbt27930.phases.TRANSITIONS`; what the messages said is collected in a
:class:`~drivers.gbt27930.session_data.SessionData` per session. The tracker applies the one,
feeds the other, and turns both into events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from drivers.gbt27930.enums import Permit2
from drivers.gbt27930.events import (
    BmsEvent,
    ChargingStarted,
    CommunicationLost,
    Phase,
    PhaseChanged,
    PhaseTime,
    SessionClosed,
    SessionStarted,
    SessionSummary,
    TimeoutNote,
)
from drivers.gbt27930.messages import (
    BCL,
    BCP,
    BCS,
    BEM,
    BHM,
    BMT,
    BMV,
    BRM,
    BRO,
    BSD,
    BSM,
    BST,
    CCS,
    CEM,
    CHM,
    CML,
    CRM,
    CSD,
    CST,
    Message,
)
from drivers.gbt27930.phases import JOINED_LATE, TRANSITIONS, Observation, Op, Transition, observe
from drivers.gbt27930.sampling import SampleGate, take_sample
from drivers.gbt27930.session_data import MAX_NOTES, SessionData

# looked up once: attribute access on an enumeration is slow on the per-message path
_STAY, _CRM_00, _ERROR, _CHARGING = Op.STAY, Observation.CRM_00, Observation.ERROR, Phase.CHARGING


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Tracker timing, all in seconds (spec §5.2/§5.4; configurable, not from the standard)."""

    idle_close_s: float = 10.0
    idle_close_after_error_s: float = 35.0
    error_reconnect_window_s: float = 35.0
    sample_interval_s: float = 1.0
    timeout_tolerance_s: float = 0.5
    max_reconnects: int = 3
    lost_timeouts_s: tuple[tuple[Phase, float], ...] = (
        (Phase.HANDSHAKE, 5.0),
        (Phase.RECOGNITION, 5.0),
        (Phase.CONFIGURATION, 5.0),
        (Phase.CHARGING, 1.0),
        (Phase.STOPPING, 5.0),
    )


@dataclass(slots=True)
class _Session:
    """The phase machine's state of the open session; what its messages said is in ``data``."""

    session_id: int
    start_ts: float
    phase: Phase
    last_ts: float
    sampler: SampleGate
    data: SessionData
    phases: list[PhaseTime] = field(default_factory=list)
    reached: set[Phase] = field(default_factory=set)
    error_overlay: bool = False  # a BEM/CEM was seen and no reconnect followed yet
    last_error_ts: float | None = None
    last_was_error: bool = False
    lost_reported: bool = False
    charging_started_ts: float | None = None
    timeouts: list[TimeoutNote] = field(default_factory=list)
    reconnects: int = 0
    flags: dict[str, None] = field(default_factory=dict)
    messages: int = 0

    def timestamps_constant(self) -> bool:
        """More than one message so far, all with the session's first timestamp (input is in
        time order, so the last one having it is enough)."""
        return self.messages > 1 and self.last_ts == self.start_ts


class Tracker:
    """Follows one connector's charger↔BMS conversation. Feed decoded messages in time order."""

    def __init__(self, connector_id: str = "", config: TrackerConfig | None = None) -> None:
        self.connector_id = connector_id
        self.config = config or TrackerConfig()
        self._lost_timeouts = dict(self.config.lost_timeouts_s)
        self.anomalies: Counter[str] = Counter()
        self.sessions_started = 0
        self._s: _Session | None = None
        # silence can only matter after this time: a cheap test before the full check
        self._check_after = float("inf")

    @property
    def phase(self) -> Phase | None:
        return None if self._s is None else self._s.phase

    @property
    def session_id(self) -> int | None:
        return None if self._s is None else self._s.session_id

    # ------------------------------------------------------------------ public API

    def feed(self, ts: float, msg: Message) -> list[BmsEvent]:
        out: list[BmsEvent] = []
        if ts >= self._check_after:
            self._check_silence(ts, out)
        kind = observe(msg)
        if kind is None:
            return out
        s = self._s
        t = TRANSITIONS[kind][None if s is None else s.phase]
        stay = t.op is _STAY
        if not stay:
            s = self._apply(ts, s, t, msg, out)
        if s is None:
            return out
        if stay and kind is _CRM_00 and s.error_overlay:
            self._reconnect(ts, s, out)
        s.last_ts = ts
        s.messages += 1
        s.lost_reported = False
        s.last_was_error = kind is _ERROR
        s.data.counts[msg.name] += 1
        self._absorb(ts, s, msg, out)
        self._schedule(s)
        return out

    def tick(self, ts: float) -> list[BmsEvent]:
        """Check for silence at ``ts`` (call it from a timer, or for every frame of any kind)."""
        out: list[BmsEvent] = []
        if ts >= self._check_after:
            self._check_silence(ts, out)
        return out

    def finish(self, ts: float | None = None) -> list[BmsEvent]:
        """The input ended: apply silence checks at ``ts`` and close any open session."""
        out: list[BmsEvent] = []
        if ts is not None:
            self._check_silence(ts, out)
        if self._s is not None:
            self._flag(self._s, "input_ended")
            self._close(self._s, self._end_reason(self._s), out)
        return out

    def summary(self) -> SessionSummary | None:
        """A snapshot of the open session (``None`` when no session is open)."""
        return None if self._s is None else self._summary(self._s, None)

    # ------------------------------------------------------------------ phase changes

    def _apply(
        self, ts: float, s: _Session | None, t: Transition, msg: Message, out: list[BmsEvent]
    ) -> _Session | None:
        """Carry out a transition other than STAY; returns the session open afterwards."""
        match t:
            case Transition(Op.NEW, Phase() as target, reason):
                return self._open(ts, target, reason, msg, out)
        if s is None:  # only NEW and STAY apply while no session is open
            return None
        match t:
            case Transition(Op.GOTO, Phase() as target, reason):
                self._goto(ts, s, target, reason, out)
            case Transition(Op.RECONNECT, Phase() as target):
                self._reconnect(ts, s, out, to=target)
            case Transition(Op.CLOSE_NEW, Phase() as target, reason):
                self._close(s, "normal", out)
                return self._open(ts, target, reason, msg, out)
            case Transition(Op.RESTART, Phase() as target):
                return self._restart(ts, s, target, msg, out)
        return s

    def _restart(
        self, ts: float, s: _Session, target: Phase, msg: Message, out: list[BmsEvent]
    ) -> _Session:
        """A handshake mid-session: a reconnect shortly after an error, else a new session."""
        if (
            s.error_overlay
            and s.last_error_ts is not None
            and ts - s.last_error_ts < self.config.error_reconnect_window_s
        ):
            self._reconnect(ts, s, out, to=target)
            return s
        self._flag(s, "restarted_without_end")
        out.append(self._lost(ts, s, "restarted_without_end"))
        self._close(s, "lost", out)
        return self._open(ts, target, "normal", msg, out)

    def _open(
        self, ts: float, phase: Phase, reason: str, msg: Message, out: list[BmsEvent]
    ) -> _Session:
        """Open a session in ``phase``, started by ``msg``."""
        self.sessions_started += 1
        s = _Session(
            session_id=self.sessions_started,
            start_ts=ts,
            phase=phase,
            last_ts=ts,
            sampler=SampleGate(self.config.sample_interval_s),
            data=SessionData(self.connector_id, self.sessions_started),
        )
        if isinstance(msg, CHM | BHM):
            s.data.add_handshake(msg)
        s.phases.append(PhaseTime(phase, ts, reason))
        s.reached.add(phase)
        if reason == JOINED_LATE:
            self._flag(s, JOINED_LATE)
        self._s = s
        out.append(
            SessionStarted(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                phase=phase,
                generation=s.data.generation,
                protocol_version=s.data.charger_version,
                joined_late=reason == JOINED_LATE,
            )
        )
        if phase is Phase.CHARGING:
            self._charging_started(ts, s, reason, out)
        return s

    def _goto(self, ts: float, s: _Session, phase: Phase, reason: str, out: list[BmsEvent]) -> None:
        previous = s.phase
        s.phase = phase
        s.reached.add(phase)
        if len(s.phases) < MAX_NOTES:
            s.phases.append(PhaseTime(phase, ts, reason))
        if reason not in ("normal", "restart", "reconnect"):
            self._flag(s, reason)
        out.append(
            PhaseChanged(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                phase=phase,
                previous=previous,
                reason=reason,
            )
        )
        if phase is Phase.CHARGING:
            self._charging_started(ts, s, reason, out)

    def _charging_started(self, ts: float, s: _Session, reason: str, out: list[BmsEvent]) -> None:
        if s.charging_started_ts is None:
            s.charging_started_ts = ts
            out.append(
                ChargingStarted(
                    ts=ts,
                    connector_id=self.connector_id,
                    session_id=s.session_id,
                    missed_cro_aa=reason != "normal",
                )
            )

    def _reconnect(
        self, ts: float, s: _Session, out: list[BmsEvent], to: Phase = Phase.RECOGNITION
    ) -> None:
        s.reconnects += 1
        s.error_overlay = False
        if s.reconnects > self.config.max_reconnects:
            self._flag(s, "excess_reconnects")
        if s.phase is not to:
            self._goto(ts, s, to, "reconnect", out)

    # ------------------------------------------------------------------ message contents

    def _absorb(self, ts: float, s: _Session, msg: Message, out: list[BmsEvent]) -> None:
        """Store what ``msg`` says in the session's data; collect the events that makes."""
        d = s.data
        ev: BmsEvent | None = None
        match msg:
            case BCL():
                d.bcl = msg
                self._maybe_sample(ts, s, msg, out)
            case CCS():
                d.add_ccs(msg)
                if len(msg.raw) == 6:
                    self._flag(s, "charger_2011_era")
                self._permit(ts, s, "charger", msg.charging_permitted, out)
                self._maybe_sample(ts, s, msg, out)
            case BSM():
                untrusted = d.add_bsm(msg)
                if untrusted:
                    self.anomalies["untrusted_value"] += untrusted
                self._permit(ts, s, "bms", d.bms_permit(msg), out)
                self._maybe_sample(ts, s, msg, out)
            case BCS():
                d.add_bcs(msg)
                self._maybe_sample(ts, s, msg, out)
            case CHM() | BHM():
                d.add_handshake(msg)
            case CRM():
                d.add_crm(msg)
            case BRM():
                ev = d.add_brm(ts, msg)
            case BCP():
                ev = d.add_bcp(ts, msg)
            case CML():
                if len(msg.raw) == 6:
                    self._flag(s, "charger_2011_era")
                ev = d.add_cml(ts, msg)
            case BRO():
                d.add_bro(ts, msg)
            case BST() | CST():
                stop = d.add_stop(ts, msg)
                if stop is not None and stop.initiator_conflict:
                    self._flag(s, "initiator_conflict")
                ev = stop
            case BSD() | CSD():
                ev = d.add_statistics(ts, msg)
            case BEM() | CEM():
                s.error_overlay = True
                s.last_error_ts = ts
                ev = d.add_error(ts, msg)
            case BMV():
                d.add_bmv(msg)
            case BMT():
                d.add_bmt(msg)
        if ev is not None:
            out.append(ev)

    def _permit(
        self, ts: float, s: _Session, by: str, permit: Permit2 | None, out: list[BmsEvent]
    ) -> None:
        pause = s.data.permit(ts, by, permit, s.phase is _CHARGING)
        if pause is not None:
            out.append(pause)

    def _maybe_sample(self, ts: float, s: _Session, msg: Message, out: list[BmsEvent]) -> None:
        if s.phase is _CHARGING:
            constant = s.timestamps_constant()
            if s.sampler.due(ts, type(msg), constant):
                out.append(take_sample(s.data, ts, constant))

    # ------------------------------------------------------------------ silence and closing

    def _idle_s(self, s: _Session) -> float:
        c = self.config
        return c.idle_close_after_error_s if s.last_was_error else c.idle_close_s

    def _schedule(self, s: _Session) -> None:
        lost = self._lost_timeouts.get(s.phase)
        c = self.config
        idle = c.idle_close_after_error_s if s.last_was_error else c.idle_close_s
        first = idle if lost is None or s.lost_reported else min(idle, lost + c.timeout_tolerance_s)
        self._check_after = s.last_ts + first

    def _check_silence(self, ts: float, out: list[BmsEvent]) -> None:
        s = self._s
        if s is None:
            self._check_after = float("inf")
            return
        silent = ts - s.last_ts
        lost = self._lost_timeouts.get(s.phase)
        if (
            lost is not None
            and not s.lost_reported
            and silent > lost + self.config.timeout_tolerance_s
        ):
            out.append(self._lost(ts, s, "silence"))
        if silent >= self._idle_s(s):
            self._close(s, self._end_reason(s), out)
            return
        self._schedule(s)

    def _lost(self, ts: float, s: _Session, reason: str) -> CommunicationLost:
        s.lost_reported = True
        silent = round(ts - s.last_ts, 6)
        if len(s.timeouts) < MAX_NOTES:
            s.timeouts.append(TimeoutNote(ts, s.last_ts, s.phase, silent))
        self.anomalies[f"communication_lost_{s.phase.value.lower()}"] += 1
        return CommunicationLost(
            ts=ts,
            connector_id=self.connector_id,
            session_id=s.session_id,
            phase=s.phase,
            last_frame_ts=s.last_ts,
            silent_s=silent,
            reason=reason,
        )

    def _end_reason(self, s: _Session) -> str:
        if Phase.STATISTICS in s.reached:
            return "normal"
        if Phase.STOPPING in s.reached:
            return "stopped_without_statistics"
        if s.last_was_error:
            return "error"
        if Phase.CHARGING not in s.reached:
            return "aborted_before_charging"
        return "lost"

    def _close(self, s: _Session, end_reason: str, out: list[BmsEvent]) -> None:
        d = s.data
        if not d.ended_emitted and (d.bsd is not None or d.csd is not None):
            out.append(d.ended(s.last_ts))
        d.end_pauses(s.last_ts)
        out.append(
            SessionClosed(
                ts=s.last_ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                end_reason=end_reason,
                summary=self._summary(s, end_reason),
            )
        )
        self._s = None
        self._check_after = float("inf")

    def _flag(self, s: _Session, flag: str) -> None:
        if flag not in s.flags:
            s.flags[flag] = None
            self.anomalies[flag] += 1

    def _summary(self, s: _Session, end_reason: str | None) -> SessionSummary:
        return s.data.summary(
            start_ts=s.start_ts,
            end_ts=s.last_ts,
            end_reason=end_reason,
            phases=tuple(s.phases),
            charging_started_ts=s.charging_started_ts,
            timeouts=tuple(s.timeouts),
            reconnect_attempts=s.reconnects,
            flags=tuple(s.flags),
            timestamps_constant=s.timestamps_constant(),
        )
