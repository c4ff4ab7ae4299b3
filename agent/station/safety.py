"""Safety rules evaluated on every battery sample of a DC charging session.

:class:`SafetyMonitor` holds the per-session rule state (hysteresis, how long a condition has
lasted, recent temperatures) and turns each :class:`ChargingSample` into :class:`Finding`\\ s:
"this cause is now active / no longer active". The :class:`agent.station.alarms.AlarmBook`
turns findings into raise and clear edges. Thresholds come from ``[safety]`` in the config,
limits from the vehicle's BCP.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from agent.config.schema import SafetySection
from agent.station import codes
from agent.station.codes import BSM_CODES
from drivers.gbt27930.enums import Status2
from drivers.gbt27930.events import ChargingSample
from drivers.gbt27930.messages import BCP

#: minimum voltage (V) on both sides before a mismatch is judged (avoids dividing by ~0)
MIN_JUDGED_VOLTAGE_V = 50.0
#: temperature history used for the rate-of-rise rule
RISE_WINDOW_S = 60.0
RISE_MIN_SPAN_S = 30.0


@dataclass(frozen=True, slots=True)
class Finding:
    code: int
    cause: str
    active: bool
    message: str


class SafetyMonitor:
    """Rule state of one charging session."""

    def __init__(self, safety: SafetySection) -> None:
        self.cfg = safety
        self.active: set[str] = set()
        self._over_current_since: float | None = None
        self._temps: deque[tuple[float, int]] = deque()

    # ------------------------------------------------------------------ helpers

    def _set(
        self, out: list[Finding], code: int, cause: str, active: bool | None, message: str
    ) -> None:
        if active is None or active == (cause in self.active):
            return
        if active:
            self.active.add(cause)
        else:
            self.active.discard(cause)
        out.append(Finding(code, cause, active, message))

    def _band(self, cause: str, value: float, raise_above: float, clear_below: float) -> bool:
        """Hysteresis: active above ``raise_above`` until below ``clear_below``."""
        if cause in self.active:
            return value >= clear_below
        return value > raise_above

    # ------------------------------------------------------------------ rules

    def evaluate(self, s: ChargingSample, bcp: BCP | None) -> list[Finding]:
        out: list[Finding] = []
        self._bsm_flags(s, out)
        self._battery_temp(s, bcp, out)
        self._temp_rise(s, out)
        self._cell_voltage(s, bcp, out)
        self._pack_voltage(s, bcp, out)
        self._over_current(s, out)
        self._voltage_mismatch(s, out)
        return out

    def _bsm_flags(self, s: ChargingSample, out: list[Finding]) -> None:
        values = {
            "cell_voltage_status": None if s.bsm is None else s.bsm.cell_voltage_status,
            "soc_status": None if s.bsm is None else s.bsm.soc_status,
            "charge_overcurrent_status": s.charge_overcurrent_status,
            "battery_overtemp_status": s.battery_overtemp_status,
            "insulation_status": s.insulation_status,
            "output_connector_status": s.output_connector_status,
        }
        for name, code_of_value in BSM_CODES.items():
            v = values[name]
            if v is None or v == Status2.NOT_AVAILABLE:
                continue
            by_code: dict[int, set[int]] = {}
            for raw, code in code_of_value.items():
                by_code.setdefault(code, set()).add(raw)
            for code, raws in by_code.items():
                cause = f"bsm.{name}" if len(by_code) == 1 else f"bsm.{name}.{code}"
                self._set(out, code, cause, v in raws, f"BSM {name} = {int(v)}")

    def _battery_temp(self, s: ChargingSample, bcp: BCP | None, out: list[Finding]) -> None:
        t = s.max_battery_temp_c
        if t is None:
            return
        limit = self.cfg.battery_over_temp_c
        if bcp is not None and bcp.max_temperature_c is not None:
            limit = min(limit, bcp.max_temperature_c)
        cause = "rule.battery_over_temp"
        active = self._band(cause, t, limit, limit - self.cfg.hysteresis_c)
        self._set(
            out, codes.BATTERY_OVER_TEMP, cause, active, f"battery {t} °C, limit {limit:g} °C"
        )

    def _temp_rise(self, s: ChargingSample, out: list[Finding]) -> None:
        t = s.max_battery_temp_c
        if t is None:
            return
        temps = self._temps
        temps.append((s.ts, t))
        while temps and s.ts - temps[0][0] > RISE_WINDOW_S:
            temps.popleft()
        span = s.ts - temps[0][0]
        if span < RISE_MIN_SPAN_S:
            return
        rate = (t - min(v for _, v in temps)) / span * 60.0
        limit = self.cfg.temp_rise_c_per_min
        cause = "rule.temp_rise"
        active = self._band(cause, rate, limit, limit / 2)
        self._set(
            out,
            codes.BATTERY_OVER_TEMP,
            cause,
            active,
            f"battery temperature rising {rate:.1f} °C/min",
        )

    def _cell_voltage(self, s: ChargingSample, bcp: BCP | None, out: list[Finding]) -> None:
        v = s.max_cell_voltage_v
        if v is None or bcp is None or bcp.max_cell_charge_voltage_v is None:
            return
        limit = bcp.max_cell_charge_voltage_v
        cause = "rule.cell_over_voltage"
        active = self._band(cause, v, limit, limit - self.cfg.cell_voltage_hysteresis_v)
        self._set(
            out,
            codes.CELL_OVER_VOLTAGE,
            cause,
            active,
            f"highest cell {v:.2f} V, BCP limit {limit:.2f} V",
        )

    def _pack_voltage(self, s: ChargingSample, bcp: BCP | None, out: list[Finding]) -> None:
        v = s.bms_voltage_v
        if v is None or bcp is None or bcp.max_total_charge_voltage_v is None:
            return
        limit = bcp.max_total_charge_voltage_v
        cause = "rule.pack_over_voltage"
        clear = limit * (1 - self.cfg.hysteresis_pct / 100)
        active = self._band(cause, v, limit, clear)
        self._set(
            out,
            codes.PACK_OVER_VOLTAGE,
            cause,
            active,
            f"battery {v:.1f} V, BCP limit {limit:.1f} V",
        )

    def _over_current(self, s: ChargingSample, out: list[Finding]) -> None:
        if s.current_demand_a is None:
            return
        measured = [abs(c) for c in (s.charger_current_a, s.bms_current_a) if c is not None]
        if not measured:
            return
        current, demand = max(measured), abs(s.current_demand_a)
        margin = self.cfg.overcurrent_margin_a
        cause = "rule.over_current"
        if current > demand + margin:
            if self._over_current_since is None:
                self._over_current_since = s.ts
            lasted = s.ts - self._over_current_since
            if lasted >= self.cfg.overcurrent_duration_s:
                msg = f"current {current:.1f} A above demand {demand:.1f} A for {lasted:.0f} s"
                self._set(out, codes.CHARGE_OVER_CURRENT, cause, True, msg)
        else:
            self._over_current_since = None
            if current <= demand + margin / 2:
                self._set(
                    out,
                    codes.CHARGE_OVER_CURRENT,
                    cause,
                    False,
                    f"current {current:.1f} A, demand {demand:.1f} A",
                )

    def _voltage_mismatch(self, s: ChargingSample, out: list[Finding]) -> None:
        charger, bms = s.charger_voltage_v, s.bms_voltage_v
        if charger is None or bms is None:
            return
        if charger < MIN_JUDGED_VOLTAGE_V or bms < MIN_JUDGED_VOLTAGE_V:
            return
        pct = abs(charger - bms) / bms * 100
        limit = self.cfg.voltage_mismatch_pct
        cause = "rule.voltage_mismatch"
        active = self._band(cause, pct, limit, limit - self.cfg.hysteresis_pct)
        msg = f"charger {charger:.1f} V, BMS {bms:.1f} V ({pct:.1f} %)"
        self._set(out, codes.VOLTAGE_MISMATCH, cause, active, msg)
