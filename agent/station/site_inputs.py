"""The station's own sensors and its grid connection as alarms (docs/METERS.md §10).

* ``InputChanged``: each role stands for an alarm code (:data:`ROLE_CODES`), raised when the
  input becomes active and cleared when it is inactive again, on every connector it lists
  (or on the station). Its first state after a start raises nothing when inactive; it clears
  an alarm a previous run left raised. ``custom`` inputs have no code: each change is a
  ``site_input`` event.
* ``InputFault``: the module's own alarm 9201, raised and cleared on the station. Its inputs
  keep their last state (the driver sends no change), so silence is never a "door closed".
* The station main meter's readings: alarm 201 while a phase voltage is above
  ``safety.grid_over_voltage_v`` (cleared 2 % below it), alarm 202 while its power is above
  ``station.capacity_kw`` (cleared at 95 % of it).
"""

from __future__ import annotations

from typing import Final

from agent.config.schema import Config
from agent.records.bodies import EventBody
from agent.records.envelope import Record
from agent.station import codes
from agent.station.place import Place, StationPlace
from drivers.inputs.events import InputChanged, InputFault
from drivers.modbus.events import MeterReading

ROLE_CODES: Final[dict[str, int]] = {
    "estop": codes.EMERGENCY_STOP,
    "smoke_charger": codes.SMOKE_CHARGER,
    "smoke_room": codes.SMOKE_ROOM,
    "door": codes.SERVICE_DOOR_OPEN,
    "breaker_aux": codes.SWITCH_TRIPPED,
    "seal": codes.SEAL_SWITCH_OPENED,
    "flood": codes.FLOOD,
}
"""The alarm of each input role; ``custom`` has none (a ``site_input`` event)."""

SITE_INPUT: Final = "site_input"
"""The ``event`` a ``custom`` input writes at each change."""

PHASE_VOLTAGES: Final = ("voltage_v", "voltage_l1_v", "voltage_l2_v", "voltage_l3_v")
OVER_VOLTAGE_CLEAR: Final = 0.98
"""Alarm 201 clears once every phase voltage is at most this fraction of the threshold."""
OVERLOAD_CLEAR: Final = 0.95
"""Alarm 202 clears once the power is at most this fraction of the capacity."""


def on_input(places: list[Place], ev: InputChanged, description: str) -> list[Record]:
    code = ROLE_CODES.get(ev.role)
    cause = f"input.{ev.input_id}"
    state = "active" if ev.active else "inactive"
    msg = f"input {ev.input_id} ({description or ev.role}) {state}"
    out: list[Record] = []
    for place in places:
        if code is not None:
            if ev.active:
                out += place.raise_alarm(ev.ts, code, cause, msg, "device")
            else:
                out += place.clear_alarm(ev.ts, code, cause, msg)
        elif ev.active or not ev.initial:
            details = {
                "input_id": ev.input_id,
                "role": ev.role,
                "active": ev.active,
                "initial": ev.initial,
                "description": description,
            }
            body = EventBody(event=SITE_INPUT, message=msg, details=details)
            out.append(place.record("event", ev.ts, body))
    return out


def on_fault(station: StationPlace, ev: InputFault) -> list[Record]:
    if ev.active:
        cause = f"input.fault.{ev.source_id}"
        kept = ", ".join(ev.inputs) or "none"
        msg = f"module {ev.source_id}: {ev.reason}; its inputs keep their last state ({kept})"
        return station.raise_alarm(ev.ts, codes.INPUT_SOURCE_FAULT, cause, msg, "device")
    return on_fault_cleared(station, ev.source_id, ev.ts)


def on_fault_cleared(station: StationPlace, source_id: str, ts: float) -> list[Record]:
    cause = f"input.fault.{source_id}"
    msg = f"module {source_id} answers again"
    return station.clear_alarm(ts, codes.INPUT_SOURCE_FAULT, cause, msg)


def on_main_reading(station: StationPlace, config: Config, r: MeterReading) -> list[Record]:
    out: list[Record] = []
    volts = [r.values[n] for n in PHASE_VOLTAGES if n in r.values]
    if volts:
        top, limit = max(volts), config.safety.grid_over_voltage_v
        cause = f"grid.{r.meter_id}.over_voltage"
        msg = f"main meter {r.meter_id}: {top:.1f} V (limit {limit:.0f} V)"
        if top > limit:
            out += station.raise_alarm(r.ts, codes.GRID_OVER_VOLTAGE, cause, msg, "device")
        elif top <= limit * OVER_VOLTAGE_CLEAR:
            out += station.clear_alarm(r.ts, codes.GRID_OVER_VOLTAGE, cause, msg)
    capacity_kw, power_w = config.station.capacity_kw, r.values.get("power_w")
    if capacity_kw is not None and power_w is not None:
        kw = abs(power_w) / 1000.0
        cause = f"grid.{r.meter_id}.overload"
        msg = f"main meter {r.meter_id}: {kw:.1f} kW (capacity {capacity_kw:g} kW)"
        if kw > capacity_kw:
            out += station.raise_alarm(r.ts, codes.OVERLOAD, cause, msg, "device")
        elif kw <= capacity_kw * OVERLOAD_CLEAR:
            out += station.clear_alarm(r.ts, codes.OVERLOAD, cause, msg)
    return out
