"""When the tracker takes a :class:`~drivers.gbt27930.events.ChargingSample` of a session, and
what goes in it.

Normally at most once per ``sample_interval_s`` of frame time. Some capture exporters write one
timestamp for a whole file; while the timestamps of a session do not advance, time cannot gate
anything, so a sample is taken once per *message cycle* instead: when every kind of periodic
charging message (BCL, BCS, BSM, CCS) of the previous cycle has arrived again. A kind that stops
arriving cannot hold the samples back: once another kind repeated
:data:`MAX_CYCLE_REPEATS` times, the cycle closes without it.
"""

from __future__ import annotations

from drivers.gbt27930.events import ChargingSample
from drivers.gbt27930.session_data import SessionData

#: how often one kind may arrive within a cycle before the cycle closes anyway (BCL and CCS
#: come every 50 ms, BCS and BSM every 250 ms: five of each in a normal cycle)
MAX_CYCLE_REPEATS = 20


class SampleGate:
    """Decides, message by message, whether a charging sample is due."""

    __slots__ = ("_cycle", "_expected", "interval_s", "last_ts")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_ts = float("-inf")
        self._cycle: dict[type, int] = {}  # kinds received since the last sample, with counts
        self._expected: set[type] = set()  # the kinds of the last completed cycle

    def due(self, ts: float, kind: type, timestamps_constant: bool) -> bool:
        """True (and the sample counts as taken) when ``interval_s`` passed since the last one,
        or, while ``timestamps_constant``, when a message cycle is complete. ``kind`` is the
        type of the charging message that just arrived."""
        if not timestamps_constant:
            if ts - self.last_ts < self.interval_s:
                return False
            self.last_ts = ts
            return True
        cycle = self._cycle
        repeats = cycle.get(kind, 0) + 1
        cycle[kind] = repeats
        if repeats <= MAX_CYCLE_REPEATS and not self._expected <= cycle.keys():
            return False
        self._expected = set(cycle)
        cycle.clear()
        self.last_ts = ts
        return True


def take_sample(d: SessionData, ts: float, timestamps_constant: bool) -> ChargingSample:
    """The latest BCL + BCS + BSM + CCS of the session merged, with trusted BSM states."""
    bcl, bcs, bsm, ccs, tr = d.bcl, d.bcs, d.bsm, d.ccs, d.trusted
    return ChargingSample(
        ts=ts,
        connector_id=d.connector_id,
        session_id=d.session_id,
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
        bmv=d.bmv,
        bmt=d.bmt,
        timestamps_constant=timestamps_constant,
    )
