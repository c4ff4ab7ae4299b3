"""Config → driver objects, and the supervised tasks that run them.

* every ``[[can_buses]]`` entry becomes a listen-only :class:`~drivers.gbt27930.bus.CanListener`
  whose tracker events go to the station queue;
* ``[[meters]]`` are grouped by line (one RS-485 port, or one TCP endpoint) into
  :class:`~drivers.modbus.poller.LinePoller`\\ s; an ``apscheduler`` job per meter polls it at its
  ``poll_interval_s`` (jobs of one line share the poller's lock, so the line stays half-duplex);
* a small monitor turns "frames were seen on this bus" into
  :class:`~agent.station.inputs.BusActivity` once a second, which is how the station model tells
  an idle DC connector from an offline one;
* ``[[input_modules]]`` are polled beside the meters (on the same line disciplines); their
  input changes and faults go to the station like meter events;
* :meth:`Devices.observe` sees every record the station writes: when a connector's session
  starts or ends, its meter reads its seal (identity; a DL/T 645 meter also its clock and
  counters) at the next poll.

Drivers know nothing of records or the ledger: everything they produce lands on one
``asyncio.Queue`` that the station writer consumes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.config.schema import Config, InputModuleSection, MeterSection
from agent.records.envelope import Record
from agent.station.inputs import BusActivity
from drivers.dlt645.poller import Dlt645Poller, DltMeterSpec
from drivers.dlt645.profile import DltProfile, load_dlt645_profiles
from drivers.gbt27930.bus import BusSpec, BusStateChanged, CanListener
from drivers.inputs.events import InputEvent
from drivers.inputs.modbus_di import DiPoller, InputSpec, ModuleSpec
from drivers.inputs.profile import load_module_profiles
from drivers.modbus.line import LineDiscipline
from drivers.modbus.link import SerialLineSpec, TcpLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import ProfileSet, load_profile_dirs
from drivers.modbus.profile_model import Profile

log = logging.getLogger("evgw.devices")

LineSpec = SerialLineSpec | TcpLineSpec


def line_of(meter: MeterSection) -> LineSpec:
    if meter.transport == "rtu":
        # the config cross-check guarantees the port; the section fills in baud and parity
        assert meter.port is not None and meter.baud is not None and meter.parity is not None
        return SerialLineSpec(
            port=meter.port,
            baud=meter.baud,
            parity=meter.parity,
            stopbits=meter.stop_bits,
            timeout_s=meter.timeout_s,
        )
    assert meter.host is not None
    return TcpLineSpec(
        host=meter.host,
        port=meter.tcp_port,
        timeout_s=meter.timeout_s,
        rtu_framing=meter.transport == "rtu_over_tcp",
    )


def rated_power_w(meter: MeterSection, config: Config) -> float | None:
    """The meter's rated power (its own, else its connector's) for plausibility checks."""
    rated_kw = meter.rated_power_kw
    if rated_kw is None and meter.connector_id is not None:
        rated_kw = config.connectors()[meter.connector_id][1].power_kw
    return rated_kw * 1000 if rated_kw is not None else None


def meter_spec(meter: MeterSection, config: Config) -> MeterSpec:
    assert meter.unit_id is not None  # the config cross-check guarantees it for Modbus
    return MeterSpec(
        meter_id=meter.meter_id,
        unit_id=meter.unit_id,
        profile=meter.profile,
        rated_power_w=rated_power_w(meter, config),
        poll_interval_s=meter.poll_interval_s,
        timeout_s=meter.timeout_s,
        retries=meter.retries,
        offline_after=meter.offline_after_failures,
        function=meter.function,
        options=dict(meter.options),
        seal_interval_s=meter.seal_interval_s,
    )


@dataclass(frozen=True, slots=True)
class MeterProfiles:
    """The profiles meters may name, per protocol."""

    modbus: ProfileSet[Profile]
    dlt645: ProfileSet[DltProfile]


def meter_profiles(config: Config) -> MeterProfiles:
    """The shipped meter profiles overlaid with the config's ``[meter_profiles]`` folders
    (the config check has validated them)."""
    dirs = config.meter_profiles.dirs
    return MeterProfiles(load_profile_dirs(dirs), load_dlt645_profiles(dirs))


def dlt645_spec(meter: MeterSection, config: Config) -> DltMeterSpec:
    assert meter.address is not None  # the config cross-check guarantees it
    return DltMeterSpec(
        meter_id=meter.meter_id,
        address=meter.address,
        profile=meter.profile,
        rated_power_w=rated_power_w(meter, config),
        poll_interval_s=meter.poll_interval_s,
        timeout_s=meter.timeout_s,
        retries=meter.retries,
        offline_after=meter.offline_after_failures,
        seal_interval_s=meter.seal_interval_s,
        clock_utc_offset_h=config.sampling.stats_utc_offset_h,
        clock_drift_max_s=meter.clock_drift_max_s,
    )


Poller = LinePoller | Dlt645Poller


def build_pollers(
    config: Config,
    profiles: MeterProfiles,
    sink: asyncio.Queue[Any] | Callable[[Any], object],
    disciplines: dict[str, LineDiscipline] | None = None,
) -> list[Poller]:
    """One poller per protocol and line; pollers of one serial port share its discipline
    (lock, gap, port holder), so Modbus and DL/T 645 meters (and input modules, given the
    same ``disciplines``) can share an RS-485 line."""
    lines: dict[tuple[str, LineSpec], list[MeterSection]] = {}
    for meter in config.meters:
        lines.setdefault((meter.protocol, line_of(meter)), []).append(meter)
    disciplines = {} if disciplines is None else disciplines
    pollers: list[Poller] = []
    for (protocol, line), meters in lines.items():
        discipline = None
        if isinstance(line, SerialLineSpec):
            discipline = disciplines.setdefault(line.port, LineDiscipline(line.gap_s))
        if protocol == "dlt645":
            assert isinstance(line, SerialLineSpec)
            specs = [dlt645_spec(m, config) for m in meters]
            pollers.append(Dlt645Poller(line, specs, profiles.dlt645, sink, discipline=discipline))
        else:
            modbus = [meter_spec(m, config) for m in meters]
            pollers.append(LinePoller(line, modbus, profiles.modbus, sink, discipline=discipline))
    return pollers


def module_line(m: InputModuleSection) -> LineSpec:
    if m.transport == "rtu":
        assert m.port is not None  # the config cross-check guarantees it
        return SerialLineSpec(
            m.port, baud=m.baud, parity=m.parity, stopbits=m.stop_bits, timeout_s=m.timeout_s
        )
    assert m.host is not None
    return TcpLineSpec(
        m.host, m.tcp_port, timeout_s=m.timeout_s, rtu_framing=m.transport == "rtu_over_tcp"
    )


def build_input_pollers(
    config: Config,
    sink: Callable[[Any], object],
    disciplines: dict[str, LineDiscipline],
) -> list[DiPoller]:
    """One poller per line of ``[[input_modules]]``, on the disciplines the meters use."""
    profiles = load_module_profiles(config.meter_profiles.dirs)
    lines: dict[LineSpec, list[ModuleSpec]] = {}
    for mod in config.input_modules:
        inputs = tuple(
            InputSpec(
                i.input_id,
                i.channel,
                i.role,
                active_high=i.active_level == "high",
                debounce_s=i.debounce_s,
                connectors=tuple(i.connectors),
            )
            for i in config.inputs
            if i.module == mod.module_id
        )
        spec = ModuleSpec(
            mod.module_id,
            mod.unit_id,
            mod.profile,
            inputs,
            poll_interval_s=mod.poll_interval_s,
            timeout_s=mod.timeout_s,
            offline_after=mod.offline_after_failures,
        )
        lines.setdefault(module_line(mod), []).append(spec)
    pollers = []
    for line, modules in lines.items():
        discipline = None
        if isinstance(line, SerialLineSpec):
            discipline = disciplines.setdefault(line.port, LineDiscipline(line.gap_s))
        pollers.append(DiPoller(line, modules, profiles, sink, discipline=discipline))
    return pollers


def bus_spec(config: Config, index: int) -> BusSpec:
    bus = config.can_buses[index]
    return BusSpec(
        bus.interface,
        bus.channel,
        bitrate=bus.bitrate,
        connector_id=bus.connector_id,
        listen_only=bus.listen_only,
    )


@dataclass(slots=True)
class Devices:
    """The station's drivers for one config: CAN listeners, meter pollers, their schedule."""

    config: Config
    queue: asyncio.Queue[Any]
    clock: Callable[[], float] = time.time
    listeners: list[CanListener] = field(default_factory=list)
    pollers: list[Poller] = field(default_factory=list)
    input_pollers: list[DiPoller] = field(default_factory=list)
    bus_states: dict[str, BusStateChanged] = field(default_factory=dict)
    poll_counts: dict[str, Counter[str]] = field(default_factory=dict)
    """Per meter: polls that read (``ok``), failed, or were skipped while backing off."""
    _seen_frames: dict[str, int] = field(default_factory=dict)
    _sessions: dict[str, str | None] = field(default_factory=dict)
    """The session each connector's latest status record names."""

    @classmethod
    def build(cls, config: Config, queue: asyncio.Queue[Any]) -> Devices:
        empty = MeterProfiles(ProfileSet({}), ProfileSet({}))
        profiles = meter_profiles(config) if config.meters else empty
        quiet_library_logging()
        devices = cls(config=config, queue=queue)
        devices.listeners = [
            CanListener(bus_spec(config, i), devices._from_bus)
            for i in range(len(config.can_buses))
        ]
        disciplines: dict[str, LineDiscipline] = {}
        devices.pollers = build_pollers(config, profiles, devices._from_meter, disciplines)
        devices.input_pollers = build_input_pollers(config, devices._from_input, disciplines)
        return devices

    def _from_input(self, item: InputEvent) -> None:
        log.info("input: %s", item)
        self.queue.put_nowait(item)

    def _from_meter(self, item: Any) -> None:
        self.queue.put_nowait(item)

    def observe(self, record: Record) -> None:
        """A connector's session started or ended: read its meter's seal at the next poll."""
        cid = record.connector_id
        if record.kind != "connector_status" or cid is None:
            return
        session_id = record.body.get("session_id")
        if cid in self._sessions and self._sessions[cid] == session_id:
            return
        self._sessions[cid] = session_id
        meters = {m.meter_id for m in self.config.meters if m.connector_id == cid}
        for poller in self.pollers:
            for meter_id in meters.intersection(poller.meter_ids):
                poller.check_seal(meter_id)

    async def _from_bus(self, item: Any) -> None:
        if isinstance(item, BusStateChanged):
            previous = self.bus_states.get(item.connector_id)
            if previous is None or previous.state != item.state:  # log changes, not repeats
                level = logging.WARNING if item.state == "down" else logging.INFO
                log.log(level, "CAN bus of %s %s: %s", item.connector_id, item.state, item.detail)
            self.bus_states[item.connector_id] = item
            return
        await self.queue.put(item)

    async def run_bus_activity(self) -> None:
        """Once a second: a BusActivity for each bus that carried frames since the last look."""
        while True:
            now = self.clock()
            for listener in self.listeners:
                cid = listener.spec.connector_id
                total = listener.pipeline.counts.total
                if total != self._seen_frames.get(cid, 0):
                    self._seen_frames[cid] = total
                    await self.queue.put(BusActivity(connector_id=cid, ts=now))
            await asyncio.sleep(1.0)

    async def run_meter_polls(self) -> None:
        """Poll every meter and input module at its interval until cancelled; close the lines
        at the end. (The service starts this when the config has meters or input modules.)"""
        scheduler = AsyncIOScheduler()
        interval_s = {m.meter_id: m.poll_interval_s for m in self.config.meters}
        for poller in self.pollers:
            for meter_id in poller.meter_ids:
                _every(
                    scheduler,
                    self._poll,
                    (poller, meter_id),
                    interval_s[meter_id],
                    f"poll-{meter_id}",
                )
        module_interval_s = {m.module_id: m.poll_interval_s for m in self.config.input_modules}
        for di in self.input_pollers:
            for spec_id in di.module_ids:
                _every(
                    scheduler,
                    self._poll_inputs,
                    (di, spec_id),
                    module_interval_s[spec_id],
                    f"inputs-{spec_id}",
                )
        scheduler.start()
        try:
            await asyncio.Event().wait()
        finally:
            scheduler.shutdown(wait=False)
            for poller in self.pollers:
                poller.close()
            for di in self.input_pollers:
                di.close()

    async def _poll_inputs(self, di: DiPoller, module_id: str) -> None:
        try:
            await di.poll(module_id, self.clock())
        except asyncio.CancelledError:
            return  # the line stops (apply, reload, stop): no failure for apscheduler to log
        except Exception:  # a driver bug must not kill the schedule: log it, next poll retries
            log.exception("reading input module %s failed", module_id)

    async def _poll(self, poller: Poller, meter_id: str) -> None:
        ts = self.clock()
        counts = self.poll_counts.setdefault(meter_id, Counter())
        if not poller.health(meter_id).due(ts):
            counts["skipped"] += 1
            return
        try:
            reading = await poller.poll(meter_id, ts)
        except asyncio.CancelledError:
            return  # the line stops (apply, reload, stop): no failure for apscheduler to log
        except Exception:  # a driver bug must not kill the schedule: log it, next poll retries
            log.exception("polling meter %s failed", meter_id)
            reading = None
        counts["ok" if reading is not None else "failed"] += 1

    def snapshot(self) -> dict[str, Any]:
        meters = {}
        for poller in self.pollers:
            for meter_id in poller.meter_ids:
                h = poller.health(meter_id)
                meters[meter_id] = {
                    "online": h.online,
                    "failures": h.failures,
                    "last_error": h.last_error,
                }
        buses = {}
        for listener in self.listeners:
            cid = listener.spec.connector_id
            state = self.bus_states.get(cid)
            counts = listener.pipeline.counts
            buses[cid] = {
                "state": state.state if state else "starting",
                "frames": counts.total,
                "anomalies": {
                    layer: sum(kinds.values())
                    for layer, kinds in listener.pipeline.anomalies().items()
                },
            }
        return {"meters": meters, "can_buses": buses}


def _every(
    scheduler: AsyncIOScheduler,
    job: Callable[..., Any],
    args: tuple[Any, ...],
    seconds: float,
    job_id: str,
) -> None:
    """A poll job: first run now, then every ``seconds``; never two at once, missed runs merged."""
    scheduler.add_job(
        job,
        "interval",
        args=args,
        seconds=seconds,
        next_run_time=datetime.datetime.now(datetime.UTC),
        id=job_id,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
