"""The T/CEC connector status of one connector and its ``connector_status`` body, as pure
functions of the connector's state (``docs/STATION.md``, "Connector status"):

* 0 offline: every source (CAN bus, meter) silent for ``sampling.offline_after_s``;
* 1 idle; 2 occupied (plugged, handshake/configuration, paused, stopping);
* 3 charging: GB/T charging phase (DC), or meter current above
  ``sampling.ac_charging_current_a`` (AC without CAN);
* 4 reserved (a :class:`~agent.station.inputs.Reservation`); 255 fault: BEM/CEM or a fault stop,
  until the session closes or reconnects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from agent.records.bodies import ConnectorStatusBody
from agent.station.money import money_so_far
from agent.station.session import Session
from drivers.gbt27930.events import Phase
from drivers.modbus.events import MeterReading

if TYPE_CHECKING:
    from agent.station.connector import ConnectorModel

OFFLINE: Final = 0
IDLE: Final = 1
OCCUPIED: Final = 2
CHARGING: Final = 3
RESERVED: Final = 4
FAULT: Final = 255

Status = Literal[0, 1, 2, 3, 4, 255]


def derive_status(
    session: Session | None,
    *,
    fault: bool,
    reserved: bool,
    sources_silent: bool,
    silent_long_enough: bool,
) -> Status | None:
    """The status now; None while every source is silent but the connector is too new to be
    called offline (nothing to report yet)."""
    if session is not None:
        if fault:
            return FAULT
        if session.phase == Phase.CHARGING and not session.paused:
            return CHARGING
        return OCCUPIED
    if reserved:
        return RESERVED
    if sources_silent:
        return OFFLINE if silent_long_enough else None
    return IDLE


def status_body(
    status: Status, c: ConnectorModel, reading: MeterReading | None, ts: float
) -> ConnectorStatusBody:
    """The ``connector_status`` body at ``ts``: V/A/kW and the register from the meter's
    ``reading`` (None when there is none or the meter is offline), else the charger's CCS
    output while charging; SOC from the last battery sample; the session's money so far."""
    s = c.session
    va = vb = vc = ia = ib = ic = 0.0
    power_kw = 0.0
    energy_kwh: float | None = None
    temp_c: int | None = None
    if reading is not None:
        v = reading.values
        va = v.get("voltage_v", v.get("voltage_l1_v", 0.0))
        vb, vc = v.get("voltage_l2_v", 0.0), v.get("voltage_l3_v", 0.0)
        ia = abs(v.get("current_a", v.get("current_l1_a", 0.0)))
        ib, ic = abs(v.get("current_l2_a", 0.0)), abs(v.get("current_l3_a", 0.0))
        power_kw = v.get("power_w", 0.0) / 1000.0
        energy_kwh = reading.energy_import_kwh
        if "x_connector_temp_c" in v:
            temp_c = round(v["x_connector_temp_c"])
    elif s is not None and s.last_sample is not None and status == CHARGING:
        smp = s.last_sample
        va = smp.charger_voltage_v or 0.0
        ia = abs(smp.charger_current_a or 0.0)
        power_kw = va * ia / 1000.0
    soc = None
    if s is not None and s.last_sample is not None:
        soc = s.last_sample.soc_pct
    return ConnectorStatusBody(
        status=status,
        phase=None if s is None or s.phase is None else s.phase.lower(),
        voltage_v=round(va, 1),
        current_a=round(ia, 1),
        voltage_b_v=round(vb, 1),
        voltage_c_v=round(vc, 1),
        current_b_a=round(ib, 1),
        current_c_a=round(ic, 1),
        power_kw=round(power_kw, 3),
        energy_kwh=energy_kwh,
        soc_pct=soc,
        connector_temp_c=temp_c,
        session_id=None if s is None else s.session_id,
        session_start_ts=None if s is None else s.start_iso,
        charge_energy_kwh=0.0 if s is None else round(s.energy_so_far_kwh(), 3),
        **money_so_far(c.tariffs, c.tariff_id, s, ts),
    )
