"""What the station model remembers about one charging session while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.billing.split import RegisterTrail
from agent.records.bodies import BmsProcessBody
from agent.records.envelope import iso_ts
from agent.station.safety import SafetyMonitor
from drivers.gbt27930.events import ChargingSample, SessionFacts
from drivers.gbt27930.messages import BCP, BRM

#: a gap between CCS samples longer than this is not integrated (the bus was silent)
MAX_INTEGRATION_GAP_S = 5.0


def session_id_for(connector_id: str, start_ts: float) -> str:
    """Unique, stable session id: ``<connector>-<UTC yyyymmddHHMMSSfff>``."""
    stamp = iso_ts(start_ts)  # 2023-12-26T03:18:47.487Z
    digits = "".join(ch for ch in stamp if ch.isdigit())
    return f"{connector_id}-{digits}"


@dataclass(frozen=True, slots=True)
class MeterPoint:
    ts: float
    energy_kwh: float
    online: bool = True


@dataclass(slots=True)
class Session:
    """One charging session on one connector (DC from GB/T events, AC from meter current)."""

    session_id: str
    start_ts: float
    safety: SafetyMonitor
    tracker_session: int | None = None
    gbt: SessionFacts | None = None
    """The tracker's data of this session as of its latest content event (DC sessions)."""
    restored_vin: str | None = None
    """The VIN the ledger held, for a session closed after a gateway restart."""
    timestamps_constant: bool = False
    """Every frame of the session carried one timestamp: no duration, no CCS integral."""
    phase: str | None = None
    paused: bool = False
    charging_started_ts: float | None = None
    soc_start_pct: int | None = None
    soc_last_pct: int | None = None
    meter_start: MeterPoint | None = None
    meter_last: MeterPoint | None = None
    ccs_energy_kwh: float = 0.0
    ccs_seen: bool = False
    last_ccs_ts: float | None = None
    last_ccs_power_kw: float = 0.0
    peak_power_kw: float = 0.0
    peak_bms_current_a: float = 0.0
    """The largest charging current the BMS reported (BCS), for the abnormal-order rules."""
    meter_ids: list[str] = field(default_factory=list)
    """The meters whose reads fed the session, in order (more than one: the meter changed)."""
    remote_stop: bool = False
    """The platform asked for this stop (StopReason 1 instead of 0)."""
    end_reason: str | None = None
    end_ts: float | None = None
    last_sample: ChargingSample | None = None
    last_sample_ts: float | None = None
    last_bms: BmsProcessBody | None = None
    last_bms_emit_ts: float | None = None
    bms_due: bool = True
    """Emit a bms_process at the next complete sample (phase change, alarm, SOC step)."""
    extra_bits: dict[str, int] = field(default_factory=dict)
    start_estimated: bool = False
    """The gateway did not see the session begin (it joined late, e.g. it was down at plug-in):
    ``start_ts`` is the first frame seen, ``start_ts_earliest`` the earliest it can be."""
    start_ts_earliest: float | None = None
    end_estimated: bool = False
    """The gateway did not see the session end (it was down): ``end_ts`` is the last fact seen,
    ``end_ts_latest`` the time by which it had ended."""
    end_ts_latest: float | None = None
    energy_estimated: bool = False
    """The energy is not the measurement of the whole session (see ``notes``)."""
    resumes: int = 0
    """Gateway restarts the session continued across."""
    unobserved_s: float = 0.0
    """Seconds of the session the gateway did not see (downtime)."""
    notes: list[str] = field(default_factory=list)
    """Why a field of the order is estimated or flagged, in words."""
    trail: RegisterTrail | None = None
    """The meter register at each tariff boundary of the session (for its bill)."""

    @property
    def start_iso(self) -> str:
        return iso_ts(self.start_ts)

    @property
    def brm(self) -> BRM | None:
        return None if self.gbt is None else self.gbt.brm

    @property
    def bcp(self) -> BCP | None:
        return None if self.gbt is None else self.gbt.bcp

    @property
    def vin(self) -> str | None:
        brm = self.brm
        return self.restored_vin if brm is None else brm.vin

    def integrate(self, ts: float, voltage_v: float | None, current_a: float | None) -> None:
        """Add the CCS output power since the previous sample (rectangle rule, gap-limited)."""
        if voltage_v is None or current_a is None:
            return
        power_kw = voltage_v * abs(current_a) / 1000.0
        self.ccs_seen = True
        if self.last_ccs_ts is not None:
            dt = ts - self.last_ccs_ts
            if 0 < dt <= MAX_INTEGRATION_GAP_S:
                self.ccs_energy_kwh += (self.last_ccs_power_kw + power_kw) / 2 * dt / 3600.0
        self.last_ccs_ts = ts
        self.last_ccs_power_kw = power_kw
        if power_kw > self.peak_power_kw:
            self.peak_power_kw = power_kw

    @property
    def seen_whole(self) -> bool:
        """The gateway saw the session from its first frame to its last, without a gap."""
        return not (self.start_estimated or self.end_estimated or self.resumes)

    def ccs_integral_kwh(self) -> float | None:
        """∫ CCS V × I dt, or None: no CCS sample, or timestamps that never advanced."""
        if not self.ccs_seen or self.timestamps_constant:
            return None
        return self.ccs_energy_kwh

    def meter_energy_kwh(self) -> float | None:
        if self.meter_start is None or self.meter_last is None:
            return None
        return max(0.0, self.meter_last.energy_kwh - self.meter_start.energy_kwh)

    def energy_so_far_kwh(self) -> float:
        meter = self.meter_energy_kwh()
        return meter if meter is not None else self.ccs_energy_kwh
