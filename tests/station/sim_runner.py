"""Drive the station model with a simulated session: CAN frames from ``sim.charging`` through
the GB/T pipeline, and a DC meter driven from the same power curve — ``sim.meter`` (Modbus) or
``sim.dlt645_meter`` (DL/T 645, with its electronic seal) — polled through the real register or
identifier decoding, plausibility checks and online/offline state (no socket)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent.config.schema import Config
from agent.records.envelope import Record
from agent.station.inputs import BusActivity, RemoteStop
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from drivers.dlt645.data import decode_number
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.gbt27930.events import BmsEvent
from drivers.gbt27930.frames import Frame
from drivers.gbt27930.pipeline import Pipeline
from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import Decoded, plan_reads
from drivers.modbus.health import MeterHealth
from drivers.modbus.profile import load_profiles
from drivers.modbus.seal import SealRead, SealTracker
from sim.charging import SimSession
from sim.dlt645_meter import SimDltMeter
from sim.meter import SimMeter
from tests.station.station_fixtures import DC

_PROFILES = load_profiles()
_DLT645 = load_dlt645_profiles()
DLT645_ADDRESS = "000012345678"


@dataclass
class MeterPlan:
    """How the simulated meter behaves: ``factor`` scales the energy it counts (1.0 honest),
    ``offline`` windows (start, end) in seconds after the first frame, ``reset_at_s`` puts the
    register back to 0, ``flag_at_s`` raises its alarm flag (Modbus), ``connector_temp`` is a
    function of the seconds since the first frame (gun temperature, ``x_connector_temp_c``).
    ``protocol = "dlt645"``: a DCM3366Q DL/T 645 meter whose seal is read at every poll;
    ``cover_open_at_s`` opens its cover."""

    meter_id: str = "dc1"
    factor: float = 1.0
    start_kwh: float = 1000.0
    poll_s: float = 1.0
    offline: tuple[tuple[float, float], ...] = ()
    reset_at_s: float | None = None
    flag_at_s: float | None = None
    connector_temp: Callable[[float], float] | None = None
    protocol: str = "modbus"
    cover_open_at_s: float | None = None


@dataclass
class SimRun:
    records: list[Record] = field(default_factory=list)
    model: StationModel | None = None
    meter_kwh: float | None = None
    """The simulated meter's import register at the end of the run."""


class _Meter:
    def __init__(self, plan: MeterPlan) -> None:
        self.plan = plan
        self.sim: SimMeter | SimDltMeter
        self.seal: SealTracker | None = None
        if plan.protocol == "dlt645":
            assert plan.flag_at_s is None, "the DL/T 645 profiles have no alarm flags"
            self.sim = SimDltMeter(
                _DLT645["dcm3366q"], DLT645_ADDRESS, energy_import_kwh=plan.start_kwh, voltage_v=0.0
            )
            self.seal = SealTracker(plan.meter_id, clock_drift_max_s=300.0)
        else:
            self.sim = SimMeter(
                _PROFILES["djsf1352"], 1, energy_import_kwh=plan.start_kwh, voltage_v=0.0
            )
            self.read_plan = plan_reads(self.sim.resolved)
        self.checker = ReadingChecker(
            plan.meter_id, rated_power_w=150_000.0, alarm_flags=("wire_broken", "alarm_active")
        )
        self.health = MeterHealth(plan.meter_id, offline_after=2, backoff_s=1.0)
        self.last_ts: float | None = None
        self.did_reset = False
        self.did_open = False

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
        if p.flag_at_s is not None and isinstance(self.sim, SimMeter):
            self.sim.set_flag("wire_broken", t_rel >= p.flag_at_s)
        if p.cover_open_at_s is not None and t_rel >= p.cover_open_at_s and not self.did_open:
            assert isinstance(self.sim, SimDltMeter)
            self.sim.open_cover()
            self.did_open = True
        if not self.health.due(ts):
            return []
        if any(a <= t_rel < b for a, b in p.offline):
            return list(self.health.failure(ts, "no answer (timeout)"))
        decoded = self._decode()
        if p.connector_temp is not None:
            decoded.values["x_connector_temp_c"] = p.connector_temp(t_rel)
        reading, events = self.checker.check(decoded, ts)
        seal: list[object] = []
        if self.seal is not None:  # the DL/T 645 poller sends the seal events before the reading
            assert isinstance(self.sim, SimDltMeter)
            seal += self.seal.feed(SealRead(self.sim.identity, self.sim.counts), ts)
        return [*self.health.success(ts), *seal, reading, *events]

    def _decode(self) -> Decoded:
        sim = self.sim
        if isinstance(sim, SimDltMeter):  # each identifier's bytes, decoded as the poller does
            values = {}
            for q in sim.profile.quantities:
                raw = sim.value_bytes(q.di)
                assert raw is not None
                values[q.name] = decode_number(raw, q.format, signed=q.signed) * q.scale
            return Decoded(values, {}, {})
        image = sim.image()
        results = [
            [image.get((b.function, a), 0) for a in range(b.address, b.address + b.count)]
            for b in self.read_plan.blocks
        ]
        return self.read_plan.decode(results)


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
