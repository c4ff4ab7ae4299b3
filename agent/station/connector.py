"""One connector: T/CEC status, the running session, its battery records, alarms and order.

:class:`ConnectorModel` is fed the GB/T tracker events of its CAN bus, the readings and events
of its meter, bus activity and the clock (``tick``); every method returns the records to
write. It keeps the state and dispatches the inputs; the status and the order are built by
the pure functions of :mod:`agent.station.status` and :mod:`agent.station.orders`. The GB/T
data of a DC session is the tracker's (``Session.gbt``, the latest ``SessionFacts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from agent.config.schema import (
    Config,
    ConnectorSection,
    EquipmentSection,
    MeterSection,
)
from agent.records.bodies import BmsProcessBody, body_to_dict
from agent.records.envelope import Record, iso_ts
from agent.station import abnormal, codes, gbt_events, meter_events, resume
from agent.station.alarms import AlarmBook, AlarmEdge, Scope, alarm_body
from agent.station.audit import audit_energy
from agent.station.bms_process import bms_body
from agent.station.money import connector_tariff, order_money, session_bill, tariff_text
from agent.station.ocmf import OcmfReading, OcmfSigner
from agent.station.orders import (
    INTERRUPTED_END_REASONS,
    ocmf_transaction,
    order_body,
    session_energies,
    stop_outcome,
)
from agent.station.registers import RegisterWatch
from agent.station.safety import SafetyMonitor
from agent.station.session import MeterPoint, Session, session_id_for
from agent.station.stats import StatsRoller
from agent.station.status import CHARGING, OCCUPIED, Status, derive_status, status_body
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
from drivers.modbus.events import MeterAlarm, MeterAnomaly, MeterOffline, MeterOnline, MeterReading


@dataclass(slots=True)
class _Pending:
    """A closed session waiting for the meter's first reading after the end."""

    session: Session
    deadline_ts: float


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
        self.tariffs, self.tariff_id = connector_tariff(config, connector)
        self.equipment = equipment
        self.connector = connector
        self.connector_id = connector.connector_id
        self.meter = meter
        self.has_can = has_can
        self.is_dc = connector.connector_type == 4 or equipment.equipment_type == 1
        self.stats = stats
        self.signer = signer
        self.created_ts = start_ts
        self.status: Status | None = None
        self.last_status_ts: float | None = None
        self.session: Session | None = None
        self.pending: _Pending | None = None
        self.fault = False
        self.reserved = False
        self.alarms = AlarmBook()
        self.orders_seen = abnormal.AbnormalWatch()
        self.last_bus_ts: float | None = None
        self.last_meter_ts: float | None = None
        self.meter_online = True
        self.reading: MeterReading | None = None
        self.last_energy_kwh: float | None = None
        self.registers = RegisterWatch()
        self.charging_since: float | None = None
        self.ac_below_since: float | None = None
        self.restart: resume.Restart | None = None
        """What is left to settle after a gateway start (:mod:`agent.station.resume`)."""

    # ------------------------------------------------------------------ records

    def record(self, kind: str, ts: float, body: msgspec.Struct) -> Record:
        return Record(
            kind=kind,
            ts=iso_ts(ts),
            station_id=self.station_id,
            body=body_to_dict(body),
            equipment_id=self.equipment.equipment_id,
            connector_id=self.connector_id,
        )

    def alarm_records(self, edges: Sequence[AlarmEdge | None]) -> list[Record]:
        out: list[Record] = []
        bms = self._bms_snapshot() if self.is_dc else None
        for e in edges:
            if e is None:
                continue
            if e.status == "raised":
                self.stats.add_alarm(self.connector_id, e.code)
                if self.session is not None:
                    self.session.bms_due = True
            out.append(self.record("alarm", e.ts, alarm_body(e, bms)))
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
        return self.alarm_records([self.alarms.raise_(ts, code, cause, message, scope)])

    def clear_alarm(self, ts: float, code: int, cause: str, message: str) -> list[Record]:
        return self.alarm_records([self.alarms.clear(ts, code, cause, message)])

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

    def _derive(self, ts: float) -> Status | None:
        silent = self._sources_silent(ts)
        return derive_status(
            self.session,
            fault=self.fault,
            reserved=self.reserved,
            sources_silent=silent,
            silent_long_enough=ts - self.created_ts >= self.config.sampling.offline_after_s,
        )

    def _status_record(self, ts: float, status: Status) -> Record:
        reading = self.reading if self.meter_online else None
        return self.record("connector_status", ts, status_body(status, self, reading, ts))

    def _track_charging(self, ts: float, status: Status) -> None:
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
        return [self._status_record(ts, new)]

    def heartbeat(self, ts: float) -> list[Record]:
        if (
            self.status == CHARGING
            and self.last_status_ts is not None
            and ts - self.last_status_ts >= self.config.sampling.status_heartbeat_s
        ):
            self.last_status_ts = ts
            return [self._status_record(ts, CHARGING)]
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
            out += self.finalize(ts)
        s = self.session
        if self.has_can and s is not None and s.phase == Phase.CHARGING and not s.paused:
            out += self._bms_timeout(ts, s)
        if (
            self.session is not None
            and not self.has_can
            and self.ac_below_since is not None
            and ts - self.ac_below_since >= self.config.sampling.ac_session_end_s
        ):
            out += self.close_session(ts, "current_stopped")
        if self.restart is not None:
            out += resume.tick(self, ts)
        out += self.update_status(ts)
        out += self.heartbeat(ts)
        return out

    def _bms_timeout(self, ts: float, s: Session) -> list[Record]:
        last = s.last_sample_ts if s.last_sample_ts is not None else s.charging_started_ts
        if last is None or self.alarms.has_cause("rule.bms_timeout"):
            return []
        silent = ts - last
        if silent > self.config.safety.bms_timeout_s:
            return self.raise_alarm(
                ts, codes.BMS_TIMEOUT, "rule.bms_timeout", f"no battery data for {silent:.1f} s"
            )
        return []

    # ------------------------------------------------------------------ GB/T events

    def feed_bms(self, ev: BmsEvent) -> list[Record]:
        self.last_bus_ts = ev.ts
        out: list[Record] = []
        if self.restart is not None:
            out, taken = resume.before_bms(self, ev)
            if taken:
                return out + self.update_status(ev.ts)
        out += self._dispatch_bms(ev)
        out += self.update_status(ev.ts)
        return out

    def _dispatch_bms(self, ev: BmsEvent) -> list[Record]:
        out: list[Record]
        match ev:
            case ChargingSample():
                out = gbt_events.on_sample(self, ev)
            case SessionStarted():
                out = gbt_events.on_started(self, ev)
            case PhaseChanged():
                out = gbt_events.on_phase(self, ev)
            case VehicleIdentified() | ParametersReceived():
                out = gbt_events.on_facts(self, ev)
            case ChargingStarted():
                out = gbt_events.on_charging(self, ev)
            case ChargingPaused() | ChargingResumed():
                out = gbt_events.on_pause(self, ev)
            case StopRequested():
                out = gbt_events.on_stop(self, ev)
            case SessionEnded():
                out = gbt_events.on_ended(self, ev)
            case ErrorReported():
                out = gbt_events.on_error(self, ev)
            case CommunicationLost():
                out = gbt_events.on_lost(self, ev)
            case SessionClosed():
                out = gbt_events.on_closed(self, ev)
            case _:
                out = []
        return out

    def open_session(self, ts: float) -> Session:
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

    def session_for(self, ev: BmsEvent) -> Session | None:
        s = self.session
        if s is None or (s.tracker_session is not None and s.tracker_session != ev.session_id):
            return None
        return s

    # ------------------------------------------------------------------ closing and orders

    def close_session(self, ts: float, end_reason: str) -> list[Record]:
        """End the running session now; the order waits for one more meter reading."""
        s = self.session
        assert s is not None
        s.end_reason = end_reason
        s.end_ts = ts
        self.session = None
        self.fault = False
        self.ac_below_since = None
        out = self.alarm_records(self.alarms.clear_scope(ts, "session", "session ended"))
        out += self.update_status(ts)
        if (
            self.meter is not None
            and self.meter_online
            and end_reason not in INTERRUPTED_END_REASONS
        ):
            wait = 2 * self.meter.poll_interval_s + 1.0
            self.pending = _Pending(s, ts + wait)
        else:
            self.pending = _Pending(s, ts)
            out += self.finalize(ts)
        return out

    def finalize(self, ts: float) -> list[Record]:
        p = self.pending
        if p is None:
            return []
        self.pending = None
        s = p.session
        end_ts = s.end_ts if s.end_ts is not None else ts
        reason, bits = stop_outcome(s, self.has_can)
        order = order_body(
            s,
            end_ts=end_ts,
            meter_id=None if self.meter is None else self.meter.meter_id,
            reason=reason,
            stop_bits=bits,
            ocmf=self._ocmf(s, reason),
        )
        money = order_money(
            session_bill(
                self.tariffs, self.tariff_id, s, end_ts, order.energy_kwh, order.energy_source
            )
        )
        order = msgspec.structs.replace(order, **money)
        self.stats.add_stop_reason(self.connector_id, reason)
        out = [self.record("charge_order", end_ts, order), *abnormal.alarms(self, ts, s, order)]
        meter_kwh, charger_kwh, ccs_kwh = session_energies(s)
        # a counter that saw part of the session is compared with nothing
        ccs_whole = ccs_kwh if s.seen_whole else None
        out += self._audit(ts, s.start_ts, meter_kwh, charger_kwh, ccs_whole)
        return out

    def _ocmf(self, s: Session, reason: codes.StopReason) -> str | None:
        if self.signer is None or self.meter is None:
            return None
        if s.meter_start is None or s.meter_last is None:
            return None
        end = s.meter_last
        return self.signer.sign_order(
            meter_serial=self.meter.meter_id,
            meter_model=self.meter.profile,
            connector_id=self.connector_id,
            session_id=s.session_id,
            tariff_text=tariff_text(self.tariffs, self.tariff_id, s.start_ts, end.ts),
            current_type="DC" if self.is_dc else "AC",
            begin=OcmfReading(s.meter_start.ts, s.meter_start.energy_kwh, "B"),
            end=OcmfReading(
                end.ts,
                end.energy_kwh,
                ocmf_transaction(s.end_reason, reason),
                "G" if end.online else "T",
            ),
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
                (codes.UNOBSERVED_ENERGY, "audit.unobserved_energy"),
            ):
                raised = self.alarms.raised_ts(code)
                if raised is not None and raised < session_start_ts:
                    out += self.clear_alarm(ts, code, cause, "a later order passed the audit")
        return out

    def order_now(self, s: Session, ts: float) -> list[Record]:
        """Write the order of a session closed outside the bus's events (after a restart)."""
        out = self.finalize(ts)  # an order still waiting for its end reading goes first
        self.pending = _Pending(s, ts)
        return out + self.finalize(ts)

    def finish_pending(self, ts: float) -> list[Record]:
        """Write the order waiting for the meter's end reading with the last one known."""
        return self.finalize(ts)

    def close_for_removal(self, ts: float) -> list[Record]:
        """The connector left the config: close what is open."""
        out: list[Record] = []
        if self.pending is not None:
            out += self.finalize(ts)
        if self.session is not None:
            out += self.close_session(ts, "config_removed")
        return out

    # ------------------------------------------------------------------ meter events

    def feed_meter(
        self, ev: MeterReading | MeterOffline | MeterOnline | MeterAnomaly | MeterAlarm
    ) -> list[Record]:
        if isinstance(ev, MeterReading):
            out = []
            if self.restart is not None and not self.has_can:
                out += resume.ac_reading(self, meter_events.current_of(ev), ev.ts)
            out += meter_events.on_reading(self, ev)
            energy = ev.energy_import_kwh
            if self.restart is not None and energy is not None:
                out += resume.on_reading(self, MeterPoint(ev.ts, energy))
        elif isinstance(ev, MeterOffline):
            self.meter_online = False
            out = self.raise_alarm(
                ev.ts,
                codes.METER_COMMUNICATION,
                "meter.offline",
                f"meter {ev.meter_id}: {ev.reason}",
                "device",
            )
            if self.session is not None and self.session.meter_last is not None:
                last = self.session.meter_last
                self.session.meter_last = MeterPoint(last.ts, last.energy_kwh, online=False)
            if self.pending is not None:
                out += self.finalize(ev.ts)
        elif isinstance(ev, MeterOnline):
            self.meter_online = True
            self.last_meter_ts = ev.ts
            out = self.clear_alarm(
                ev.ts,
                codes.METER_COMMUNICATION,
                "meter.offline",
                f"meter {ev.meter_id} answers again",
            )
        elif isinstance(ev, MeterAnomaly):
            out = meter_events.on_anomaly(self, ev)
        else:
            cause = f"meter.flag.{ev.flag}"
            if ev.active:
                msg = f"meter {ev.meter_id} flag {ev.flag}"
                out = self.raise_alarm(ev.ts, codes.METER_ALARM_FLAG, cause, msg, "device")
            else:
                out = self.clear_alarm(ev.ts, codes.METER_ALARM_FLAG, cause, f"{ev.flag} normal")
        out += self.update_status(ev.ts)
        return out
