"""The ``charge_order`` of a session, as pure functions of what the session holds
(``docs/STATION.md``, "The order"): which energy counts, why it stopped, the vehicle, the OCMF
transaction code, the body."""

from __future__ import annotations

from typing import Literal

from agent.records.bodies import ChargeOrderBody, VehicleBody
from agent.records.envelope import iso_ts
from agent.station import codes
from agent.station.session import Session
from drivers.gbt27930.messages import BCP, BRM

EnergySource = Literal["meter", "charger", "ccs_integral", "none"]

#: tracker end reasons that mean the session was cut off rather than stopped
INTERRUPTED_END_REASONS = frozenset({"lost", "gateway_restart", "config_removed"})


def vehicle_body(brm: BRM | None, bcp: BCP | None) -> VehicleBody | None:
    """The vehicle as BRM (recognition) and BCP (charging limits) describe it."""
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


def session_energies(s: Session) -> tuple[float | None, float | None, float | None]:
    """The session's energy as the meter (delta), the charger (CSD) and the CCS integral count
    it; None where a source has nothing to say."""
    gbt = s.gbt
    charger_kwh = None if gbt is None or gbt.csd is None else gbt.csd.output_energy_kwh
    return s.meter_energy_kwh(), charger_kwh, s.ccs_integral_kwh()


def order_energy(
    meter_kwh: float | None, charger_kwh: float | None, ccs_kwh: float | None
) -> tuple[float, EnergySource]:
    """The meter delta, else the charger's CSD, else the CCS integral, else 0 (``none``)."""
    if meter_kwh is not None:
        return meter_kwh, "meter"
    if charger_kwh is not None:
        return charger_kwh, "charger"
    if ccs_kwh is not None:
        return ccs_kwh, "ccs_integral"
    return 0.0, "none"


def stop_outcome(s: Session, has_can: bool) -> tuple[codes.StopReason, dict[str, int]]:
    """The T/CEC StopReason and the order's ``stop_bits`` (GB/T bits, station markers)."""
    gbt = s.gbt
    if gbt is None:
        bits = codes.stop_bits(None, None, None, None)
        initiator = last_error_side = None
    else:
        bits = codes.stop_bits(gbt.bst, gbt.cst, gbt.bem, gbt.cem)
        initiator, last_error_side = gbt.stop_initiator, gbt.last_error_side
    bits.update(s.extra_bits)
    if not has_can:
        return codes.STOP_BMS, bits
    reason = codes.stop_reason(bits, initiator, last_error_side)
    if reason == codes.STOP_USER and s.remote_stop:
        reason = codes.STOP_PLATFORM
    return reason, bits


def ocmf_transaction(end_reason: str | None, reason: codes.StopReason) -> str:
    """The OCMF reading type of the end reading: P power failure / gateway restart, A aborted,
    L local stop, R remote (platform) stop, E normal end."""
    if end_reason == "gateway_restart":
        return "P"
    if end_reason in INTERRUPTED_END_REASONS or reason == codes.STOP_CHARGER_FAULT:
        return "A"
    if reason == codes.STOP_USER:
        return "L"
    if reason == codes.STOP_PLATFORM:
        return "R"
    return "E"


def order_body(
    s: Session,
    *,
    end_ts: float,
    meter_id: str | None,
    reason: codes.StopReason,
    stop_bits: dict[str, int],
    ocmf: str | None,
) -> ChargeOrderBody:
    """The order of a closed session."""
    meter_kwh, charger_kwh, ccs_kwh = session_energies(s)
    energy_kwh, source = order_energy(meter_kwh, charger_kwh, ccs_kwh)
    partial = source == "none" or (source == "ccs_integral" and not s.seen_whole)
    return ChargeOrderBody(
        session_id=s.session_id,
        start_ts=iso_ts(s.start_ts),
        end_ts=iso_ts(end_ts),
        meter_energy_start_kwh=None if s.meter_start is None else s.meter_start.energy_kwh,
        meter_energy_end_kwh=None if s.meter_last is None else s.meter_last.energy_kwh,
        energy_kwh=round(energy_kwh, 3),
        energy_source=source,
        charger_energy_kwh=charger_kwh,
        ccs_energy_kwh=None if ccs_kwh is None else round(ccs_kwh, 3),
        meter_id=meter_id,
        soc_start_pct=s.soc_start_pct,
        soc_end_pct=s.soc_last_pct,
        vin=s.vin,
        duration_s=None if s.timestamps_constant else max(0, round(end_ts - s.start_ts)),
        peak_power_kw=round(s.peak_power_kw, 3),
        stop_reason=reason,
        stop_bits=stop_bits,
        interrupted=s.end_reason in INTERRUPTED_END_REASONS,
        end_reason=s.end_reason,
        vehicle=vehicle_body(s.brm, s.bcp),
        ocmf=ocmf,
        start_ts_estimated=s.start_estimated,
        start_ts_earliest=_iso_or_none(s.start_ts_earliest),
        end_ts_estimated=s.end_estimated,
        end_ts_latest=_iso_or_none(s.end_ts_latest),
        energy_estimated=s.energy_estimated or partial,
        resumed=s.resumes,
        unobserved_s=round(s.unobserved_s, 1),
        notes=tuple(s.notes),
    )


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso_ts(ts)
