"""One connector: T/CEC status, the running session, its battery records, alarms and order.

:class:`ConnectorModel` is fed the GB/T tracker events of its CAN bus, the readings and events
of its meter, bus activity and the clock (``tick``); every method returns the records to
write. Status (``docs/STATION.md``):

* 0 offline: every source (CAN bus, meter) silent for ``sampling.offline_after_s``;
* 1 idle; 2 occupied (plugged, handshake/configuration, paused, stopping);
* 3 charging: GB/T charging phase (DC), or meter current above
  ``sampling.ac_charging_current_a`` (AC without CAN);
* 4 reserved (a :class:`~agent.station.inputs.Reservation`); 255 fault: BEM/CEM or a fault stop,
  until the session closes or reconnects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from agent.config.schema import (
    Config,
    ConnectorSection,
    EquipmentSection,
    MeterSection,
)
from agent.records.bodies import (
    BmsProcessBody,
    ChargeOrderBody,
    ConnectorStatusBody,
    VehicleBody,
    body_to_dict,
)
from agent.records.envelope import Record, iso_ts
from agent.station import codes
from agent.station.alarms import AlarmBook, AlarmEdge, Scope, alarm_body
from agent.station.audit import audit_energy
from agent.station.bms_process import bms_body
from agent.station.ocmf import OcmfReading, OcmfSigner
from agent.station.restart import OpenSession
from agent.station.safety import SafetyMonitor
from agent.station.session import MeterPoint, Session, session_id_for
from agent.station.stats import StatsRoller
from drivers.gbt27930.events import (
    BmsEvent,
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
from drivers.gbt27930.messages import BRM, BST, CST
from drivers.modbus.events import MeterAlarm, MeterAnomaly, MeterOffline, MeterOnline, MeterReading

OFFLINE, IDLE, OCCUPIED, CHARGING, RESERVED, FAULT = 0, 1, 2, 3, 4, 255

#: tracker end reasons that mean the session was cut off rather than stopped
_INTERRUPTED = {"lost", "gateway_restart", "config_removed"}


@dataclass(slots=True)
class _Pending:
    """A closed session waiting for the meter's first reading after the end."""

    session: Session
    deadline_ts: float


def _vehicle(brm: BRM | None, s: Session) -> VehicleBody | None:
    bcp = s.bcp
    if brm is None and bcp is None:
        return None
    return VehicleBody(
        bms_protocol_version=None if brm is None else brm.bms_protocol_version,
        battery_type=None if brm is None else brm.battery_type_code,
        rated_capacity_ah=None if brm is None else brm.rated_capacity_ah,
        rated_voltage_v=None if brm is None else brm.rated_total_voltage_v,
        nominal_energy_kwh=None if bcp is None else bcp.nominal_total_energy_kwh,
        battery_manufacturer=None if brm is None else brm.battery_manufacturer,
        pack_serial=None if brm is None else brm.battery_pack_serial,
        pack_charge_count=None if brm is None else brm.pack_charge_count,
        max_charge_voltage_v=None if bcp is None else bcp.max_total_charge_voltage_v,
        max_charge_current_a=(
            None
            if bcp is None or bcp.max_charge_current_a is None
            else abs(bcp.max_charge_current_a)
        ),
        max_cell_voltage_v=None if bcp is None else bcp.max_cell_charge_voltage_v,
        max_temp_c=None if bcp is None else bcp.max_temperature_c,
    )


def _max_abs(values: dict[str, float], *names: str) -> float | None:
    found = [abs(values[n]) for n in names if n in values]
    return max(found) if found else None


class ConnectorModel:
    """State of one connector. ``ts`` of the first input starts its offline clock."""

    def __init__(
        self,
        config: Config,
        equipment: EquipmentSection,
        connector: ConnectorSection,
        *,
        meter: MeterSection | None,
        has_can: bool,
        stats: StatsRoller,
        signer: OcmfSigner | None,
        start_ts: float,
    ) -> None:
        self.config = config
        self.station_id = config.station.station_id
        self.equipment = equipment
        self.connector = connector
        self.connector_id = connector.connector_id
        self.meter = meter
        self.has_can = has_can
        self.is_dc = connector.connector_type == 4 or equipment.equipment_type == 1
        self.stats = stats
        self.signer = signer
        self.created_ts = start_ts
        self.status: int | None = None
        self.last_status_ts: float | None = None
        self.session: Session | None = None
        self.pending: _Pending | None = None
        self.fault = False
        self.reserved = False
        self.alarms = AlarmBook()
        self.last_bus_ts: float | None = None
        self.last_meter_ts: float | None = None
        self.meter_online = True
        self.reading: MeterReading | None = None
        self.last_energy_kwh: float | None = None
        self.charging_since: float | None = None
        self.ac_below_since: float | None = None

    # ------------------------------------------------------------------ records

    def _record(self, kind: str, ts: float, body: msgspec.Struct) -> Record:
        return Record(
            kind=kind,
            ts=iso_ts(ts),
            station_id=self.station_id,
            body=body_to_dict(body),
            equipment_id=self.equipment.equipment_id,
            connector_id=self.connector_id,
        )

    def _alarm_records(self, edges: list[AlarmEdge | None]) -> list[Record]:
        out = []
        bms = self._bms_snapshot() if self.is_dc else None
        for e in edges:
            if e is None:
                continue
            if e.status == "raised":
                self.stats.add_alarm(self.connector_id, e.code)
                if self.session is not None:
                    self.session.bms_due = True
            out.append(self._record("alarm", e.ts, alarm_body(e, bms)))
        return out

    def _bms_snapshot(self) -> BmsProcessBody | None:
        s = self.session
        if s is not None and s.last_bms is not None:
            return s.last_bms
        if s is not None and s.last_sample is not None:
            return bms_body(s, s.last_sample, self.status or OCCUPIED)
        return None

    def raise_alarm(
        self, ts: float, code: int, cause: str, message: str, scope: Scope = "session"
    ) -> list[Record]:
        return self._alarm_records([self.alarms.raise_(ts, code, cause, message, scope)])

    def clear_alarm(self, ts: float, code: int, cause: str, message: str) -> list[Record]:
        return self._alarm_records([self.alarms.clear(ts, code, cause, message)])

    # ------------------------------------------------------------------ status

    def _sources_silent(self, ts: float) -> bool:
        limit = self.config.sampling.offline_after_s
        fresh = []
        if self.has_can:
            fresh.append(self.last_bus_ts is not None and ts - self.last_bus_ts <= limit)
        if self.meter is not None:
            fresh.append(
                self.meter_online
                and self.last_meter_ts is not None
                and ts - self.last_meter_ts <= limit
            )
        return not any(fresh)

    def _derive(self, ts: float) -> int | None:
        s = self.session
        if s is not None:
            if self.fault:
                return FAULT
            if s.phase == Phase.CHARGING and not s.paused:
                return CHARGING
            return OCCUPIED
        if self.reserved:
            return RESERVED
        if self._sources_silent(ts):
            if ts - self.created_ts >= self.config.sampling.offline_after_s:
                return OFFLINE
            return None
        return IDLE

    def _status_body(self, status: int) -> ConnectorStatusBody:
        s = self.session
        va = vb = vc = ia = ib = ic = 0.0
        power_kw = 0.0
        energy: float | None = None
        temp: int | None = None
        r = self.reading
        if r is not None and self.meter_online:
            v = r.values
            va = v.get("voltage_v", v.get("voltage_l1_v", 0.0))
            vb, vc = v.get("voltage_l2_v", 0.0), v.get("voltage_l3_v", 0.0)
            ia = abs(v.get("current_a", v.get("current_l1_a", 0.0)))
            ib, ic = abs(v.get("current_l2_a", 0.0)), abs(v.get("current_l3_a", 0.0))
            power_kw = v.get("power_w", 0.0) / 1000.0
            energy = r.energy_import_kwh
            if "x_connector_temp_c" in v:
                temp = round(v["x_connector_temp_c"])
        elif s is not None and s.last_sample is not None and status == CHARGING:
            smp = s.last_sample
            va = smp.charger_voltage_v or 0.0
            ia = abs(smp.charger_current_a or 0.0)
            power_kw = va * ia / 1000.0
        soc = None
        if s is not None and s.last_sample is not None:
            soc = s.last_sample.soc_pct
        return ConnectorStatusBody(
            status=status,  # type: ignore[arg-type]
            phase=None if s is None or s.phase is None else s.phase.lower(),
            voltage_v=round(va, 1),
            current_a=round(ia, 1),
            voltage_b_v=round(vb, 1),
            voltage_c_v=round(vc, 1),
            current_b_a=round(ib, 1),
            current_c_a=round(ic, 1),
            power_kw=round(power_kw, 3),
            energy_kwh=energy,
            soc_pct=soc,
            connector_temp_c=temp,
            session_id=None if s is None else s.session_id,
            session_start_ts=None if s is None else s.start_iso,
            charge_energy_kwh=0.0 if s is None else round(s.energy_so_far_kwh(), 3),
        )

    def _track_charging(self, ts: float, status: int) -> None:
        if status == CHARGING and self.charging_since is None:
            self.charging_since = ts
        elif status != CHARGING and self.charging_since is not None:
            self.stats.add_charging(self.connector_id, max(0.0, ts - self.charging_since))
            self.charging_since = None

    def flush_charging(self, ts: float) -> None:
        """Count charging time up to ``ts`` (called before statistics roll over)."""
        if self.charging_since is not None and ts > self.charging_since:
            self.stats.add_charging(self.connector_id, ts - self.charging_since)
            self.charging_since = ts

    def update_status(self, ts: float) -> list[Record]:
        new = self._derive(ts)
        if new is None or new == self.status:
            return []
        self._track_charging(ts, new)
        self.status = new
        self.last_status_ts = ts
        return [self._record("connector_status", ts, self._status_body(new))]

    def _heartbeat(self, ts: float) -> list[Record]:
        if (
            self.status == CHARGING
            and self.last_status_ts is not None
            and ts - self.last_status_ts >= self.config.sampling.status_heartbeat_s
        ):
            self.last_status_ts = ts
            return [self._record("connector_status", ts, self._status_body(CHARGING))]
        return []

    # ------------------------------------------------------------------ inputs

    def bus_activity(self, ts: float) -> list[Record]:
        self.last_bus_ts = ts
        return self.update_status(ts)

    def set_reserved(self, ts: float, reserved: bool) -> list[Record]:
        self.reserved = reserved
        return self.update_status(ts)

    def remote_stop(self, ts: float) -> list[Record]:
        if self.session is not None:
            self.session.remote_stop = True
        return self.update_status(ts)

    def tick(self, ts: float) -> list[Record]:
        out: list[Record] = []
        p = self.pending
        if p is not None and ts >= p.deadline_ts:
            out += self._finalize(ts)
        s = self.session
        if self.has_can and s is not None and s.phase == Phase.CHARGING and not s.paused:
            out += self._bms_timeout(ts, s)
        if (
            self.session is not None
            and not self.has_can
            and self.ac_below_since is not None
            and ts - self.ac_below_since >= self.config.sampling.ac_session_end_s
        ):
            out += self._close(ts, "current_stopped")
        out += self.update_status(ts)
        out += self._heartbeat(ts)
        return out

    def _bms_timeout(self, ts: float, s: Session) -> list[Record]:
        last = s.last_sample_ts if s.last_sample_ts is not None else s.charging_started_ts
        if last is None or self.alarms.has_cause("rule.bms_timeout"):
            return []
        silent = ts - last
        if silent > self.config.safety.bms_timeout_s:
            return self.raise_alarm(
                ts, codes.TIMEOUT_CODE, "rule.bms_timeout", f"no battery data for {silent:.1f} s"
            )
        return []

    # ------------------------------------------------------------------ GB/T events

    def feed_bms(self, ev: BmsEvent) -> list[Record]:
        self.last_bus_ts = ev.ts
        handler = _HANDLERS.get(type(ev))
        out = handler(self, ev) if handler is not None else []
        out += self.update_status(ev.ts)
        return out

    def _on_started(self, ev: SessionStarted) -> list[Record]:
        out: list[Record] = []
        if self.pending is not None:
            out += self._finalize(ev.ts)
        if self.session is not None:
            out += self._close(ev.ts, "restarted_without_end")
        s = self._open(ev.ts)
        s.tracker_session = ev.session_id
        s.phase = ev.phase.value
        return out

    def _open(self, ts: float) -> Session:
        s = Session(
            session_id=session_id_for(self.connector_id, ts),
            start_ts=ts,
            safety=SafetyMonitor(self.config.safety),
        )
        r = self.reading
        if r is not None and self.meter_online and r.energy_import_kwh is not None:
            s.meter_start = s.meter_last = MeterPoint(r.ts, r.energy_import_kwh)
        self.session = s
        self.fault = False
        self.stats.add_session(self.connector_id)
        return s

    def _session_for(self, ev: BmsEvent) -> Session | None:
        s = self.session
        if s is None or (s.tracker_session is not None and s.tracker_session != ev.session_id):
            return None
        return s

    def _on_phase(self, ev: PhaseChanged) -> list[Record]:
        s = self._session_for(ev)
        if s is None:
            return []
        s.phase = ev.phase.value
        out: list[Record] = []
        if ev.reason == "reconnect" and self.fault:
            self.fault = False
            out += self._alarm_records(self.alarms.clear_cause(ev.ts, "bem", "reconnected"))
            out += self._alarm_records(self.alarms.clear_cause(ev.ts, "cem", "reconnected"))
        if ev.phase is Phase.CHARGING:
            s.bms_due = True
            if s.charging_started_ts is None:
                s.charging_started_ts = ev.ts
        return out

    def _on_vehicle(self, ev: VehicleIdentified) -> list[Record]:
        s = self._session_for(ev)
        if s is not None:
            s.brm, s.vin = ev.brm, ev.vin
        return []

    def _on_params(self, ev: ParametersReceived) -> list[Record]:
        s = self._session_for(ev)
        if s is not None:
            s.bcp = ev.bcp or s.bcp
            s.cml = ev.cml or s.cml
        return []

    def _on_charging(self, ev: ChargingStarted) -> list[Record]:
        s = self._session_for(ev)
        if s is not None:
            s.phase = Phase.CHARGING.value
            s.bms_due = True
            if s.charging_started_ts is None:
                s.charging_started_ts = ev.ts
        return []

    def _on_sample(self, ev: ChargingSample) -> list[Record]:
        s = self._session_for(ev)
        if s is None:
            return []
        out: list[Record] = []
        s.last_sample, s.last_sample_ts = ev, ev.ts
        before = s.ccs_energy_kwh
        s.integrate(ev.ts, ev.charger_voltage_v, ev.charger_current_a)
        if self.meter is None:
            self.stats.add_energy(self.connector_id, s.ccs_energy_kwh - before)
        if ev.soc_pct is not None:
            if s.soc_start_pct is None:
                s.soc_start_pct = ev.soc_pct
            if s.soc_last_pct is not None and ev.soc_pct != s.soc_last_pct:
                s.bms_due = True
            s.soc_last_pct = ev.soc_pct
        for cause in ("rule.bms_timeout", "comm.lost"):
            out += self._alarm_records(self.alarms.clear_cause(ev.ts, cause, "battery data again"))
        for f in s.safety.evaluate(ev, s.bcp):
            if f.active:
                out += self.raise_alarm(ev.ts, f.code, f.cause, f.message)
            else:
                out += self.clear_alarm(ev.ts, f.code, f.cause, f.message)
        body = bms_body(s, ev, CHARGING)
        if body is not None:
            s.last_bms = body
            interval = self.config.sampling.bms_process_interval_s
            if s.bms_due or s.last_bms_emit_ts is None or ev.ts - s.last_bms_emit_ts >= interval:
                s.bms_due = False
                s.last_bms_emit_ts = ev.ts
                out.append(self._record("bms_process", ev.ts, body))
        out += self._heartbeat(ev.ts)
        return out

    def _on_pause(self, ev: ChargingPaused | ChargingResumed) -> list[Record]:
        s = self._session_for(ev)
        if s is not None:
            s.paused = isinstance(ev, ChargingPaused)
            if not s.paused:
                s.bms_due = True
                s.last_sample_ts = ev.ts
        return []

    def _on_stop(self, ev: StopRequested) -> list[Record]:
        s = self._session_for(ev)
        if s is None:
            return []
        s.initiator = ev.initiator
        msg = ev.message
        out: list[Record] = []
        if isinstance(msg, BST):
            s.bst = msg
            coded = {
                n: codes.BST_CODES[n]
                for n in codes.active_fields(msg, codes.BST_FIELDS)
                if n in codes.BST_CODES
            }
            faulty = any(
                n.startswith(("fault_", "error_"))
                for n in codes.active_fields(msg, codes.BST_FIELDS)
            )
            prefix = "bst"
        else:
            assert isinstance(msg, CST)
            s.cst = msg
            active = codes.active_fields(msg, codes.CST_FIELDS)
            coded = {n: codes.CST_CODES[n] for n in active if n in codes.CST_CODES}
            faulty = any(n.startswith(("fault_", "error_")) or n == "stop_fault" for n in active)
            prefix = "cst"
        for name, code in coded.items():
            out += self.raise_alarm(ev.ts, code, f"{prefix}.{name}", f"{prefix.upper()} {name}")
        if faulty:
            self.fault = True
        return out

    def _on_ended(self, ev: SessionEnded) -> list[Record]:
        s = self._session_for(ev)
        if s is not None and ev.csd is not None:
            s.csd = ev.csd
        if s is not None and ev.soc_end_pct is not None:
            s.soc_last_pct = ev.soc_end_pct  # the BMS's own figure (BSD) wins
        return []

    def _on_error(self, ev: ErrorReported) -> list[Record]:
        s = self._session_for(ev)
        if s is None:
            return []
        s.last_error_side = ev.side
        if ev.side == "bms":
            s.bem = ev.message  # type: ignore[assignment]
        else:
            s.cem = ev.message  # type: ignore[assignment]
        self.fault = True
        cause = "bem" if ev.side == "bms" else "cem"
        if ev.timeouts:
            who = "BMS (BEM)" if ev.side == "bms" else "charger (CEM)"
            return self.raise_alarm(
                ev.ts, codes.TIMEOUT_CODE, cause, f"{who} timed out on {', '.join(ev.timeouts)}"
            )
        return []

    def _on_lost(self, ev: CommunicationLost) -> list[Record]:
        s = self._session_for(ev)
        if s is None or ev.phase is not Phase.CHARGING:
            return []
        return self.raise_alarm(
            ev.ts,
            codes.TIMEOUT_CODE,
            "comm.lost",
            f"bus silent for {ev.silent_s:.1f} s while charging",
        )

    def _on_closed(self, ev: SessionClosed) -> list[Record]:
        s = self._session_for(ev)
        if s is None:
            return []
        sm = ev.summary
        s.brm = s.brm or sm.brm
        s.bcp = s.bcp or sm.bcp
        s.bst = s.bst or sm.bst
        s.cst = s.cst or sm.cst
        s.csd = s.csd or sm.csd
        s.initiator = sm.stop_initiator or s.initiator
        if s.vin is None and sm.brm is not None:
            s.vin = sm.brm.vin
        if s.soc_last_pct is None and sm.soc_end_pct is not None:
            s.soc_last_pct = int(sm.soc_end_pct)
        if s.soc_start_pct is None and sm.soc_start_pct is not None:
            s.soc_start_pct = int(sm.soc_start_pct)
        return self._close(ev.ts, ev.end_reason)

    # ------------------------------------------------------------------ closing and orders

    def _close(self, ts: float, end_reason: str) -> list[Record]:
        """End the running session now; the order waits for one more meter reading."""
        s = self.session
        assert s is not None
        s.end_reason = end_reason
        s.end_ts = ts
        self.session = None
        self.fault = False
        self.ac_below_since = None
        out = self._alarm_records(self.alarms.clear_scope(ts, "session", "session ended"))
        out += self.update_status(ts)
        if self.meter is not None and self.meter_online and end_reason not in _INTERRUPTED:
            wait = 2 * self.meter.poll_interval_s + 1.0
            self.pending = _Pending(s, ts + wait)
        else:
            self.pending = _Pending(s, ts)
            out += self._finalize(ts)
        return out

    def _finalize(self, ts: float) -> list[Record]:
        p = self.pending
        if p is None:
            return []
        self.pending = None
        s = p.session
        end_ts = s.end_ts if s.end_ts is not None else ts
        bits = codes.stop_bits(s.bst, s.cst, s.bem, s.cem)
        bits.update(s.extra_bits)
        if not self.has_can:
            reason = codes.STOP_BMS
        else:
            reason = codes.stop_reason(bits, s.initiator, s.last_error_side)
            if reason == codes.STOP_USER and s.remote_stop:
                reason = codes.STOP_PLATFORM
        interrupted = s.end_reason in _INTERRUPTED
        meter_kwh = s.meter_energy_kwh()
        charger_kwh = None if s.csd is None else s.csd.output_energy_kwh
        ccs_kwh = s.ccs_energy_kwh if s.ccs_seen else None
        if meter_kwh is not None:
            energy, source = meter_kwh, "meter"
        elif charger_kwh is not None:
            energy, source = charger_kwh, "charger"
        elif ccs_kwh is not None:
            energy, source = ccs_kwh, "ccs_integral"
        else:
            energy, source = 0.0, "none"
        peak = s.peak_power_kw
        order = ChargeOrderBody(
            session_id=s.session_id,
            start_ts=iso_ts(s.start_ts),
            end_ts=iso_ts(end_ts),
            meter_energy_start_kwh=None if s.meter_start is None else s.meter_start.energy_kwh,
            meter_energy_end_kwh=None if s.meter_last is None else s.meter_last.energy_kwh,
            energy_kwh=round(energy, 3),
            energy_source=source,  # type: ignore[arg-type]
            charger_energy_kwh=charger_kwh,
            ccs_energy_kwh=None if ccs_kwh is None else round(ccs_kwh, 3),
            meter_id=None if self.meter is None else self.meter.meter_id,
            soc_start_pct=s.soc_start_pct,
            soc_end_pct=s.soc_last_pct,
            vin=s.vin,
            duration_s=max(0, round(end_ts - s.start_ts)),
            peak_power_kw=round(peak, 3),
            stop_reason=reason,  # type: ignore[arg-type]
            stop_bits=bits,
            interrupted=interrupted,
            end_reason=s.end_reason,
            vehicle=_vehicle(s.brm, s),
            ocmf=self._ocmf(s, end_ts, reason, interrupted),
        )
        self.stats.add_stop_reason(self.connector_id, reason)
        out = [self._record("charge_order", end_ts, order)]
        out += self._audit(ts, s.start_ts, meter_kwh, charger_kwh, ccs_kwh)
        return out

    def _ocmf(self, s: Session, end_ts: float, reason: int, interrupted: bool) -> str | None:
        if self.signer is None or self.meter is None:
            return None
        if s.meter_start is None or s.meter_last is None:
            return None
        if s.end_reason == "gateway_restart":
            tx = "P"
        elif interrupted or reason == codes.STOP_CHARGER_FAULT:
            tx = "A"
        elif reason == codes.STOP_USER:
            tx = "L"
        elif reason == codes.STOP_PLATFORM:
            tx = "R"
        else:
            tx = "E"
        end = s.meter_last
        return self.signer.sign_order(
            meter_serial=self.meter.meter_id,
            meter_model=self.meter.profile,
            connector_id=self.connector_id,
            session_id=s.session_id,
            current_type="DC" if self.is_dc else "AC",
            begin=OcmfReading(s.meter_start.ts, s.meter_start.energy_kwh, "B"),
            end=OcmfReading(end.ts, end.energy_kwh, tx, "G" if end.online else "T"),
        )

    def _audit(
        self,
        ts: float,
        session_start_ts: float,
        meter_kwh: float | None,
        charger_kwh: float | None,
        ccs_kwh: float | None,
    ) -> list[Record]:
        out: list[Record] = []
        results = audit_energy(meter_kwh, charger_kwh, ccs_kwh, self.config.safety)
        for r in results:
            cause = f"audit.{r.code}"
            if r.mismatch:
                out += self.raise_alarm(ts, r.code, cause, r.message, "device")
            else:
                out += self.clear_alarm(ts, r.code, cause, r.message)
        if results and not any(r.mismatch for r in results):
            # a meter anomaly clears with the first clean order of a session after it
            for code, cause in (
                (codes.METER_ENERGY_DECREASED, "meter.energy_decreased"),
                (codes.METER_ENERGY_JUMP, "meter.energy_jump"),
            ):
                raised = self.alarms.raised_ts(code)
                if raised is not None and raised < session_start_ts:
                    out += self.clear_alarm(ts, code, cause, "a later order passed the audit")
        return out

    def close_interrupted(self, o: OpenSession, ts: float) -> list[Record]:
        """Write the order of a session left open by a gateway restart."""
        s = Session(
            session_id=o.session_id,
            start_ts=o.start_ts,
            safety=SafetyMonitor(self.config.safety),
            soc_start_pct=o.soc_start_pct,
            soc_last_pct=o.soc_last_pct,
            vin=o.vin,
            end_reason="gateway_restart",
            end_ts=o.last_ts,
        )
        if o.meter_energy_start_kwh is not None and o.meter_energy_last_kwh is not None:
            s.meter_start = MeterPoint(o.start_ts, o.meter_energy_start_kwh)
            s.meter_last = MeterPoint(o.last_ts, o.meter_energy_last_kwh, online=False)
        elif o.energy_kwh:
            s.ccs_energy_kwh, s.ccs_seen = o.energy_kwh, True
        self.pending = _Pending(s, ts)
        return self._finalize(ts)

    def finish_pending(self, ts: float) -> list[Record]:
        """Write the order waiting for the meter's end reading with the last one known."""
        return self._finalize(ts)

    def close_for_removal(self, ts: float) -> list[Record]:
        """The connector left the config: close what is open."""
        out: list[Record] = []
        if self.pending is not None:
            out += self._finalize(ts)
        if self.session is not None:
            out += self._close(ts, "config_removed")
        return out

    # ------------------------------------------------------------------ meter events

    def feed_meter(
        self, ev: MeterReading | MeterOffline | MeterOnline | MeterAnomaly | MeterAlarm
    ) -> list[Record]:
        if isinstance(ev, MeterReading):
            out = self._on_reading(ev)
        elif isinstance(ev, MeterOffline):
            self.meter_online = False
            out = self.raise_alarm(
                ev.ts, 3, "meter.offline", f"meter {ev.meter_id}: {ev.reason}", "device"
            )
            if self.session is not None and self.session.meter_last is not None:
                last = self.session.meter_last
                self.session.meter_last = MeterPoint(last.ts, last.energy_kwh, online=False)
            if self.pending is not None:
                out += self._finalize(ev.ts)
        elif isinstance(ev, MeterOnline):
            self.meter_online = True
            self.last_meter_ts = ev.ts
            out = self.clear_alarm(ev.ts, 3, "meter.offline", f"meter {ev.meter_id} answers again")
        elif isinstance(ev, MeterAnomaly):
            out = self._on_anomaly(ev)
        else:
            cause = f"meter.flag.{ev.flag}"
            if ev.active:
                msg = f"meter {ev.meter_id} flag {ev.flag}"
                out = self.raise_alarm(ev.ts, codes.METER_ALARM_FLAG, cause, msg, "device")
            else:
                out = self.clear_alarm(ev.ts, codes.METER_ALARM_FLAG, cause, f"{ev.flag} normal")
        out += self.update_status(ev.ts)
        return out

    def _on_anomaly(self, ev: MeterAnomaly) -> list[Record]:
        if ev.reason == "energy_decreased":
            return self.raise_alarm(
                ev.ts, codes.METER_ENERGY_DECREASED, "meter.energy_decreased", ev.detail, "device"
            )
        if ev.reason == "energy_jump":
            return self.raise_alarm(
                ev.ts, codes.METER_ENERGY_JUMP, "meter.energy_jump", ev.detail, "device"
            )
        return []

    def _energy_decreased(self, ts: float, last: float, energy: float) -> list[Record]:
        """Keep the energy already measured in the session on the new baseline; alarm."""
        s = self.session
        if s is not None and s.meter_start is not None and s.meter_last is not None:
            so_far = s.meter_last.energy_kwh - s.meter_start.energy_kwh
            s.meter_start = MeterPoint(ts, energy - so_far)
            s.extra_bits["meter.energy_decreased"] = 1
        detail = f"energy_import_kwh went back from {last:g} to {energy:g}"
        return self.raise_alarm(
            ts, codes.METER_ENERGY_DECREASED, "meter.energy_decreased", detail, "device"
        )

    def _on_reading(self, r: MeterReading) -> list[Record]:
        out: list[Record] = []
        previous, self.reading = self.reading, r
        self.last_meter_ts = r.ts
        self.meter_online = True
        v = r.values
        energy = r.energy_import_kwh
        s = self.session
        if energy is not None:
            last = self.last_energy_kwh
            if last is not None and energy > last:
                self.stats.add_energy(self.connector_id, energy - last)
            elif last is not None and energy < last:
                out += self._energy_decreased(r.ts, last, energy)
            self.last_energy_kwh = energy
        temp = v.get("x_connector_temp_c")
        if temp is not None:
            limit = self.config.safety.connector_over_temp_c
            cause = "rule.connector_over_temp"
            if temp > limit:
                out += self.raise_alarm(r.ts, 18, cause, f"gun {temp:.0f} °C", "device")
            elif temp < limit - self.config.safety.hysteresis_c:
                out += self.clear_alarm(r.ts, 18, cause, f"gun {temp:.0f} °C")
        if not self.has_can:
            out += self._ac_session(r, previous)
            s = self.session
        if s is not None and energy is not None:
            point = MeterPoint(r.ts, energy)
            if s.meter_start is None:
                s.meter_start = point
            s.meter_last = point
        power = v.get("power_w")
        if s is not None and power is not None and not (self.has_can and s.ccs_seen):
            s.peak_power_kw = max(s.peak_power_kw, abs(power) / 1000.0)
        p = self.pending
        if p is not None and energy is not None and r.ts >= (p.session.end_ts or 0.0):
            p.session.meter_last = MeterPoint(r.ts, energy)
            out += self._finalize(r.ts)
        return out

    def _ac_session(self, r: MeterReading, previous: MeterReading | None) -> list[Record]:
        current = _max_abs(r.values, "current_a", "current_l1_a", "current_l2_a", "current_l3_a")
        if current is None:
            return []
        threshold = self.config.sampling.ac_charging_current_a
        s = self.session
        if current > threshold:
            self.ac_below_since = None
            if s is None:
                s = self._open(r.ts)
                if previous is not None and previous.energy_import_kwh is not None:
                    s.meter_start = MeterPoint(previous.ts, previous.energy_import_kwh)
                s.charging_started_ts = r.ts
            s.phase = Phase.CHARGING.value
            s.paused = False
        elif s is not None:
            s.paused = True
            if self.ac_below_since is None:
                self.ac_below_since = r.ts
        return []


_HANDLERS: dict[type, Any] = {
    SessionStarted: ConnectorModel._on_started,
    PhaseChanged: ConnectorModel._on_phase,
    VehicleIdentified: ConnectorModel._on_vehicle,
    ParametersReceived: ConnectorModel._on_params,
    ChargingStarted: ConnectorModel._on_charging,
    ChargingSample: ConnectorModel._on_sample,
    ChargingPaused: ConnectorModel._on_pause,
    ChargingResumed: ConnectorModel._on_pause,
    StopRequested: ConnectorModel._on_stop,
    SessionEnded: ConnectorModel._on_ended,
    ErrorReported: ConnectorModel._on_error,
    CommunicationLost: ConnectorModel._on_lost,
    SessionClosed: ConnectorModel._on_closed,
}
