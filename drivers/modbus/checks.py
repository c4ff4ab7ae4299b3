"""Sans-I/O plausibility checks for one meter's readings.

:class:`ReadingChecker` remembers the last accepted energies and alarm flags of one meter
and turns decoded values into a :class:`MeterReading` plus events:

- NaN/inf and physically impossible values are rejected with a reason
  (``value_rejected`` anomaly when a quantity starts being rejected, not on every poll);
- an energy register that decreases becomes the new baseline, without an event: noticing a
  register going back is the station's rule for every meter protocol
  (``agent/station/registers.py``);
- an energy increase larger than the rated power allows in the elapsed time (+10 % and one
  register step of slack) is accepted but flagged (``energy_jump``);
- alarm flags raise/clear :class:`MeterAlarm` events on change.
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers.modbus.decode import Decoded
from drivers.modbus.events import MeterAlarm, MeterAnomaly, MeterEvent, MeterReading
from drivers.modbus.quantities import ENERGY_NAMES, physical_problem

JUMP_MARGIN = 1.10
JUMP_SLACK_KWH = 0.02
"""Slack for register resolution (0.01 kWh registers) when checking energy jumps."""
POWER_MARGIN = 2.0
"""A power reading above twice the rated power is impossible for the installation."""


class ReadingChecker:
    def __init__(
        self,
        meter_id: str,
        rated_power_w: float | None = None,
        alarm_flags: Iterable[str] = (),
    ) -> None:
        self.meter_id = meter_id
        self.rated_power_w = rated_power_w
        self.alarm_flags = tuple(alarm_flags)
        self._energy: dict[str, tuple[float, float]] = {}  # name -> (value, ts)
        self._rejected: set[str] = set()
        self._active_alarms: set[str] = set()

    def check(self, decoded: Decoded, ts: float) -> tuple[MeterReading, list[MeterEvent]]:
        values, rejected = self._plausible(decoded)
        events, notes = self._energy_events(values, ts)
        events += self._rejection_events(decoded, rejected, ts)
        alarm_events, active = self._alarm_events(decoded, ts)
        events += alarm_events
        reading = MeterReading(
            self.meter_id,
            ts,
            values,
            dict(decoded.flags),
            rejected,
            tuple(sorted(active)),
            tuple(notes),
        )
        return reading, events

    def _plausible(self, decoded: Decoded) -> tuple[dict[str, float], dict[str, str]]:
        """The values that can be real, and the reasons for the others."""
        values: dict[str, float] = {}
        rejected = dict(decoded.rejected)
        for name, value in decoded.values.items():
            problem = physical_problem(name, value)
            if problem is None and self.rated_power_w and name.startswith("power_"):
                limit = self.rated_power_w * POWER_MARGIN
                if abs(value) > limit:
                    problem = (
                        f"{value:g} W is more than twice the rated power {self.rated_power_w:g} W"
                    )
            if problem is not None:
                rejected[name] = problem
                continue
            values[name] = value
        return values, rejected

    def _energy_events(
        self, values: dict[str, float], ts: float
    ) -> tuple[list[MeterEvent], list[str]]:
        """Energy registers against their last value: impossible jumps (a decrease only moves
        the baseline)."""
        events: list[MeterEvent] = []
        notes: list[str] = []
        for name in ENERGY_NAMES:
            value = values.get(name)
            if value is None:
                continue
            last = self._energy.get(name)
            self._energy[name] = (value, ts)
            if last is None:
                continue
            prev, prev_ts = last
            if value >= prev and self.rated_power_w and ts > prev_ts:
                allowed = (
                    self.rated_power_w * (ts - prev_ts) / 3600.0 / 1000.0 * JUMP_MARGIN
                    + JUMP_SLACK_KWH
                )
                if value - prev > allowed:
                    events.append(
                        MeterAnomaly(
                            self.meter_id,
                            ts,
                            "energy_jump",
                            name,
                            f"{name} rose by {value - prev:g} in {ts - prev_ts:g} s; the rated "
                            f"power {self.rated_power_w:g} W allows at most {allowed:g}",
                            prev,
                            value,
                        )
                    )
                    notes.append(f"{name} jumped")
        return events, notes

    def _rejection_events(
        self, decoded: Decoded, rejected: dict[str, str], ts: float
    ) -> list[MeterEvent]:
        """A ``value_rejected`` anomaly when a quantity starts being rejected."""
        events: list[MeterEvent] = []
        for name in sorted(set(rejected) - self._rejected):
            current = decoded.values.get(name)
            events.append(
                MeterAnomaly(
                    self.meter_id,
                    ts,
                    "value_rejected",
                    name,
                    rejected[name],
                    None,
                    current,
                )
            )
        self._rejected = set(rejected)
        return events

    def _alarm_events(self, decoded: Decoded, ts: float) -> tuple[list[MeterEvent], set[str]]:
        """Alarm flags raised and cleared since the last poll, and the ones now active."""
        events: list[MeterEvent] = []
        active = {f for f in self.alarm_flags if decoded.flags.get(f)}
        for flag in sorted(active - self._active_alarms):
            events.append(MeterAlarm(self.meter_id, ts, flag, True))
        for flag in sorted(self._active_alarms - active):
            if flag in decoded.flags:  # a flag we could not read is not "cleared"
                events.append(MeterAlarm(self.meter_id, ts, flag, False))
            else:
                active.add(flag)
        self._active_alarms = active
        return events, active
