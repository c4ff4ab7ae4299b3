"""A simulated GB/T 27930 DC charging session, both sides (charger and BMS), as CAN frames.

``generate(vehicle, charger, options, faults)`` is pure computation: it returns a
:class:`SimSession` with the time-ordered frames (every message at its nominal period, BRM/BCP/
BCS/BMV/BMT as real RTS/CTS/DT/EndOfMsgAck exchanges), the power curve it modelled (for a meter
simulator driven from the same session) and the :class:`Expected` outcome a decoder must find.
``play(session, bus)`` sends the frames onto a python-can bus in real time or faster, and
``write_candump(session, path)`` writes a candump ``-l`` log.

Stable API for the station model, ``evgw demo`` and tests: :class:`VehicleProfile`,
:class:`ChargerProfile`, :class:`SimOptions`, :class:`Fault` / :class:`FaultKind`,
:func:`generate`, :class:`SimSession` (``frames``, ``curve``, ``expected``, ``at(ts)``),
:func:`play`, :func:`write_candump` (in :mod:`sim.charging_output`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.gbt27930.enums import BatteryType
from drivers.gbt27930.frames import Frame
from sim.charging_frames import FrameBuilder, amps, bcd, brm_payload, interp, u16, volt, with_status

_CELL_V = {
    BatteryType.LFP: (3.2, 3.65),
    BatteryType.TERNARY: (3.7, 4.2),
    BatteryType.LMO: (3.7, 4.2),
    BatteryType.LCO: (3.7, 4.2),
    BatteryType.LTO: (2.4, 2.8),
    BatteryType.LEAD_ACID: (2.0, 2.4),
    BatteryType.NIMH: (1.2, 1.5),
}


class FaultKind(StrEnum):
    BEM_TIMEOUT = "bem_timeout"  # charger goes quiet; BMS reports a CCS timeout (BEM)
    CEM_TIMEOUT = "cem_timeout"  # BMS goes quiet; charger reports a BCL timeout (CEM)
    TP_ABORT = "tp_abort"  # one BCS transfer: RTS unanswered, BMS sends Conn_Abort
    LOST_DT = "lost_dt"  # one BCS transfer loses its second TP.DT (no EndOfMsgAck)
    INSULATION = "insulation"  # BMS stops: insulation fault (BSM + BST)
    OVER_TEMPERATURE = "over_temperature"  # BMS stops: battery over-temperature (BSM + BST)
    EMERGENCY_STOP = "emergency_stop"  # charger stops: emergency stop (CST)
    CAN_SILENCE = "can_silence"  # every frame stops mid-charge


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    at_s: float = 5.0  # seconds after charging started


@dataclass(frozen=True, slots=True)
class VehicleProfile:
    """The vehicle and its battery. Currents are magnitudes (A of charging current)."""

    vin: str = "LSIMEVGW000000001"
    battery_type: BatteryType = BatteryType.LFP
    capacity_ah: float = 150.0
    rated_voltage_v: float = 364.8
    soc_start_pct: float = 30.0
    soc_target_pct: float = 80.0
    max_current_a: float = 200.0
    #: (SOC %, fraction of max_current_a), linear in between: the BMS's charging curve
    current_curve: tuple[tuple[float, float], ...] = (
        (0.0, 1.0),
        (70.0, 1.0),
        (85.0, 0.5),
        (95.0, 0.2),
        (100.0, 0.05),
    )
    protocol: str = "1.1"  # "1.1" (GB/T 27930-2015) or "1.0" (2011: no CHM/BHM, 41-byte BRM)
    charge_count: int = 120
    temp_c: int = 25
    send_cell_details: bool = False  # BMV and BMT every 10 s


@dataclass(frozen=True, slots=True)
class ChargerProfile:
    max_voltage_v: float = 750.0
    min_voltage_v: float = 200.0
    max_current_a: float = 250.0
    charger_number: int = 1
    region_code: str = "440"


@dataclass(frozen=True, slots=True)
class SimOptions:
    start_ts: float = 1_700_000_000.0
    handshake_s: float = 1.0
    #: SOC, energy and charge minutes advance this many times faster than bus time, so that a
    #: session from 30 % to 80 % fits in seconds of CAN traffic
    soc_speedup: float = 1.0
    max_charge_s: float = 600.0
    stop: str = "soc"  # "soc": BMS stops at the target; "manual": operator stop at stop_after_s
    stop_after_s: float = 30.0
    foreign_frames: bool = True  # the real bus carries 0x0070F4B5 every 500 ms


@dataclass(frozen=True, slots=True)
class CurvePoint:
    ts: float
    voltage_v: float
    current_a: float  # charging current delivered to the vehicle, positive
    soc_pct: float
    energy_kwh: float  # delivered since charging started


@dataclass(frozen=True, slots=True)
class Expected:
    """What a correct decoder must find in the generated traffic."""

    protocol_version: str
    vin: str
    battery_type: BatteryType
    rated_capacity_ah: float
    rated_voltage_v: float
    charge_count: int
    charger_number: int | None
    soc_start_pct: int
    soc_end_pct: int | None
    end_reason: str
    stop_initiator: str | None
    bst_reasons: tuple[str, ...]
    cst_reasons: tuple[str, ...]
    error_timeouts: tuple[tuple[str, tuple[str, ...]], ...]  # (side, timeouts)
    energy_kwh: float | None
    charge_minutes: int | None
    transport_anomalies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimSession:
    frames: tuple[Frame, ...]
    curve: tuple[CurvePoint, ...]
    expected: Expected
    vehicle: VehicleProfile
    charger: ChargerProfile
    options: SimOptions
    faults: tuple[Fault, ...] = ()
    _curve_ts: tuple[float, ...] = field(default=(), repr=False)

    def at(self, ts: float) -> CurvePoint | None:
        """The modelled charging point at ``ts`` (step-hold); ``None`` before charging."""
        keys = self._curve_ts or tuple(p.ts for p in self.curve)
        i = bisect.bisect_right(keys, ts) - 1
        return self.curve[i] if i >= 0 else None


# --------------------------------------------------------------------------- encoders


def generate(
    vehicle: VehicleProfile | None = None,
    charger: ChargerProfile | None = None,
    options: SimOptions | None = None,
    faults: tuple[Fault, ...] | list[Fault] = (),
) -> SimSession:
    """Generate one complete session (see the module docstring)."""
    v = vehicle or VehicleProfile()
    c = charger or ChargerProfile()
    o = options or SimOptions()
    faults = tuple(faults)
    fault = faults[0] if faults else None
    b = FrameBuilder()
    v10 = v.protocol == "1.0"
    t = o.start_ts
    nominal_cell, max_cell = _CELL_V.get(v.battery_type, (3.6, 4.1))
    cells = max(1, round(v.rated_voltage_v / nominal_cell))

    # handshake (V1.1 only)
    if not v10:
        end = t + o.handshake_s
        while t < end:
            b.msg(t, "CHM", b"\x01\x01\x00")
            b.msg(t + 0.015, "BHM", volt(v.rated_voltage_v * max_cell / nominal_cell))
            t += 0.25
    # recognition
    if v10:
        crm_tail = b"\xff" * 7
    else:
        crm_tail = c.charger_number.to_bytes(4, "little") + c.region_code.encode()[:3].ljust(
            3, b"\xff"
        )
    b.msg(t, "CRM", b"\x00" + crm_tail)
    t = b.transfer(t + 0.025, "BRM", brm_payload(v)) + 0.002
    b.msg(t, "CRM", b"\xaa" + crm_tail)
    # configuration
    soc = v.soc_start_pct
    battery_v = v.rated_voltage_v * (0.92 + 0.16 * soc / 100)
    bcp = (
        u16(max_cell, 0.01)
        + amps(v.max_current_a)
        + volt(v.capacity_ah * v.rated_voltage_v / 1000)
        + volt(cells * max_cell)
        + bytes([65 + 50])
        + u16(soc, 0.1)
        + volt(battery_v)
    )
    t = b.transfer(t + 0.008, "BCP", bcp) + 0.005
    clock = dt.datetime.fromtimestamp(t, dt.UTC)
    fields = (clock.second, clock.minute, clock.hour, clock.day, clock.month)
    cts = bytes([*map(bcd, fields), bcd(clock.year % 100), bcd(clock.year // 100)])
    cml = volt(c.max_voltage_v) + volt(c.min_voltage_v) + amps(c.max_current_a)
    if not v10:
        cml += amps(0.0)
    for k in range(6):
        if k % 2 == 0:
            b.msg(t + k * 0.25, "CTS", cts)
        b.msg(t + k * 0.25 + 0.001, "CML", cml)
        b.msg(t + k * 0.25 + 0.014, "BRO", b"\x00" if k < 4 else b"\xaa")
    t += 5 * 0.25 + 0.02
    b.msg(t, "CRO", b"\x00")
    t += 0.07
    b.msg(t, "CRO", b"\xaa")
    charge_start = t

    # charging
    fault_at = charge_start + fault.at_s if fault else None
    if fault and fault.kind in (FaultKind.TP_ABORT, FaultKind.LOST_DT):
        fault_at = None  # transport faults do not end charging
    tp_fault_at = charge_start + fault.at_s if fault else None
    tp_fault_done = False
    current = 0.0
    energy_kwh = 0.0
    curve: list[CurvePoint] = []
    step = 0.05
    i = 0
    stop_reason = "soc"
    charger_quiet = bms_quiet = False
    quiet_since = 0.0
    bsm_b6, bsm_b7 = 0x00, 0x10
    temp = v.temp_c
    end_of_charge = charge_start + o.max_charge_s
    next_bcs = charge_start + 0.035
    next_cells = charge_start + 1.0
    ccs_tail = b"" if v10 else b"\xfd"
    while True:
        now = charge_start + i * step
        i += 1
        if fault_at is not None and now >= fault_at and not (charger_quiet or bms_quiet):
            kind = fault.kind  # type: ignore[union-attr]
            if kind is FaultKind.CAN_SILENCE:
                stop_reason = "silence"
                break
            if kind is FaultKind.BEM_TIMEOUT:
                charger_quiet, quiet_since = True, now
            elif kind is FaultKind.CEM_TIMEOUT:
                bms_quiet, quiet_since = True, now
            elif kind is FaultKind.INSULATION:
                bsm_b7 = with_status(bsm_b7, 0, 1)
                stop_reason = "insulation"
                break
            elif kind is FaultKind.OVER_TEMPERATURE:
                bsm_b6 = with_status(bsm_b6, 6, 1)
                temp = 62
                stop_reason = "over_temperature"
                break
            elif kind is FaultKind.EMERGENCY_STOP:
                stop_reason = "emergency_stop"
                break
        if charger_quiet and now - quiet_since >= 1.0:
            for k in range(8):
                b.msg(now + k * 0.25, "BEM", b"\xf0\xf0\xf1\xfc")
            stop_reason = "bem"
            break
        if bms_quiet and now - quiet_since >= 1.0:
            for k in range(8):
                b.msg(now + k * 0.25, "CEM", b"\xfc\xf0\xf4\xfc")
            stop_reason = "cem"
            break
        if o.stop == "manual" and now - charge_start >= o.stop_after_s:
            stop_reason = "manual"
            break
        if soc >= v.soc_target_pct or now >= end_of_charge:
            stop_reason = "soc"
            break
        target = min(v.max_current_a * interp(v.current_curve, soc), c.max_current_a)
        current = min(target, current + 25.0) if current < target else target
        battery_v = v.rated_voltage_v * (0.92 + 0.16 * soc / 100)
        out_v = battery_v + current * 0.05
        model_dt = step * o.soc_speedup
        soc = min(100.0, soc + current * model_dt / 3600 / v.capacity_ah * 100)
        energy_kwh += out_v * current * model_dt / 3.6e6
        curve.append(CurvePoint(round(now, 6), round(out_v, 1), round(current, 1), soc, energy_kwh))
        minutes = int((now - charge_start) * o.soc_speedup // 60)
        if not bms_quiet:
            demand_v = cells * max_cell
            b.msg(now, "BCL", volt(demand_v) + amps(target) + b"\x02")
        if not charger_quiet:
            b.msg(now + 0.02, "CCS", volt(out_v) + amps(current) + u16(minutes, 1) + ccs_tail)
        if not bms_quiet and now >= next_bcs:
            next_bcs += 0.25
            cell_v = battery_v / cells + current * 0.0004
            word = (round(cell_v * 100) & 0x0FFF) | (((i // 5) % 16) << 12)
            remaining = max(0, min(600, int((v.soc_target_pct - soc) * 2)))
            bcs = (
                volt(battery_v + current * 0.045)
                + amps(current * 0.99)
                + word.to_bytes(2, "little")
                + bytes([min(100, int(soc))])
                + remaining.to_bytes(2, "little")
            )
            ts_bcs = now + 0.01
            if tp_fault_at is not None and not tp_fault_done and now >= tp_fault_at:
                kind = fault.kind  # type: ignore[union-attr]
                if kind is FaultKind.TP_ABORT:
                    b.transfer(ts_bcs, "BCS", bcs, abort=True)
                    tp_fault_done = True
                elif kind is FaultKind.LOST_DT:
                    b.transfer(ts_bcs, "BCS", bcs, lose_dt=True)
                    tp_fault_done = True
                else:
                    b.transfer(ts_bcs, "BCS", bcs)
            else:
                b.transfer(ts_bcs, "BCS", bcs)
            b.msg(now + 0.03, "BSM", bytes([7, temp + 50, 2, temp + 48, 9, bsm_b6, bsm_b7]))
            if v.send_cell_details and now >= next_cells:
                # one transfer per direction at a time: BMV and BMT follow the BCS in sequence
                next_cells += 10.0
                bmv = b"".join(
                    (round((battery_v / cells + (k % 3) * 0.005) * 100) & 0xFFF).to_bytes(
                        2, "little"
                    )
                    for k in range(cells)
                )
                t_end = b.transfer(ts_bcs + 0.04, "BMV", bmv)
                t_end = b.transfer(
                    t_end + 0.005, "BMT", bytes([temp + 50 + k % 3 for k in range(12)])
                )
                next_bcs = max(next_bcs, t_end + 0.01)
    last = charge_start + (i - 1) * step
    curve.append(CurvePoint(round(last, 6), round(battery_v, 1), 0.0, soc, energy_kwh))
    minutes = int((last - charge_start) * o.soc_speedup // 60)

    # stopping and statistics
    bst_reasons: tuple[str, ...] = ()
    cst_reasons: tuple[str, ...] = ()
    initiator: str | None = None
    errors: tuple[tuple[str, tuple[str, ...]], ...] = ()
    end_reason = "normal"
    if stop_reason in ("bem", "cem"):
        side = "bms" if stop_reason == "bem" else "charger"
        errors = ((side, ("timeout_ccs",) if side == "bms" else ("timeout_bcl",)),)
        end_reason = "error"
    elif stop_reason == "silence":
        end_reason = "lost"
    else:
        if stop_reason in ("soc", "insulation", "over_temperature"):
            initiator = "bms"
            bst = {
                "soc": b"\xf1\xf0\xf0\xf0",
                "insulation": b"\xf0\xf1\xf0\xf0",
                "over_temperature": b"\xf0\xf0\xf1\xf0",
            }[stop_reason]
            bst_reasons = {
                "soc": ("stop_soc_target_reached",),
                "insulation": ("fault_insulation",),
                "over_temperature": ("fault_battery_overtemp",),
            }[stop_reason]
            cst, cst_reasons = b"\x40\xf0\xf0\xf0", ("stop_by_bms",)
            first, second = ("BST", bst), ("CST", cst)
        else:
            initiator = "charger"
            if stop_reason == "manual":
                cst, cst_reasons = b"\x04\x00\xf0\xf0", ("stop_manual",)
            else:
                cst, cst_reasons = b"\x10\x00\xf1\xf0", ("stop_fault", "fault_emergency_stop")
            bst, bst_reasons = b"\x40\x00\x00\x00", ("stop_by_charger",)
            first, second = ("CST", cst), ("BST", bst)
        t = last + 0.01
        for k in range(25):
            b.msg(t + k * 0.014, first[0], first[1])
        for k in range(10):
            b.msg(t + 0.018 + k * 0.01, second[0], second[1])
        t += 25 * 0.014 + 0.01
        end_soc = min(100, int(soc))
        bsd = (
            bytes([end_soc])
            + u16(battery_v / cells - 0.01, 0.01)
            + u16(battery_v / cells + 0.01, 0.01)
            + bytes([v.temp_c + 48, temp + 50])
        )
        csd = (
            minutes.to_bytes(2, "little")
            + u16(energy_kwh, 0.1)
            + c.charger_number.to_bytes(4, "little")
        )
        for k in range(5):
            b.msg(t + k * 0.25, "BSD", bsd)
            b.msg(t + k * 0.25 + 0.002, "CSD", csd)
    if o.foreign_frames:
        end_ts = max(f.ts for f in b.frames) + 12.0  # long enough for the tracker's idle close
        ft = o.start_ts - 0.3
        while ft < end_ts:
            b.raw(ft, 0x0070F4B5, b"\x00\x00\xb5")
            ft += 0.5
    frames = tuple(sorted(b.frames, key=lambda f: f.ts))
    transport: tuple[str, ...] = ()
    if tp_fault_done and fault and fault.kind is FaultKind.TP_ABORT:
        transport = ("aborted",)
    elif tp_fault_done and fault and fault.kind is FaultKind.LOST_DT:
        transport = ("replaced",)
    stats = end_reason == "normal"
    expected = Expected(
        protocol_version=v.protocol,
        vin=v.vin,
        battery_type=v.battery_type,
        rated_capacity_ah=round(v.capacity_ah, 1),
        rated_voltage_v=round(v.rated_voltage_v, 1),
        charge_count=v.charge_count,
        charger_number=None if v10 else c.charger_number,
        soc_start_pct=int(v.soc_start_pct),
        soc_end_pct=min(100, int(soc)) if stats else None,
        end_reason=end_reason,
        stop_initiator=initiator,
        bst_reasons=bst_reasons,
        cst_reasons=cst_reasons,
        error_timeouts=errors,
        energy_kwh=round(round(energy_kwh / 0.1) * 0.1, 1) if stats else None,
        charge_minutes=minutes if stats else None,
        transport_anomalies=transport,
    )
    curve_t = tuple(curve)
    return SimSession(
        frames=frames,
        curve=curve_t,
        expected=expected,
        vehicle=v,
        charger=c,
        options=o,
        faults=faults,
        _curve_ts=tuple(p.ts for p in curve_t),
    )
