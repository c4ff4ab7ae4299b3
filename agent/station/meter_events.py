"""What a meter's readings and events do to a connector: the session's meter points, the
register watch, gun temperature, AC sessions (no CAN: current decides), meter alarms.
:meth:`agent.station.connector.ConnectorModel.feed_meter` dispatches here; every function
returns the records to write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.records.envelope import Record
from agent.station import codes
from agent.station.money import note_register
from agent.station.registers import RegisterDecrease
from agent.station.session import MeterPoint
from drivers.gbt27930.events import Phase
from drivers.modbus.events import MeterAnomaly, MeterReading

if TYPE_CHECKING:
    from agent.station.connector import ConnectorModel


def _max_abs(values: dict[str, float], *names: str) -> float | None:
    found = [abs(values[n]) for n in names if n in values]
    return max(found) if found else None


def on_anomaly(c: ConnectorModel, ev: MeterAnomaly) -> list[Record]:
    if ev.reason == "energy_jump":
        return c.raise_alarm(
            ev.ts, codes.METER_ENERGY_JUMP, "meter.energy_jump", ev.detail, "device"
        )
    return []


def register_decreased(c: ConnectorModel, ts: float, d: RegisterDecrease) -> list[Record]:
    """Alarm; the running session keeps the energy already measured on the new import
    baseline."""
    s = c.session
    if (
        d.register == "energy_import_kwh"
        and s is not None
        and s.meter_start is not None
        and s.meter_last is not None
    ):
        so_far = s.meter_last.energy_kwh - s.meter_start.energy_kwh
        s.meter_start = MeterPoint(ts, d.current - so_far)
        s.extra_bits["meter.energy_decreased"] = 1
    return c.raise_alarm(
        ts, codes.METER_ENERGY_DECREASED, "meter.energy_decreased", d.message, "device"
    )


def on_reading(c: ConnectorModel, r: MeterReading) -> list[Record]:
    out: list[Record] = []
    previous, c.reading = c.reading, r
    c.last_meter_ts = r.ts
    c.meter_online = True
    v = r.values
    energy = r.energy_import_kwh
    s = c.session
    for decrease in c.registers.update(v):
        out += register_decreased(c, r.ts, decrease)
    if energy is not None:
        last = c.last_energy_kwh
        if last is not None and energy > last:
            c.stats.add_energy(c.connector_id, energy - last)
        c.last_energy_kwh = energy
    temp = v.get("x_connector_temp_c")
    if temp is not None:
        limit = c.config.safety.connector_over_temp_c
        cause = "rule.connector_over_temp"
        if temp > limit:
            out += c.raise_alarm(r.ts, codes.GUN_OVER_TEMP, cause, f"gun {temp:.0f} °C", "device")
        elif temp < limit - c.config.safety.hysteresis_c:
            out += c.clear_alarm(r.ts, codes.GUN_OVER_TEMP, cause, f"gun {temp:.0f} °C")
    if not c.has_can:
        out += ac_session(c, r, previous)
        s = c.session
    if s is not None and energy is not None:
        point = MeterPoint(r.ts, energy)
        if s.meter_start is None:
            s.meter_start = point
        s.meter_last = point
        if r.meter_id not in s.meter_ids:
            s.meter_ids.append(r.meter_id)
        note_register(c.tariffs, c.tariff_id, s, r.ts, energy, c.config.sampling.max_session_h)
    power = v.get("power_w")
    if s is not None and power is not None and not (c.has_can and s.ccs_seen):
        s.peak_power_kw = max(s.peak_power_kw, abs(power) / 1000.0)
    p = c.pending
    if p is not None and energy is not None and r.ts >= (p.session.end_ts or 0.0):
        p.session.meter_last = MeterPoint(r.ts, energy)
        out += c.finalize(r.ts)
    return out


def current_of(r: MeterReading) -> float | None:
    """The largest phase current of a reading (A), None when it has none."""
    return _max_abs(r.values, "current_a", "current_l1_a", "current_l2_a", "current_l3_a")


def ac_session(c: ConnectorModel, r: MeterReading, previous: MeterReading | None) -> list[Record]:
    current = current_of(r)
    if current is None:
        return []
    threshold = c.config.sampling.ac_charging_current_a
    s = c.session
    if current > threshold:
        c.ac_below_since = None
        if s is None:
            s = c.open_session(r.ts)
            if previous is not None and previous.energy_import_kwh is not None:
                s.meter_start = MeterPoint(previous.ts, previous.energy_import_kwh)
            s.charging_started_ts = r.ts
        s.phase = Phase.CHARGING.value
        s.paused = False
    elif s is not None:
        s.paused = True
        if c.ac_below_since is None:
            c.ac_below_since = r.ts
    return []
