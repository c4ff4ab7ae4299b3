"""What one GB/T 27930 session has said so far: the values its messages carried, collected.

:class:`SessionData` keeps the latest BRM/BCP/CML/BCL/BCS/BSM/CCS/BMV/BMT, the stop messages
(BST/CST) and who stopped first, the statistics (BSD/CSD), BEM/CEM notes, pauses and running
min/max/last of the measured quantities. Its ``add_*`` methods store a message and return the
event the change makes (``None`` when it makes none): a new vehicle (BRM), new parameters
(BCP/CML), the first stop of a side, both statistics, a changed BEM/CEM; each of those events
carries :meth:`SessionData.facts`. It also builds the
:class:`~drivers.gbt27930.events.SessionSummary` from what it holds. The phases are not its
business: the tracker (:mod:`drivers.gbt27930.tracker`) follows them; charging samples are
:mod:`drivers.gbt27930.sampling`'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from drivers.gbt27930.enums import Permit2, ReadyState, Status2
from drivers.gbt27930.events import (
    ChargingPaused,
    ChargingResumed,
    ErrorNote,
    ErrorReported,
    ParametersReceived,
    PauseNote,
    PhaseTime,
    SessionEnded,
    SessionFacts,
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
    active_codes,
)

#: bound on the errors / timeouts / pauses / phases kept per session
MAX_NOTES = 256

#: BSM states whose untrusted code (``10``) keeps the previous trusted value
TRUSTED_BSM = (
    "charge_overcurrent_status",
    "battery_overtemp_status",
    "insulation_status",
    "output_connector_status",
)


class Acc:
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


def _acc(current: Acc | None, v: float | None) -> Acc | None:
    if v is None:
        return current
    if current is None:
        return Acc(v)
    current.add(v)
    return current


def _frozen(a: Acc | None) -> Stat | None:
    return None if a is None else a.freeze()


@dataclass(slots=True)
class SessionData:
    """The values one session's messages carried (latest message of each kind, unless noted)."""

    connector_id: str
    session_id: int
    generation: str | None = None  # "2015+" (CHM/BHM seen) or "2011" (V1.0 BRM, no handshake)
    charger_version: str | None = None
    bms_version: str | None = None
    saw_handshake: bool = False
    brm: BRM | None = None
    bcp: BCP | None = None
    cml: CML | None = None
    charger_number: int | None = None
    charger_region: str | None = None
    bms_ready_ts: float | None = None
    stop_ts: float | None = None  # the first BST or CST
    initiator: str | None = None
    bst: BST | None = None
    cst: CST | None = None
    first_bst: BST | None = None  # why the BMS stopped
    first_cst: CST | None = None  # why the charger stopped
    bsd: BSD | None = None
    csd: CSD | None = None
    bcl: BCL | None = None
    bcs: BCS | None = None
    bsm: BSM | None = None
    ccs: CCS | None = None
    bmv: BMV | None = None
    bmt: BMT | None = None
    trusted: dict[str, Status2 | None] = field(default_factory=dict)
    soc_start: float | None = None  # first BCS SOC
    soc_bcp: float | None = None  # first BCP SOC
    voltage: Acc | None = None
    current: Acc | None = None
    bms_voltage: Acc | None = None
    bms_current: Acc | None = None
    cell_voltage: Acc | None = None
    temperature: Acc | None = None
    errors: list[ErrorNote] = field(default_factory=list)
    bem: BEM | None = None  # the latest BEM whose content changed
    cem: CEM | None = None
    last_error_side: str | None = None
    pauses: list[PauseNote] = field(default_factory=list)
    open_pause: dict[str, float] = field(default_factory=dict)
    untrusted: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    ended_emitted: bool = False

    # ------------------------------------------------------------------ handshake, recognition

    def add_handshake(self, m: CHM | BHM) -> None:
        self.saw_handshake = True
        if isinstance(m, CHM):
            self.charger_version = m.charger_protocol_version
        if self.generation is None:
            self.generation = "2015+"

    def add_crm(self, m: CRM) -> None:
        if m.charger_number is not None:
            self.charger_number = m.charger_number
        if m.charger_region_code is not None:
            self.charger_region = m.charger_region_code

    def add_brm(self, ts: float, m: BRM) -> VehicleIdentified | None:
        """Keep a BRM; the vehicle, unless it repeats the one already known."""
        if self.brm is not None and self.brm.raw == m.raw:
            return None
        self.brm = m
        self.bms_version = m.bms_protocol_version
        if m.bms_protocol_version == "1.0" and not self.saw_handshake:
            self.generation = "2011"
        elif self.generation is None and m.bms_protocol_version is not None:
            self.generation = "2015+"
        return VehicleIdentified(
            ts=ts,
            connector_id=self.connector_id,
            session_id=self.session_id,
            brm=m,
            vin=m.vin,
            protocol_version=m.bms_protocol_version,
            generation=self.generation,
            facts=self.facts(),
        )

    # ------------------------------------------------------------------ configuration

    def add_bcp(self, ts: float, m: BCP) -> ParametersReceived | None:
        """Keep a BCP; the parameters, unless it repeats the one already known."""
        if self.bcp is not None and self.bcp.raw == m.raw:
            return None
        self.bcp = m
        if self.soc_bcp is None:
            self.soc_bcp = m.soc_pct
        return self._parameters(ts)

    def add_cml(self, ts: float, m: CML) -> ParametersReceived | None:
        """Keep a CML; the parameters, unless it repeats the one already known."""
        if self.cml is not None and self.cml.raw == m.raw:
            return None
        self.cml = m
        return self._parameters(ts)

    def _parameters(self, ts: float) -> ParametersReceived:
        return ParametersReceived(
            ts=ts,
            connector_id=self.connector_id,
            session_id=self.session_id,
            bcp=self.bcp,
            cml=self.cml,
            charger_number=self.charger_number,
            facts=self.facts(),
        )

    def add_bro(self, ts: float, m: BRO) -> None:
        if m.bms_ready is ReadyState.READY and self.bms_ready_ts is None:
            self.bms_ready_ts = ts

    # ------------------------------------------------------------------ charging

    def add_ccs(self, m: CCS) -> None:
        self.ccs = m
        self.voltage = _acc(self.voltage, m.output_voltage_v)
        self.current = _acc(self.current, m.output_current_a)

    def add_bcs(self, m: BCS) -> None:
        self.bcs = m
        self.bms_voltage = _acc(self.bms_voltage, m.measured_charge_voltage_v)
        self.bms_current = _acc(self.bms_current, m.measured_charge_current_a)
        self.cell_voltage = _acc(self.cell_voltage, m.max_cell_voltage_v)
        if self.soc_start is None and m.soc_pct is not None:
            self.soc_start = m.soc_pct

    def add_bsm(self, m: BSM) -> int:
        """Keep a BSM; returns how many of its states were untrusted (and kept their value)."""
        self.bsm = m
        self.temperature = _acc(self.temperature, m.max_battery_temp_c)
        self.temperature = _acc(self.temperature, m.min_battery_temp_c)
        trusted = self.trusted
        untrusted = 0
        for f in TRUSTED_BSM:
            v = getattr(m, f)
            if v is Status2.UNTRUSTED:
                untrusted += 1
            else:
                trusted[f] = v
        self.untrusted += untrusted
        return untrusted

    def bms_permit(self, m: BSM) -> Permit2 | None:
        """The BSM's charging permission as a pause signal: a "paused" BSM with a fault is a
        stop, not a pause (None)."""
        trusted = self.trusted
        all_normal = (
            m.cell_voltage_status == 0
            and m.soc_status == 0
            and all(trusted.get(f) is Status2.NORMAL for f in TRUSTED_BSM)
        )
        permit = m.charging_permitted
        if permit is Permit2.PAUSED and not all_normal:
            return None
        return permit

    def add_bmv(self, m: BMV) -> None:
        self.bmv = m
        for v in m.cell_voltages_v:
            self.cell_voltage = _acc(self.cell_voltage, v)

    def add_bmt(self, m: BMT) -> None:
        self.bmt = m
        for t in m.probe_temps_c:
            self.temperature = _acc(self.temperature, t)

    def permit(
        self, ts: float, by: str, permit: Permit2 | None, charging: bool
    ) -> ChargingPaused | ChargingResumed | None:
        """A charging permission from ``by`` ("bms": BSM, "charger": CCS): a pause begins (only
        while ``charging``) or ends, or nothing changes."""
        if permit is Permit2.PAUSED:
            if not charging or by in self.open_pause:
                return None
            self.open_pause[by] = ts
            return ChargingPaused(
                ts=ts, connector_id=self.connector_id, session_id=self.session_id, by=by
            )
        if permit is Permit2.PERMITTED and by in self.open_pause:
            self._end_pause(ts, by)
            return ChargingResumed(
                ts=ts, connector_id=self.connector_id, session_id=self.session_id, by=by
            )
        return None

    def _end_pause(self, ts: float, by: str) -> None:
        start = self.open_pause.pop(by)
        if len(self.pauses) < MAX_NOTES:
            self.pauses.append(PauseNote(by, start, ts))

    def end_pauses(self, ts: float) -> None:
        """Every open pause ends at ``ts`` (a stop, or the session closes)."""
        for by in list(self.open_pause):
            self._end_pause(ts, by)

    # ------------------------------------------------------------------ stopping, statistics

    def add_stop(self, ts: float, m: BST | CST) -> StopRequested | None:
        """Keep a BST or CST; the first of each side is a stop request (open pauses end)."""
        side = "bms" if isinstance(m, BST) else "charger"
        if isinstance(m, BST):
            self.bst = m
            if self.first_bst is not None:
                return None
            self.first_bst = m
        else:
            self.cst = m
            if self.first_cst is not None:
                return None
            self.first_cst = m
        if self.initiator is None:
            self.initiator = side
            self.stop_ts = ts
        conflict = False
        # the reason bits name who stopped first; trust them over the order of arrival
        if isinstance(m, BST) and m.stop_by_charger is Status2.ACTIVE and self.initiator == "bms":
            conflict = True
            self.initiator = "charger"
        elif isinstance(m, CST) and m.stop_by_bms is Status2.ACTIVE and self.initiator == "charger":
            conflict = True
            self.initiator = "bms"
        self.end_pauses(ts)
        return StopRequested(
            ts=ts,
            connector_id=self.connector_id,
            session_id=self.session_id,
            side=side,
            initiator=self.initiator,
            reasons=active_codes(m),
            initiator_conflict=conflict,
            message=m,
            facts=self.facts(),
        )

    def add_statistics(self, ts: float, m: BSD | CSD) -> SessionEnded | None:
        """Keep a BSD or CSD; the session's end once both are known."""
        if isinstance(m, BSD):
            self.bsd = m
        else:
            self.csd = m
        if self.ended_emitted or self.bsd is None or self.csd is None:
            return None
        return self.ended(ts)

    def ended(self, ts: float) -> SessionEnded:
        """The session's end with the statistics known so far."""
        self.ended_emitted = True
        bsd, csd = self.bsd, self.csd
        return SessionEnded(
            ts=ts,
            connector_id=self.connector_id,
            session_id=self.session_id,
            bsd=bsd,
            csd=csd,
            energy_kwh=None if csd is None else csd.output_energy_kwh,
            charge_minutes=None if csd is None else csd.cumulative_charge_time_min,
            soc_end_pct=None if bsd is None else bsd.stop_soc_pct,
            facts=self.facts(),
        )

    def add_error(self, ts: float, m: BEM | CEM) -> ErrorReported | None:
        """Keep a BEM or CEM; the error report when its content changed."""
        side = "bms" if isinstance(m, BEM) else "charger"
        previous = self.bem if isinstance(m, BEM) else self.cem
        if previous is not None and previous.raw == m.raw:
            return None
        if isinstance(m, BEM):
            self.bem = m
        else:
            self.cem = m
        self.last_error_side = side
        timeouts = active_codes(m)
        if len(self.errors) < MAX_NOTES:
            self.errors.append(ErrorNote(ts, side, timeouts, m.other))
        return ErrorReported(
            ts=ts,
            connector_id=self.connector_id,
            session_id=self.session_id,
            side=side,
            timeouts=timeouts,
            message=m,
            facts=self.facts(),
        )

    def facts(self) -> SessionFacts:
        """A frozen view of the data records are made of (carried by the content events)."""
        return SessionFacts(
            brm=self.brm,
            bcp=self.bcp,
            cml=self.cml,
            stop_initiator=self.initiator,
            bst=self.first_bst,
            cst=self.first_cst,
            bem=self.bem,
            cem=self.cem,
            last_error_side=self.last_error_side,
            bsd=self.bsd,
            csd=self.csd,
        )

    def soc_end_pct(self) -> float | None:
        """BSD's stop SOC, else the last BCS SOC."""
        if self.bsd is not None and self.bsd.stop_soc_pct is not None:
            return self.bsd.stop_soc_pct
        if self.bcs is not None:
            return self.bcs.soc_pct
        return None

    # ------------------------------------------------------------------ summary

    def summary(
        self,
        *,
        start_ts: float,
        end_ts: float,
        end_reason: str | None,
        phases: tuple[PhaseTime, ...],
        charging_started_ts: float | None,
        timeouts: tuple[TimeoutNote, ...],
        reconnect_attempts: int,
        flags: tuple[str, ...],
        timestamps_constant: bool,
    ) -> SessionSummary:
        """Everything learned, with the tracker's view of the session (phases, timeouts …)."""
        return SessionSummary(
            connector_id=self.connector_id,
            session_id=self.session_id,
            start_ts=start_ts,
            end_ts=end_ts,
            end_reason=end_reason,
            generation=self.generation,
            protocol_version=self.bms_version or self.charger_version,
            charger_protocol_version=self.charger_version,
            bms_protocol_version=self.bms_version,
            phases=phases,
            brm=self.brm,
            bcp=self.bcp,
            cml=self.cml,
            charger_number=self.charger_number,
            charger_region_code=self.charger_region,
            bms_ready_ts=self.bms_ready_ts,
            charging_started_ts=charging_started_ts,
            stop_ts=self.stop_ts,
            stop_initiator=self.initiator,
            bst=self.bst,
            cst=self.cst,
            bsd=self.bsd,
            csd=self.csd,
            soc_start_pct=self.soc_start if self.soc_start is not None else self.soc_bcp,
            soc_end_pct=self.soc_end_pct(),
            voltage_v=_frozen(self.voltage),
            current_a=_frozen(self.current),
            bms_voltage_v=_frozen(self.bms_voltage),
            bms_current_a=_frozen(self.bms_current),
            cell_voltage_v=_frozen(self.cell_voltage),
            temperature_c=_frozen(self.temperature),
            errors=tuple(self.errors),
            timeouts=timeouts,
            pauses=tuple(self.pauses),
            reconnect_attempts=reconnect_attempts,
            untrusted_values=self.untrusted,
            flags=flags,
            message_counts=dict(self.counts),
            timestamps_constant=timestamps_constant,
        )
