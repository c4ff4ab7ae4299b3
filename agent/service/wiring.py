"""What the service runs, built from the config.

:func:`build_runtime` turns a validated :class:`~agent.config.schema.Config` into a
:class:`Runtime`: long-lived resources (the ledger and its key) plus the list of supervised
:class:`Component`\\ s (drivers, station model, uplinks). A new config (SIGHUP, a config apply) is
switched part by part (:mod:`agent.service.parts`); the ledger stays open throughout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.schema import Config
from agent.config.secrets import Secrets
from agent.ledger import GatewayKey, Ledger
from agent.ops.config_diff import line_key
from agent.ops.update_ledger import running_layout, watch_steps
from agent.records.bodies import EventBody, body_to_dict
from agent.records.envelope import Record, iso_ts
from agent.service.billing import BillingDesk
from agent.service.clock import clock_synchronised
from agent.service.devices import Devices
from agent.service.metrics import CountingLedger
from agent.service.status_socket import register_handler
from agent.service.systemd_notify import Notifier
from agent.service.tariffs import TariffDesk, config_with_pushed
from agent.service.views import connector_rows, station_alarm_rows
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from agent.station.writer import StationWriter
from agent.uplink.base import ResendingUplink
from agent.uplink.plugin import Uplink
from agent.uplink.registry import build_uplinks, enabled_uplinks
from agent.version import VERSION

log = logging.getLogger("evgw.wiring")


@dataclass(frozen=True, slots=True)
class Component:
    """One supervised, long-running part of the service."""

    name: str
    run: Callable[[], Awaitable[None]]
    intake: bool = True
    """Brings data in (drivers, station writer): stopped first at shutdown, before uplinks."""


def lifecycle_event(config: Config, event: str, message: str, **details: Any) -> Record:
    """An ``event`` record about the gateway itself (started, reloaded, stopped)."""
    return Record(
        kind="event",
        ts=iso_ts(time.time()),
        station_id=config.station.station_id,
        body=body_to_dict(EventBody(event=event, message=message, details=details)),
    )


def _on_ledger_health(health: str, message: str) -> None:
    if health == "ok":
        log.info("ledger healthy again")
    else:
        log.error("ledger %s: %s", health, message)


def _ledger_salvage_progress(notifier: Notifier) -> Callable[[str], None]:
    """A salvage of a damaged ledger at start may take minutes: keep systemd waiting."""

    def progress(message: str) -> None:
        log.info("%s", message)
        notifier.notify("EXTEND_TIMEOUT_USEC=60000000", f"STATUS={message}")

    return progress


@dataclass(slots=True)
class Runtime:
    """Long-lived: the key, the ledger, the station model and its writer (they survive a
    reload). Rebuilt on reload: the devices and the uplinks, i.e. the components."""

    config: Config
    secrets: Secrets
    key: GatewayKey
    ledger: Ledger
    writer: StationWriter
    counting_ledger: CountingLedger
    devices: Devices
    uplinks: list[Uplink] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)

    def uplink_stats(self) -> dict[str, dict[str, Any]]:
        """Each uplink's status row: its counters (sent, acked, retries, parked, backlog,
        last_error) and what the uplink adds of its own state."""
        return {u.name: u.status() for u in self.uplinks}

    def summary(self) -> str:
        c = self.config
        uplinks = [plugin.name for plugin, _section in enabled_uplinks(c)]
        return (
            f"station {c.station.station_id}: {len(c.connectors())} connectors, "
            f"{len(c.meters)} meters, {len(c.can_buses)} CAN buses, "
            f"uplinks: {', '.join(uplinks) or 'none'}"
        )

    def snapshot(self) -> dict[str, Any]:
        """This runtime's part of the status snapshot."""
        return {
            "connectors": connector_rows(self.writer.model),
            "station_alarms": station_alarm_rows(self.writer.model),
            **self.devices.snapshot(),
            "meter_lines": {
                line: {
                    "meters": [m for p in group.pollers for m in p.meter_ids],
                    "connects": sum(p.line.opened_count for p in group.pollers)
                    + sum(di.line.opened_count for di in group.input_pollers),
                }
                for line, group in line_devices(self.devices).items()
            },
            "uplinks": self.uplink_stats(),
            "ledger": {
                "path": str(self.ledger.path),
                "last_seq": self.ledger.last_seq,
                "health": self.ledger.health,
                "key_id": self.ledger.key_id[:16],
            },
        }

    async def uplink_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """``evgw uplink parked|resend`` over the status socket, applied by the running
        uplinks (they record what they do as ``event`` records)."""
        op, name = request.get("op"), request.get("uplink")
        resending = [u for u in self.uplinks if isinstance(u, ResendingUplink)]
        chosen = [u for u in resending if name in (None, u.name)]
        if name is not None and not chosen:
            running = ", ".join(u.name for u in self.uplinks) or "none"
            known = any(u.name == name for u in self.uplinks)
            why = "does not park records" if known else "is not running"
            return {"ok": False, "error": f"uplink {name!r} {why} (running: {running})"}
        if op == "parked":
            return {"ok": True, "uplinks": [await u.parked_records() for u in chosen]}
        if op != "resend":
            return {"ok": False, "error": f"unknown op {op!r}: parked or resend"}
        if name is None:
            return {"ok": False, "error": "resend needs --uplink NAME"}
        try:
            return {"ok": True, **await chosen[0].resend(request)}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    @property
    def intake_names(self) -> list[str]:
        """The components that bring data in (drivers, station): stopped first at shutdown."""
        return [c.name for c in self.components if c.intake]

    async def finish_intake(self) -> None:
        """After the intake stopped: write what the station model still holds, record the stop."""
        await self.writer.stop()
        await self.ledger.append(
            lifecycle_event(self.config, "gateway_stopped", "gateway stopped", version=VERSION)
        )

    async def drain_uplinks(self, timeout_s: float) -> None:
        """Give the running uplinks up to ``timeout_s`` to deliver the last records."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for uplink in self.uplinks:
            while loop.time() < deadline and await self.ledger.backlog(uplink.name) > 0:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        # within the stop budget even on a full disk: what cannot be written by then is
        # recorded in the ledger's state file and declared lost at the next start
        await self.ledger.close(timeout_s=1.0)


def build_components(runtime: Runtime) -> list[Component]:
    """The supervised parts for this config: the station writer, the drivers, the uplinks."""
    devices = runtime.devices
    components = [Component("station", runtime.writer.run)]
    components += [
        Component(f"can-{listener.spec.connector_id}", listener.run)
        for listener in devices.listeners
    ]
    if devices.listeners:
        components.append(Component("can-activity", devices.run_bus_activity))
    components += [
        Component(f"meters-{line}", group.run_meter_polls)
        for line, group in line_devices(devices).items()
    ]
    billing = BillingDesk(runtime.config, runtime.ledger)
    register_handler("billed", billing.billed)  # the MQTT billed command
    tariffs = TariffDesk(runtime.config, runtime.ledger, runtime.writer.model)
    register_handler("tariff", tariffs.tariff)  # the MQTT tariff command
    components.append(Component("billing", billing.run, intake=False))
    layout = running_layout()
    if layout is not None:  # installed as releases: the updater's journal into the ledger
        watch = functools.partial(watch_steps, runtime.ledger, runtime.config, layout)
        components.append(Component("update-steps", watch, intake=False))
    components += [Component(f"uplink-{u.name}", u.run, intake=False) for u in runtime.uplinks]
    return components


def line_devices(devices: Devices) -> dict[str, Devices]:
    """The meter and input pollers by line (serial port, or host:port as
    :func:`agent.ops.config_diff.line_key` names it), each line as its own :class:`Devices`
    sharing the station queue and the counters: one poll task per line, so a config apply
    can rebuild one line while the others keep polling on their open connections."""
    config = devices.config
    line_of = {m.meter_id: line_key(m.transport, m.port, m.host, m.tcp_port) for m in config.meters}
    line_of |= {
        m.module_id: line_key(m.transport, m.port, m.host, m.tcp_port) for m in config.input_modules
    }
    groups: dict[str, Devices] = {}

    def group(first_id: str) -> Devices:
        line = line_of[first_id]
        if line not in groups:
            groups[line] = Devices(
                config=config,
                queue=devices.queue,
                clock=devices.clock,
                bus_states=devices.bus_states,
                poll_counts=devices.poll_counts,
            )
        return groups[line]

    for poller in devices.pollers:
        group(poller.meter_ids[0]).pollers.append(poller)
    for di in devices.input_pollers:
        group(di.module_ids[0]).input_pollers.append(di)
    return groups


async def build_runtime(config: Config, secrets: Secrets) -> Runtime:
    config = config_with_pushed(config)  # the tariff versions the operator pushed
    key = GatewayKey.load(Path(config.ledger.key_path))
    ledger = await Ledger.open(
        Path(config.ledger.path),
        gateway_id=config.gateway.gateway_id,
        key=key,
        size_cap_bytes=int(config.ledger.size_cap_mb * 1_000_000),
        checkpoint_interval_s=config.ledger.checkpoint_interval_s,
        station_id=config.station.station_id,
        on_health=_on_ledger_health,
        on_progress=_ledger_salvage_progress(Notifier()),
    )
    ledger.append_nowait(  # not awaited: on a full disk the service must still get READY
        lifecycle_event(
            config,
            "gateway_started",
            f"evgw {VERSION} started",
            version=VERSION,
            last_seq_before_start=ledger.last_seq,
        )
    )
    signer = OcmfSigner(
        key,
        gateway_id=config.gateway.gateway_id,
        software_version=VERSION,
        time_sync="S" if clock_synchronised() else "U",
    )
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100_000)
    counting = CountingLedger(ledger)
    writer = StationWriter(StationModel(config, signer=signer), counting, queue=queue)
    await writer.start()
    runtime = Runtime(
        config=config,
        secrets=secrets,
        key=key,
        ledger=ledger,
        writer=writer,
        counting_ledger=counting,
        devices=Devices.build(config, queue),
        uplinks=build_uplinks(config, secrets, ledger),
    )
    writer.observers[:] = [runtime.devices.observe]  # seal reads at session start and end
    for uplink in runtime.uplinks:
        await ledger.register_uplink(uplink.name)
    runtime.components = build_components(runtime)
    register_handler("uplink", runtime.uplink_request)
    log.info(runtime.summary())
    return runtime
