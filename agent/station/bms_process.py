"""Battery-process samples (Shenzhen BmsInfo) from the merged GB/T 27930 battery data.

A sample is complete once BCS (SOC, measured voltage/current) and BSM (temperatures) have
arrived; until then :func:`bms_body` returns None. Currents are reported as positive charging
currents. What the vehicle never sent to the gateway (limits and identification of a session
it joined after BRM/BCP) is None, never a made-up value; the uplinks say how they carry it.
"""

from __future__ import annotations

from agent.records.bodies import BmsProcessBody
from agent.records.envelope import iso_ts
from agent.station.session import Session
from agent.station.status import Status
from drivers.gbt27930.events import ChargingSample


def _abs(v: float | None) -> float:
    return 0.0 if v is None else round(abs(v), 1)


def bms_code(s: Session) -> str | None:
    """VIN, else battery manufacturer + pack serial, else None (the uplink falls back)."""
    if s.vin:
        return s.vin
    brm = s.brm
    if brm is not None and brm.battery_pack_serial is not None:
        maker = brm.battery_manufacturer or (brm.battery_manufacturer_raw or b"").hex().upper()
        return f"{maker}-{brm.battery_pack_serial}"
    return None


def bms_body(s: Session, sample: ChargingSample, status: Status) -> BmsProcessBody | None:
    if (
        sample.soc_pct is None
        or sample.bms_voltage_v is None
        or sample.bms_current_a is None
        or sample.max_battery_temp_c is None
        or sample.min_battery_temp_c is None
        or sample.max_cell_voltage_v is None
    ):
        return None
    brm, bcp = s.brm, s.bcp
    cells = [] if sample.bmv is None else [v for v in sample.bmv.cell_voltages_v if v is not None]
    min_cell = min(cells) if cells else None
    version = None if brm is None else brm.bms_protocol_version
    started = s.charging_started_ts if s.charging_started_ts is not None else s.start_ts
    return BmsProcessBody(
        session_id=s.session_id,
        connector_status=status,
        demand_voltage_v=0.0 if sample.voltage_demand_v is None else sample.voltage_demand_v,
        demand_current_a=_abs(sample.current_demand_a),
        measured_voltage_v=sample.bms_voltage_v,
        measured_current_a=_abs(sample.bms_current_a),
        soc_pct=sample.soc_pct,
        max_cell_voltage_v=sample.max_cell_voltage_v,
        max_cell_voltage_no=sample.max_cell_voltage_index,
        min_cell_voltage_v=min_cell,
        max_temp_c=sample.max_battery_temp_c,
        max_temp_probe_no=sample.max_temp_probe_index,
        min_temp_c=sample.min_battery_temp_c,
        min_temp_probe_no=sample.min_temp_probe_index,
        charger_output_voltage_v=(
            0.0 if sample.charger_voltage_v is None else sample.charger_voltage_v
        ),
        charger_output_current_a=_abs(sample.charger_current_a),
        max_allowed_charge_current_a=(
            None
            if bcp is None or bcp.max_charge_current_a is None
            else round(abs(bcp.max_charge_current_a), 1)
        ),
        max_allowed_cell_voltage_v=None if bcp is None else bcp.max_cell_charge_voltage_v,
        max_allowed_temp_c=None if bcp is None else bcp.max_temperature_c,
        bms_protocol_version=f"V{version}" if version else None,
        battery_type=None if brm is None else brm.battery_type_code,
        rated_capacity_ah=None if brm is None else brm.rated_capacity_ah,
        vin=s.vin,
        bms_code=bms_code(s),
        elapsed_minutes=(
            None if sample.timestamps_constant else max(0, int((sample.ts - started) // 60))
        ),
        remaining_minutes=sample.remaining_charge_time_min,
        session_start_ts=iso_ts(s.start_ts),
    )
