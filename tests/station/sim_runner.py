"""Drive the station model with a simulated session: CAN frames from ``sim.charging`` through
the GB/T pipeline, and a ``sim.meter`` DC meter driven from the same power curve, polled through
the real register decoding, plausibility checks and online/offline state (no socket)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent.config.schema import Config
from agent.records.envelope import Record
from agent.station.inputs import BusActivity, RemoteStop
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from drivers.gbt27930.events import BmsEvent
from drivers.gbt27930.frames import Frame
from drivers.gbt27930.pipeline import Pipeline
from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import plan_reads
from drivers.modbus.health import MeterHealth
from drivers.modbus.profile import load_profiles
from sim.charging import SimSession
from sim.meter import SimMeter
from tests.station.station_fixtures import DC

_PROFILES = load_profiles()


@dataclass
class MeterPlan:
    """How the simulated meter behaves: ``factor`` scales the energy it counts (1.0 honest),
    ``offline`` windows (start, end) in seconds after the first frame, ``reset_at_s`` puts the
    register back to 0, ``flag_at_s`` raises its alarm flag, ``connector_temp`` is a function
    of the seconds since the first frame (gun temperature, ``x_connector_temp_c``)."""

    meter_id: str = "dc1"
    factor: float = 1.0
    start_kwh: float = 1000.0
    poll_s: float = 1.0
    offline: tuple[tuple[float, float], ...] = ()
    reset_at_s: float | None = None
    flag_at_s: float | None = None
    connector_temp: Callable[[float], float] | None = None


@dataclass
class SimRun:
    records: list[Record] = field(default_factory=list)
    model: StationModel | None = None
    meter_kwh: float | None = None
    """The simulated meter's import register at the end of the run."""


class _Meter:
    def __init__(self, plan: MeterPlan) -> None:
        profile = _PROFILES["djsf1352"]
        self.plan = plan
        self.sim = SimMeter(profile, 1, energy_import_kwh=plan.start_kwh, voltage_v=0.0)
        self.read_plan = plan_reads(self.sim.resolved)
        self.checker = ReadingChecker(
            plan.meter_id, rated_power_w=150_000.0, alarm_flags=("wire_broken", "alarm_active")
        )
        self.health = MeterHealth(plan.meter_id, offline_after=2, backoff_s=1.0)
        self.last_ts: float | None = None
        self.did_reset = False

    def drive(self, ts: float, voltage_v: float, current_a: float) -> None:
        if self.last_ts is not None:
            self.sim.advance((ts - self.last_ts) * self.plan.factor)
        self.last_ts = ts
        self.sim.set_voltage(voltage_v)
        self.sim.set_power(voltage_v * current_a)

    def poll(self, ts: float, t_rel: float) -> list[object]:
        p = self.plan
        if p.reset_at_s is not None and t_rel >= p.reset_at_s and not self.did_reset:
            self.sim.reset_energy(0.0)
            self.did_reset = True
        if p.flag_at_s is not None:
            self.sim.set_flag("wire_broken", t_rel >= p.flag_at_s)
        if not self.health.due(ts):
            return []
        if any(a <= t_rel < b for a, b in p.offline):
            return list(self.health.failure(ts, "no answer (timeout)"))
        image = self.sim.image()
        results = [
            [image.get((b.function, a), 0) for a in range(b.address, b.address + b.count)]
            for b in self.read_plan.blocks
        ]
        decoded = self.read_plan.decode(results)
        if p.connector_temp is not None:
            decoded.values["x_connector_temp_c"] = p.connector_temp(t_rel)
        reading, events = self.checker.check(decoded, ts)
        return [*self.health.success(ts), reading, *events]


def run_sim(
    session: SimSession | list[Frame],
    config: Config,
    *,
    meter: MeterPlan | None = None,
    signer: OcmfSigner | None = None,
    model: StationModel | None = None,
    frames: list[Frame] | None = None,
    startup: bool = True,
    extra: list[RemoteStop] | None = None,
    finish: bool = True,
) -> SimRun:
    """Feed everything in time order; ticks and bus activity once a second, meter polls at
    ``meter.poll_s``; ``extra`` inputs are fed at their time. Returns every record (and the
    model, to continue with)."""
    pending = sorted(extra or [], key=lambda e: e.ts)
    frames = frames if frames is not None else list(session.frames)  # type: ignore[union-attr]
    curve_at = session.at if isinstance(session, SimSession) else None
    run = SimRun()
    m = model if model is not None else StationModel(config, signer=signer)
    run.model = m
    out = run.records
    pipe = Pipeline(DC)
    sim_meter = _Meter(meter) if meter is not None else None
    t0 = frames[0].ts
    if startup:
        out += m.startup([], t0)
    next_tick = next_bus = next_poll = t0
    for f in frames:
        while next_tick <= f.ts or (sim_meter and next_poll <= f.ts):
            t = min(next_tick, next_poll if sim_meter else next_tick)
            if sim_meter is not None and next_poll == t:
                if curve_at is not None:
                    point = curve_at(t)
                    live = point is not None and point.current_a > 0
                    voltage = point.voltage_v if point is not None else 0.0
                    sim_meter.drive(t, voltage if live else 0.0, point.current_a if live else 0.0)
                for ev in sim_meter.poll(t, t - t0):
                    out += m.feed(ev)  # type: ignore[arg-type]
                next_poll += meter.poll_s  # type: ignore[union-attr]
            if next_tick == t:
                out += m.tick(t)
                next_tick += 1.0
        while pending and pending[0].ts <= f.ts:
            out += m.feed(pending.pop(0))
        if f.ts >= next_bus:
            out += m.feed(BusActivity(DC, f.ts))
            next_bus = f.ts + 1.0
        if sim_meter is not None and curve_at is not None and f.can_id & 0xFF0000 == 0x120000:
            point = curve_at(f.ts)
            if point is not None:
                sim_meter.drive(f.ts, point.voltage_v, point.current_a)
        for item in pipe.feed(f.ts, f.can_id, f.data):
            if isinstance(item, BmsEvent):
                out += m.feed(item)
    end = frames[-1].ts
    if sim_meter is not None:
        run.meter_kwh = sim_meter.sim.energy_import_kwh
    if not finish:  # the gateway "dies" here: nothing more is processed
        return run
    for item in pipe.finish(end):
        if isinstance(item, BmsEvent):
            out += m.feed(item)
    out += m.tick(end + 5.0)
    return run
