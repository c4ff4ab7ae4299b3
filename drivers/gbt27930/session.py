"""The GB/T 27930 session tracker (spec §5.4), sans-I/O.

``Tracker.feed(ts, msg)`` takes one decoded message and returns typed events
(:mod:`drivers.gbt27930.events`); ``tick(ts)`` checks for silence; ``finish(ts)`` closes whatever
is open when the input ends. The phase logic is the table :data:`TRANSITIONS`: for each kind of
observation and current phase it names one action, so the behaviour reads like spec §5.4.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from drivers.gbt27930.enums import Permit2, ReadyState, RecognitionResult, Status2
from drivers.gbt27930.events import (
    BmsEvent,
    ChargingPaused,
    ChargingResumed,
    ChargingSample,
    ChargingStarted,
    CommunicationLost,
    ErrorNote,
    ErrorReported,
    ParametersReceived,
    PauseNote,
    Phase,
    PhaseChanged,
    PhaseTime,
    SessionClosed,
    SessionEnded,
    SessionStarted,
    SessionSummary,
    Stat,
    StopRequested,
    TimeoutNote,
    VehicleIdentified,
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
    active_codes,
)


class Op(Enum):
    NEW = "new"  # open a session in the target phase
    GOTO = "goto"  # move to the target phase
    STAY = "stay"
    RECONNECT = "reconnect"  # CRM(0x00) after recognition: count an attempt, back to RECOGNITION
    RESTART = "restart"  # CHM/BHM mid-session: reconnect after an error, else lost + new
    CLOSE_NEW = "close_new"  # the previous session is finished: close it, open a new one


H, R, C, G, S, T = (
    Phase.HANDSHAKE,
    Phase.RECOGNITION,
    Phase.CONFIGURATION,
    Phase.CHARGING,
    Phase.STOPPING,
    Phase.STATISTICS,
)
_BEFORE_CHARGING = (H, R, C)


def _row(
    none: tuple[Op, Phase | None, str], **by_phase: tuple[Op, Phase | None, str]
) -> dict[Phase | None, tuple[Op, Phase | None, str]]:
    row: dict[Phase | None, tuple[Op, Phase | None, str]] = {None: none}
    for p in Phase:
        row[p] = by_phase.get(p.name, (Op.STAY, None, ""))
    return row


_LATE = "joined_late"

#: observation kind → current phase (None = no open session) → (action, target phase, reason)
TRANSITIONS: dict[str, dict[Phase | None, tuple[Op, Phase | None, str]]] = {
    "handshake": _row(
        (Op.NEW, H, "normal"),
        RECOGNITION=(Op.RESTART, H, "restart"),
        CONFIGURATION=(Op.RESTART, H, "restart"),
        CHARGING=(Op.RESTART, H, "restart"),
        STOPPING=(Op.RESTART, H, "restart"),
        STATISTICS=(Op.CLOSE_NEW, H, "normal"),
    ),
    # the BMS keeps answering the handshake for a moment after CRM(0x00) (capture line 146)
    "bhm": _row(
        (Op.NEW, H, "normal"),
        CONFIGURATION=(Op.RESTART, H, "restart"),
        CHARGING=(Op.RESTART, H, "restart"),
        STOPPING=(Op.RESTART, H, "restart"),
        STATISTICS=(Op.CLOSE_NEW, H, "normal"),
    ),
    "crm_00": _row(
        (Op.NEW, R, "normal"),
        HANDSHAKE=(Op.GOTO, R, "normal"),
        CONFIGURATION=(Op.RECONNECT, R, "reconnect"),
        CHARGING=(Op.RECONNECT, R, "reconnect"),
        STOPPING=(Op.RECONNECT, R, "reconnect"),
        STATISTICS=(Op.CLOSE_NEW, R, "normal"),
    ),
    "brm": _row((Op.NEW, R, _LATE), HANDSHAKE=(Op.GOTO, R, "missed_crm_00")),
    "crm_aa": _row(
        (Op.NEW, C, _LATE), HANDSHAKE=(Op.GOTO, C, "normal"), RECOGNITION=(Op.GOTO, C, "normal")
    ),
    "config": _row(
        (Op.NEW, C, _LATE),
        HANDSHAKE=(Op.GOTO, C, "missed_crm_aa"),
        RECOGNITION=(Op.GOTO, C, "missed_crm_aa"),
    ),
    "cro_aa": _row(
        (Op.NEW, G, _LATE),
        HANDSHAKE=(Op.GOTO, G, "missed_configuration"),
        RECOGNITION=(Op.GOTO, G, "missed_configuration"),
        CONFIGURATION=(Op.GOTO, G, "normal"),
    ),
    "charging": _row(
        (Op.NEW, G, _LATE),
        HANDSHAKE=(Op.GOTO, G, "missed_cro_aa"),
        RECOGNITION=(Op.GOTO, G, "missed_cro_aa"),
        CONFIGURATION=(Op.GOTO, G, "missed_cro_aa"),
    ),
    "stop": _row(
        (Op.NEW, S, _LATE),
        HANDSHAKE=(Op.GOTO, S, "normal"),
        RECOGNITION=(Op.GOTO, S, "normal"),
        CONFIGURATION=(Op.GOTO, S, "normal"),
        CHARGING=(Op.GOTO, S, "normal"),
    ),
    "statistics": _row(
        (Op.NEW, T, _LATE),
        HANDSHAKE=(Op.GOTO, T, "normal"),
        RECOGNITION=(Op.GOTO, T, "normal"),
        CONFIGURATION=(Op.GOTO, T, "normal"),
        CHARGING=(Op.GOTO, T, "missed_stop"),
        STOPPING=(Op.GOTO, T, "normal"),
    ),
    "error": _row((Op.NEW, H, _LATE)),
    "other": _row((Op.STAY, None, "")),
}

_KIND_BY_NAME = {
    "CHM": "handshake",
    "BHM": "bhm",
    "BRM": "brm",
    "BCP": "config",
    "CTS": "config",
    "CML": "config",
    "BRO": "config",
    "BCL": "charging",
    "BCS": "charging",
    "CCS": "charging",
    "BSM": "charging",
    "BMV": "charging",
    "BMT": "charging",
    "BSP": "charging",
    "BST": "stop",
    "CST": "stop",
    "BSD": "statistics",
    "CSD": "statistics",
    "BEM": "error",
    "CEM": "error",
}


def observation(msg: Message) -> str | None:
    """The kind of observation a message is for the phase table (None: not GB/T activity)."""
    name = msg.name
    if name == "CRM":
        result = msg.recognition_result  # type: ignore[attr-defined]
        if result is RecognitionResult.NOT_RECOGNISED:
            return "crm_00"
        if result is RecognitionResult.RECOGNISED:
            return "crm_aa"
        return "other"
    if name == "CRO":
        return "cro_aa" if msg.charger_ready is ReadyState.READY else "config"  # type: ignore[attr-defined]
    kind = _KIND_BY_NAME.get(name)
    if kind is not None:
        return kind
    if name == "UNKNOWN":
        return None
    return "other"  # DM1–DM6 and payloads that could not be decoded


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


class _Acc:
    """Running min / max / last."""

    __slots__ = ("last", "max", "min")

    def __init__(self, v: float) -> None:
        self.min = self.max = self.last = v

    def add(self, v: float) -> None:
        if v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.last = v

    def freeze(self) -> Stat:
        return Stat(self.min, self.max, self.last)


def _acc(current: _Acc | None, v: float | None) -> _Acc | None:
    if v is None:
        return current
    if current is None:
        return _Acc(v)
    current.add(v)
    return current


_TRUSTED_BSM = (
    "charge_overcurrent_status",
    "battery_overtemp_status",
    "insulation_status",
    "output_connector_status",
)


@dataclass(slots=True)
class _Session:
    session_id: int
    start_ts: float
    phase: Phase
    last_ts: float
    phases: list[PhaseTime] = field(default_factory=list)
    generation: str | None = None
    charger_version: str | None = None
    bms_version: str | None = None
    saw_handshake: bool = False
    error_overlay: bool = False
    last_error_ts: float | None = None
    last_was_error: bool = False
    lost_reported: bool = False
    brm: BRM | None = None
    bcp: BCP | None = None
    cml: CML | None = None
    charger_number: int | None = None
    charger_region: str | None = None
    bms_ready_ts: float | None = None
    charging_started_ts: float | None = None
    stop_ts: float | None = None
    initiator: str | None = None
    bst: BST | None = None
    cst: CST | None = None
    bsd: BSD | None = None
    csd: CSD | None = None
    ended_emitted: bool = False
    bcl: BCL | None = None
    bcs: BCS | None = None
    bsm: BSM | None = None
    ccs: CCS | None = None
    bmv: BMV | None = None
    bmt: BMT | None = None
    trusted: dict[str, Status2 | None] = field(default_factory=dict)
    last_sample_ts: float = float("-inf")
    soc_start: float | None = None
    soc_bcp: float | None = None
    voltage: _Acc | None = None
    current: _Acc | None = None
    bms_voltage: _Acc | None = None
    bms_current: _Acc | None = None
    cell_voltage: _Acc | None = None
    temperature: _Acc | None = None
    errors: list[ErrorNote] = field(default_factory=list)
    last_bem: bytes | None = None
    last_cem: bytes | None = None
    timeouts: list[TimeoutNote] = field(default_factory=list)
    pauses: list[PauseNote] = field(default_factory=list)
    open_pause: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    untrusted: int = 0
    flags: dict[str, None] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    reached: set[Phase] = field(default_factory=set)


_MAX_NOTES = 256  # bound on errors / timeouts / pauses / phases kept per session


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
        kind = observation(msg)
        if kind is None:
            return out
        s = self._s
        op, target, reason = TRANSITIONS[kind][None if s is None else s.phase]
        if op is Op.STAY:
            if s is None:
                return out
        elif op is Op.NEW:
            s = self._open(ts, target, reason, msg, out)  # type: ignore[arg-type]
        elif op is Op.GOTO:
            self._goto(ts, s, target, reason, out)  # type: ignore[arg-type]
        elif op is Op.RECONNECT:
            self._reconnect(ts, s, out)  # type: ignore[arg-type]
        elif op is Op.CLOSE_NEW:
            self._close(s, "normal", out)  # type: ignore[arg-type]
            s = self._open(ts, target, reason, msg, out)  # type: ignore[arg-type]
        elif op is Op.RESTART:
            assert s is not None
            if (
                s.error_overlay
                and s.last_error_ts is not None
                and ts - s.last_error_ts < self.config.error_reconnect_window_s
            ):
                self._reconnect(ts, s, out, to=Phase.HANDSHAKE)
            else:
                self._flag(s, "restarted_without_end")
                out.append(self._lost(ts, s, "restarted_without_end"))
                self._close(s, "lost", out)
                s = self._open(ts, H, "normal", msg, out)
        assert s is not None
        if kind == "crm_00" and s.error_overlay and op is Op.STAY:
            self._reconnect(ts, s, out)
        s.last_ts = ts
        s.lost_reported = False
        s.last_was_error = kind == "error"
        s.counts[msg.name] += 1
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

    def _open(
        self, ts: float, phase: Phase, reason: str, msg: Message, out: list[BmsEvent]
    ) -> _Session:
        self.sessions_started += 1
        s = _Session(session_id=self.sessions_started, start_ts=ts, phase=phase, last_ts=ts)
        if isinstance(msg, CHM | BHM):
            s.generation = "2015+"
        if isinstance(msg, CHM):
            s.charger_version = msg.charger_protocol_version
        s.phases.append(PhaseTime(phase, ts, reason))
        s.reached.add(phase)
        if reason == _LATE:
            self._flag(s, _LATE)
        self._s = s
        out.append(
            SessionStarted(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                phase=phase,
                generation=s.generation,
                protocol_version=s.charger_version,
            )
        )
        if phase is Phase.CHARGING:
            self._charging_started(ts, s, reason, out)
        return s

    def _goto(self, ts: float, s: _Session, phase: Phase, reason: str, out: list[BmsEvent]) -> None:
        previous = s.phase
        s.phase = phase
        s.reached.add(phase)
        if len(s.phases) < _MAX_NOTES:
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
        name = msg.name
        if name == "CCS":
            self._on_ccs(ts, s, msg, out)  # type: ignore[arg-type]
        elif name == "BCL":
            s.bcl = msg  # type: ignore[assignment]
            self._maybe_sample(ts, s, out)
        elif name == "BCS":
            self._on_bcs(ts, s, msg, out)  # type: ignore[arg-type]
        elif name == "BSM":
            self._on_bsm(ts, s, msg, out)  # type: ignore[arg-type]
        elif name == "CHM":
            s.saw_handshake = True
            s.charger_version = msg.charger_protocol_version  # type: ignore[attr-defined]
            if s.generation is None:
                s.generation = "2015+"
        elif name == "BHM":
            s.saw_handshake = True
            if s.generation is None:
                s.generation = "2015+"
        elif name == "CRM":
            self._on_crm(s, msg)  # type: ignore[arg-type]
        elif name == "BRM":
            self._on_brm(ts, s, msg, out)  # type: ignore[arg-type]
        elif name == "BCP":
            if s.bcp is None or s.bcp.raw != msg.raw:
                s.bcp = msg  # type: ignore[assignment]
                if s.soc_bcp is None:
                    s.soc_bcp = s.bcp.soc_pct  # type: ignore[union-attr]
                out.append(self._params(ts, s))
        elif name == "CML":
            if len(msg.raw) == 6:
                self._flag(s, "charger_2011_era")
            if s.cml is None or s.cml.raw != msg.raw:
                s.cml = msg  # type: ignore[assignment]
                out.append(self._params(ts, s))
        elif name == "BRO":
            if msg.bms_ready is ReadyState.READY and s.bms_ready_ts is None:  # type: ignore[attr-defined]
                s.bms_ready_ts = ts
        elif name in ("BST", "CST"):
            self._on_stop(ts, s, msg, out)  # type: ignore[arg-type]
        elif name in ("BSD", "CSD"):
            self._on_statistics(ts, s, msg, out)  # type: ignore[arg-type]
        elif name in ("BEM", "CEM"):
            self._on_error(ts, s, msg, out)  # type: ignore[arg-type]
        elif name == "BMV":
            s.bmv = msg  # type: ignore[assignment]
            for v in msg.cell_voltages_v:  # type: ignore[attr-defined]
                s.cell_voltage = _acc(s.cell_voltage, v)
        elif name == "BMT":
            s.bmt = msg  # type: ignore[assignment]
            for t in msg.probe_temps_c:  # type: ignore[attr-defined]
                s.temperature = _acc(s.temperature, t)

    def _on_ccs(self, ts: float, s: _Session, m: CCS, out: list[BmsEvent]) -> None:
        s.ccs = m
        s.voltage = _acc(s.voltage, m.output_voltage_v)
        s.current = _acc(s.current, m.output_current_a)
        if len(m.raw) == 6:
            self._flag(s, "charger_2011_era")
        self._pause(ts, s, "charger", m.charging_permitted, out)
        self._maybe_sample(ts, s, out)

    def _on_bcs(self, ts: float, s: _Session, m: BCS, out: list[BmsEvent]) -> None:
        s.bcs = m
        s.bms_voltage = _acc(s.bms_voltage, m.measured_charge_voltage_v)
        s.bms_current = _acc(s.bms_current, m.measured_charge_current_a)
        s.cell_voltage = _acc(s.cell_voltage, m.max_cell_voltage_v)
        if s.soc_start is None and m.soc_pct is not None:
            s.soc_start = m.soc_pct
        self._maybe_sample(ts, s, out)

    def _on_bsm(self, ts: float, s: _Session, m: BSM, out: list[BmsEvent]) -> None:
        s.bsm = m
        s.temperature = _acc(s.temperature, m.max_battery_temp_c)
        s.temperature = _acc(s.temperature, m.min_battery_temp_c)
        trusted = s.trusted
        for f in _TRUSTED_BSM:
            v = getattr(m, f)
            if v is Status2.UNTRUSTED:
                s.untrusted += 1
                self.anomalies["untrusted_value"] += 1
            else:
                trusted[f] = v
        all_normal = (
            m.cell_voltage_status == 0
            and m.soc_status == 0
            and all(trusted.get(f) is Status2.NORMAL for f in _TRUSTED_BSM)
        )
        permit = m.charging_permitted
        if permit is Permit2.PAUSED and not all_normal:
            permit = None  # a fault stops charging; it is not a pause
        self._pause(ts, s, "bms", permit, out)
        self._maybe_sample(ts, s, out)

    def _pause(
        self, ts: float, s: _Session, by: str, permit: Permit2 | None, out: list[BmsEvent]
    ) -> None:
        if permit is Permit2.PAUSED and by not in s.open_pause and s.phase is Phase.CHARGING:
            s.open_pause[by] = ts
            out.append(
                ChargingPaused(
                    ts=ts, connector_id=self.connector_id, session_id=s.session_id, by=by
                )
            )
        elif permit is Permit2.PERMITTED and by in s.open_pause:
            start = s.open_pause.pop(by)
            if len(s.pauses) < _MAX_NOTES:
                s.pauses.append(PauseNote(by, start, ts))
            out.append(
                ChargingResumed(
                    ts=ts, connector_id=self.connector_id, session_id=s.session_id, by=by
                )
            )

    def _on_crm(self, s: _Session, m: CRM) -> None:
        if m.charger_number is not None:
            s.charger_number = m.charger_number
        if m.charger_region_code is not None:
            s.charger_region = m.charger_region_code

    def _on_brm(self, ts: float, s: _Session, m: BRM, out: list[BmsEvent]) -> None:
        if s.brm is not None and s.brm.raw == m.raw:
            return
        s.brm = m
        s.bms_version = m.bms_protocol_version
        if m.bms_protocol_version == "1.0" and not s.saw_handshake:
            s.generation = "2011"
        elif s.generation is None and m.bms_protocol_version is not None:
            s.generation = "2015+"
        out.append(
            VehicleIdentified(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                brm=m,
                vin=m.vin,
                protocol_version=m.bms_protocol_version,
                generation=s.generation,
            )
        )

    def _params(self, ts: float, s: _Session) -> ParametersReceived:
        return ParametersReceived(
            ts=ts,
            connector_id=self.connector_id,
            session_id=s.session_id,
            bcp=s.bcp,
            cml=s.cml,
            charger_number=s.charger_number,
        )

    def _on_stop(self, ts: float, s: _Session, m: BST | CST, out: list[BmsEvent]) -> None:
        side = "bms" if m.name == "BST" else "charger"
        if (s.bst if side == "bms" else s.cst) is not None:
            if side == "bms":
                s.bst = m  # type: ignore[assignment]
            else:
                s.cst = m  # type: ignore[assignment]
            return
        if side == "bms":
            s.bst = m  # type: ignore[assignment]
        else:
            s.cst = m  # type: ignore[assignment]
        if s.initiator is None:
            s.initiator = side
            s.stop_ts = ts
        conflict = False
        # the reason bits name who stopped first; trust them over the order of arrival
        if isinstance(m, BST) and m.stop_by_charger is Status2.ACTIVE and s.initiator == "bms":
            conflict = True
            s.initiator = "charger"
        elif isinstance(m, CST) and m.stop_by_bms is Status2.ACTIVE and s.initiator == "charger":
            conflict = True
            s.initiator = "bms"
        if conflict:
            self._flag(s, "initiator_conflict")
        for by in list(s.open_pause):
            self._close_pause(ts, s, by)
        out.append(
            StopRequested(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                side=side,
                initiator=s.initiator,
                reasons=active_codes(m),
                initiator_conflict=conflict,
                message=m,
            )
        )

    def _close_pause(self, ts: float, s: _Session, by: str) -> None:
        start = s.open_pause.pop(by)
        if len(s.pauses) < _MAX_NOTES:
            s.pauses.append(PauseNote(by, start, ts))

    def _on_statistics(self, ts: float, s: _Session, m: BSD | CSD, out: list[BmsEvent]) -> None:
        if m.name == "BSD":
            s.bsd = m  # type: ignore[assignment]
        else:
            s.csd = m  # type: ignore[assignment]
        if not s.ended_emitted and s.bsd is not None and s.csd is not None:
            self._ended(ts, s, out)

    def _ended(self, ts: float, s: _Session, out: list[BmsEvent]) -> None:
        s.ended_emitted = True
        out.append(
            SessionEnded(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                bsd=s.bsd,
                csd=s.csd,
                energy_kwh=None if s.csd is None else s.csd.output_energy_kwh,
                charge_minutes=None if s.csd is None else s.csd.cumulative_charge_time_min,
                soc_end_pct=None if s.bsd is None else s.bsd.stop_soc_pct,
            )
        )

    def _on_error(self, ts: float, s: _Session, m: BEM | CEM, out: list[BmsEvent]) -> None:
        side = "bms" if m.name == "BEM" else "charger"
        s.error_overlay = True
        s.last_error_ts = ts
        previous = s.last_bem if side == "bms" else s.last_cem
        if previous == m.raw:
            return
        if side == "bms":
            s.last_bem = m.raw
        else:
            s.last_cem = m.raw
        timeouts = active_codes(m)
        if len(s.errors) < _MAX_NOTES:
            s.errors.append(ErrorNote(ts, side, timeouts, m.other))
        out.append(
            ErrorReported(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                side=side,
                timeouts=timeouts,
                message=m,
            )
        )

    def _maybe_sample(self, ts: float, s: _Session, out: list[BmsEvent]) -> None:
        if s.phase is not Phase.CHARGING or ts - s.last_sample_ts < self.config.sample_interval_s:
            return
        s.last_sample_ts = ts
        bcl, bcs, bsm, ccs, tr = s.bcl, s.bcs, s.bsm, s.ccs, s.trusted
        out.append(
            ChargingSample(
                ts=ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                voltage_demand_v=None if bcl is None else bcl.voltage_demand_v,
                current_demand_a=None if bcl is None else bcl.current_demand_a,
                charger_voltage_v=None if ccs is None else ccs.output_voltage_v,
                charger_current_a=None if ccs is None else ccs.output_current_a,
                bms_voltage_v=None if bcs is None else bcs.measured_charge_voltage_v,
                bms_current_a=None if bcs is None else bcs.measured_charge_current_a,
                soc_pct=None if bcs is None else bcs.soc_pct,
                remaining_charge_time_min=None if bcs is None else bcs.remaining_charge_time_min,
                cumulative_charge_time_min=None if ccs is None else ccs.cumulative_charge_time_min,
                max_cell_voltage_v=None if bcs is None else bcs.max_cell_voltage_v,
                max_cell_voltage_index=None if bsm is None else bsm.max_cell_voltage_index,
                max_battery_temp_c=None if bsm is None else bsm.max_battery_temp_c,
                max_temp_probe_index=None if bsm is None else bsm.max_temp_probe_index,
                min_battery_temp_c=None if bsm is None else bsm.min_battery_temp_c,
                min_temp_probe_index=None if bsm is None else bsm.min_temp_probe_index,
                charge_overcurrent_status=tr.get("charge_overcurrent_status"),
                battery_overtemp_status=tr.get("battery_overtemp_status"),
                insulation_status=tr.get("insulation_status"),
                output_connector_status=tr.get("output_connector_status"),
                bms_permits=None if bsm is None else bsm.charging_permitted,
                charger_permits=None if ccs is None else ccs.charging_permitted,
                bcl=bcl,
                bcs=bcs,
                bsm=bsm,
                ccs=ccs,
                bmv=s.bmv,
                bmt=s.bmt,
            )
        )

    # ------------------------------------------------------------------ silence and closing

    def _schedule(self, s: _Session) -> None:
        lost = self._lost_timeouts.get(s.phase)
        idle = (
            self.config.idle_close_after_error_s if s.last_was_error else self.config.idle_close_s
        )
        first = (
            idle
            if lost is None or s.lost_reported
            else min(idle, lost + self.config.timeout_tolerance_s)
        )
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
        idle = (
            self.config.idle_close_after_error_s if s.last_was_error else self.config.idle_close_s
        )
        if silent >= idle:
            self._close(s, self._end_reason(s), out)
            return
        self._schedule(s)

    def _lost(self, ts: float, s: _Session, reason: str) -> CommunicationLost:
        s.lost_reported = True
        silent = round(ts - s.last_ts, 6)
        if len(s.timeouts) < _MAX_NOTES:
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
        if not s.ended_emitted and (s.bsd is not None or s.csd is not None):
            self._ended(s.last_ts, s, out)
        for by in list(s.open_pause):
            self._close_pause(s.last_ts, s, by)
        summary = self._summary(s, end_reason)
        out.append(
            SessionClosed(
                ts=s.last_ts,
                connector_id=self.connector_id,
                session_id=s.session_id,
                end_reason=end_reason,
                summary=summary,
            )
        )
        self._s = None
        self._check_after = float("inf")

    def _flag(self, s: _Session, flag: str) -> None:
        if flag not in s.flags:
            s.flags[flag] = None
            self.anomalies[flag] += 1

    def _summary(self, s: _Session, end_reason: str | None) -> SessionSummary:
        soc_end: float | None = None
        if s.bsd is not None and s.bsd.stop_soc_pct is not None:
            soc_end = s.bsd.stop_soc_pct
        elif s.bcs is not None:
            soc_end = s.bcs.soc_pct
        return SessionSummary(
            connector_id=self.connector_id,
            session_id=s.session_id,
            start_ts=s.start_ts,
            end_ts=s.last_ts,
            end_reason=end_reason,
            generation=s.generation,
            protocol_version=s.bms_version or s.charger_version,
            charger_protocol_version=s.charger_version,
            bms_protocol_version=s.bms_version,
            phases=tuple(s.phases),
            brm=s.brm,
            bcp=s.bcp,
            cml=s.cml,
            charger_number=s.charger_number,
            charger_region_code=s.charger_region,
            bms_ready_ts=s.bms_ready_ts,
            charging_started_ts=s.charging_started_ts,
            stop_ts=s.stop_ts,
            stop_initiator=s.initiator,
            bst=s.bst,
            cst=s.cst,
            bsd=s.bsd,
            csd=s.csd,
            soc_start_pct=s.soc_start if s.soc_start is not None else s.soc_bcp,
            soc_end_pct=soc_end,
            voltage_v=None if s.voltage is None else s.voltage.freeze(),
            current_a=None if s.current is None else s.current.freeze(),
            bms_voltage_v=None if s.bms_voltage is None else s.bms_voltage.freeze(),
            bms_current_a=None if s.bms_current is None else s.bms_current.freeze(),
            cell_voltage_v=None if s.cell_voltage is None else s.cell_voltage.freeze(),
            temperature_c=None if s.temperature is None else s.temperature.freeze(),
            errors=tuple(s.errors),
            timeouts=tuple(s.timeouts),
            pauses=tuple(s.pauses),
            reconnect_attempts=s.reconnects,
            untrusted_values=s.untrusted,
            flags=tuple(s.flags),
            message_counts=dict(s.counts),
        )
