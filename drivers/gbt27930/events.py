"""Typed events of the GB/T 27930 session tracker (the station model consumes these).

Every event carries ``ts`` (the timestamp of the frame that caused it, from the caller's clock,
Unix seconds), ``connector_id`` (the tracker's connector) and ``session_id`` (1, 2, … per
tracker). The order of events for one normal session is::

    SessionStarted → PhaseChanged(RECOGNITION) → VehicleIdentified → PhaseChanged(CONFIGURATION)
    → ParametersReceived … → ChargingStarted (+ PhaseChanged(CHARGING)) → ChargingSample …
    → StopRequested (one per side) → PhaseChanged(STOPPING/STATISTICS) → SessionEnded
    → SessionClosed

``ErrorReported``, ``ChargingPaused``/``ChargingResumed`` and ``CommunicationLost`` can appear in
between. Every session that started ends with exactly one ``SessionClosed``.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from drivers.gbt27930.enums import Permit2, Status2
from drivers.gbt27930.messages import (
    BCL,
    BCP,
    BCS,
    BEM,
    BMT,
    BMV,
    BRM,
    BSD,
    BSM,
    BST,
    CCS,
    CEM,
    CML,
    CSD,
    CST,
)


class Phase(StrEnum):
    """Tracker states (spec §5.1). ``ERROR`` is an overlay flag, not a phase."""

    HANDSHAKE = "HANDSHAKE"
    RECOGNITION = "RECOGNITION"
    CONFIGURATION = "CONFIGURATION"
    CHARGING = "CHARGING"
    STOPPING = "STOPPING"
    STATISTICS = "STATISTICS"


class Stat(msgspec.Struct, frozen=True):
    """Minimum, maximum and last value of a quantity over a session."""

    min: float
    max: float
    last: float


class PhaseTime(msgspec.Struct, frozen=True):
    phase: Phase
    ts: float
    reason: str  # "normal", "reconnect", "missed_crm_aa", "missed_cro_aa", "joined_late", …


class ErrorNote(msgspec.Struct, frozen=True):
    ts: float
    side: str  # "bms" (BEM) or "charger" (CEM)
    timeouts: tuple[str, ...]
    other: int | None


class TimeoutNote(msgspec.Struct, frozen=True):
    ts: float  # when the silence was detected
    last_frame_ts: float
    phase: Phase
    silent_s: float


class PauseNote(msgspec.Struct, frozen=True):
    by: str  # "bms" or "charger"
    start_ts: float
    end_ts: float | None


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the tracker learned about one session (values as decoded, units in names)."""

    connector_id: str
    session_id: int
    start_ts: float
    end_ts: float
    end_reason: (
        str | None
    )  # normal, stopped_without_statistics, error, aborted_before_charging, lost
    generation: str | None  # "2015+" (CHM/BHM seen) or "2011" (V1.0 BRM, no CHM)
    protocol_version: str | None  # BMS version (BRM) when known, else the charger's (CHM)
    charger_protocol_version: str | None
    bms_protocol_version: str | None
    phases: tuple[PhaseTime, ...]
    brm: BRM | None
    bcp: BCP | None
    cml: CML | None
    charger_number: int | None
    charger_region_code: str | None
    bms_ready_ts: float | None
    charging_started_ts: float | None
    stop_ts: float | None
    stop_initiator: str | None  # "bms" or "charger"
    bst: BST | None
    cst: CST | None
    bsd: BSD | None
    csd: CSD | None
    soc_start_pct: float | None
    soc_end_pct: float | None
    voltage_v: Stat | None  # charger output voltage (CCS)
    current_a: Stat | None  # charger output current (CCS), negative = charging
    bms_voltage_v: Stat | None  # measured by the BMS (BCS)
    bms_current_a: Stat | None
    cell_voltage_v: Stat | None  # highest cell voltage (BCS) and BMV cells
    temperature_c: Stat | None  # battery temperatures (BSM min/max, BMT probes)
    errors: tuple[ErrorNote, ...]
    timeouts: tuple[TimeoutNote, ...]
    pauses: tuple[PauseNote, ...]
    reconnect_attempts: int
    untrusted_values: int
    flags: tuple[str, ...]
    message_counts: dict[str, int]
    #: every frame of the session carried one timestamp (an exporter that stamps a whole file
    #: once): ``end_ts - start_ts`` is no duration, and samples were taken per message cycle
    timestamps_constant: bool = False


class SessionFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The tracker's session data a consumer needs for its records, as of the event carrying it:
    the latest BRM, BCP and CML; the first BST and CST (why each side stopped) and who stopped
    first; the latest BEM and CEM and which side reported last; the statistics BSD and CSD."""

    brm: BRM | None
    bcp: BCP | None
    cml: CML | None
    stop_initiator: str | None  # "bms" or "charger"
    bst: BST | None
    cst: CST | None
    bem: BEM | None
    cem: CEM | None
    last_error_side: str | None  # "bms" (BEM) or "charger" (CEM)
    bsd: BSD | None
    csd: CSD | None


class BmsEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every tracker event."""

    ts: float
    connector_id: str
    session_id: int


class SessionStarted(BmsEvent, frozen=True, kw_only=True):
    phase: Phase
    generation: str | None
    protocol_version: str | None  # the charger's (CHM) when the session opens with a handshake
    joined_late: bool = False  # opened by a message that belongs after the handshake


class PhaseChanged(BmsEvent, frozen=True, kw_only=True):
    phase: Phase
    previous: Phase
    reason: str


class VehicleIdentified(BmsEvent, frozen=True, kw_only=True):
    brm: BRM
    vin: str | None
    protocol_version: str | None
    generation: str | None
    facts: SessionFacts


class ParametersReceived(BmsEvent, frozen=True, kw_only=True):
    """The battery's charging parameters (BCP) or the charger's limits (CML) arrived or changed."""

    bcp: BCP | None
    cml: CML | None
    charger_number: int | None
    facts: SessionFacts


class ChargingStarted(BmsEvent, frozen=True, kw_only=True):
    missed_cro_aa: bool  # True when charging frames arrived without a CRO(0xAA) first


class ChargingSample(BmsEvent, frozen=True, kw_only=True):
    """The latest BCL + BCS + BSM + CCS merged (plus BMV/BMT when present), at most once per
    ``sample_interval_s``; once per message cycle (``timestamps_constant``) while every frame of
    the session carried the same timestamp. Untrusted BSM status codes are replaced by the last
    trusted value."""

    voltage_demand_v: float | None
    current_demand_a: float | None
    charger_voltage_v: float | None
    charger_current_a: float | None
    bms_voltage_v: float | None
    bms_current_a: float | None
    soc_pct: int | None
    remaining_charge_time_min: int | None
    cumulative_charge_time_min: int | None
    max_cell_voltage_v: float | None
    max_cell_voltage_index: int | None
    max_battery_temp_c: int | None
    max_temp_probe_index: int | None
    min_battery_temp_c: int | None
    min_temp_probe_index: int | None
    charge_overcurrent_status: Status2 | None
    battery_overtemp_status: Status2 | None
    insulation_status: Status2 | None
    output_connector_status: Status2 | None
    bms_permits: Permit2 | None
    charger_permits: Permit2 | None
    bcl: BCL | None
    bcs: BCS | None
    bsm: BSM | None
    ccs: CCS | None
    bmv: BMV | None
    bmt: BMT | None
    timestamps_constant: bool = False


class ChargingPaused(BmsEvent, frozen=True, kw_only=True):
    by: str  # "bms" (BSM 7.5–7.6 = 00) or "charger" (CCS 7.1–7.2 = 00)


class ChargingResumed(BmsEvent, frozen=True, kw_only=True):
    by: str


class StopRequested(BmsEvent, frozen=True, kw_only=True):
    """The first BST (side "bms") or first CST (side "charger") of a session."""

    side: str
    initiator: str  # who stopped first, cross-checked with the reason bits
    reasons: tuple[str, ...]  # names of the ACTIVE fields
    initiator_conflict: bool
    message: BST | CST
    facts: SessionFacts


class SessionEnded(BmsEvent, frozen=True, kw_only=True):
    """Both statistics messages arrived (or the session closed with only one of them)."""

    bsd: BSD | None
    csd: CSD | None
    energy_kwh: float | None
    charge_minutes: int | None
    soc_end_pct: int | None
    facts: SessionFacts


class ErrorReported(BmsEvent, frozen=True, kw_only=True):
    """A BEM (side "bms") or CEM (side "charger"), emitted when its content changes."""

    side: str
    timeouts: tuple[str, ...]
    message: BEM | CEM
    facts: SessionFacts


class CommunicationLost(BmsEvent, frozen=True, kw_only=True):
    """GB/T silence past the phase's timeout, or a session replaced without an end."""

    phase: Phase
    last_frame_ts: float
    silent_s: float
    reason: str  # "silence" or "restarted_without_end"


class SessionClosed(BmsEvent, frozen=True, kw_only=True):
    """The tracker closed the session; ``summary`` has everything it learned."""

    end_reason: str
    summary: SessionSummary


TRACKER_EVENTS = (
    SessionStarted,
    PhaseChanged,
    VehicleIdentified,
    ParametersReceived,
    ChargingStarted,
    ChargingSample,
    ChargingPaused,
    ChargingResumed,
    StopRequested,
    SessionEnded,
    ErrorReported,
    CommunicationLost,
    SessionClosed,
)
