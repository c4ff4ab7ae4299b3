"""Switch a running service to a new config part by part, and tell which parts work.

:func:`switch` follows a :class:`~agent.ops.config_diff.Plan`: it stops the supervised tasks of
the parts the plan names (``can-<connector>``, ``meters-<line>``, ``uplink-<name>``), swaps in
the drivers and uplinks built from the new config for exactly those parts, hands the station
model the new config when it reads what changed, and starts the tasks again. Every other part
keeps its task and its objects: an unchanged bus keeps listening, an unchanged meter line keeps
its poller and its open connection, an unchanged uplink stays connected. The service's desks
(components built afresh from the config, such as the billing watch) start again with the new
config. The station model gets the config with the tariff versions the operator pushed
(:func:`agent.service.tariffs.config_with_pushed`), as at a start or reload. Nothing is written
to the ledger that the station did not produce (no records are lost: the queue and the ledger
stay as they are; an uplink's cursor moves only on acknowledgement, so a rebuilt uplink sends
on from where the old one was acknowledged).

:func:`health` is what a config apply watches: each CAN bus, meter and uplink, and why it does
not work when it does not.
"""

from __future__ import annotations

import logging
import time

from agent.config.schema import Config
from agent.config.secrets import Secrets
from agent.ops.config_diff import Change, Plan, diff, plan
from agent.service.devices import Devices
from agent.service.supervisor import Supervisor
from agent.service.tariffs import config_with_pushed
from agent.service.wiring import Runtime, build_components, line_devices
from agent.uplink.plugin import Uplink
from agent.uplink.registry import enabled_uplinks

log = logging.getLogger("evgw.apply")

PART_STOP_S = 3.0
"""How long the stopped parts may take to close their buses, lines and connections."""


PART_PREFIXES = ("can-", "meters-", "uplink-")
KEPT = ("station", "can-activity")
"""Components that run on objects an apply keeps (the station writer, the bus monitor)."""


def plan_for(
    old: Config, new: Config, old_secrets: Secrets, new_secrets: Secrets
) -> tuple[list[Change], Plan]:
    """The changes and the plan; an uplink whose secrets changed in the secrets file is
    rebuilt too (it must log in with the new ones)."""
    changes = diff(old, new)
    steps = plan(old, new, changes)
    for plugin, _section in enabled_uplinks(new):
        if old_secrets.uplink(plugin.name) != new_secrets.uplink(plugin.name):
            log.info("the secrets of uplink %s changed: it reconnects with them", plugin.name)
            steps.uplinks[plugin.name] = None
    return changes, steps


def task_names(plan: Plan) -> list[str]:
    """The supervised tasks the plan stops and starts again."""
    return (
        [f"can-{cid}" for cid in plan.buses]
        + [f"meters-{line}" for line in plan.lines]
        + [f"uplink-{name}" for name in plan.uplinks]
    )


def _desks(runtime: Runtime) -> list[str]:
    """The components built afresh from the config each time (no part of the plan)."""
    return [
        c.name
        for c in runtime.components
        if c.name not in KEPT and not c.name.startswith(PART_PREFIXES)
    ]


def _swap_devices(devices: Devices, config: Config, plan: Plan) -> None:
    """Put the new config's drivers into ``devices`` for the planned buses and lines; keep
    the running ones elsewhere. New drivers report through the same queue and state dicts."""
    fresh = Devices.build(config, devices.queue)
    fresh.bus_states, fresh.poll_counts = devices.bus_states, devices.poll_counts
    kept = {
        listener.spec.connector_id: listener
        for listener in devices.listeners
        if listener.spec.connector_id not in plan.buses
    }
    for cid in plan.buses:
        devices.bus_states.pop(cid, None)  # "open" again only once the new listener opened
    old_lines = line_devices(devices)
    pollers, input_pollers = [], []
    for line, group in line_devices(fresh).items():
        chosen = old_lines.get(line, group) if line not in plan.lines else group
        pollers += chosen.pollers
        input_pollers += chosen.input_pollers
    devices.config = config
    devices.listeners = [kept.get(new.spec.connector_id, new) for new in fresh.listeners]
    devices.pollers, devices.input_pollers = pollers, input_pollers


async def _swap_uplinks(runtime: Runtime, config: Config, secrets: Secrets, plan: Plan) -> None:
    running = {u.name: u for u in runtime.uplinks}
    uplinks: list[Uplink] = []
    for plugin, section in enabled_uplinks(config):
        uplink = running.get(plugin.name)
        if uplink is None or plugin.name in plan.uplinks:
            uplink = plugin.build(config, section, secrets.uplink(plugin.name), runtime.ledger)
            await runtime.ledger.register_uplink(uplink.name)
        uplinks.append(uplink)
    runtime.uplinks = uplinks


async def switch(
    runtime: Runtime, supervisor: Supervisor, config: Config, secrets: Secrets, plan: Plan
) -> None:
    """Run ``config`` from now on, rebuilding only what ``plan`` names (module docstring)."""
    config = config_with_pushed(config)
    names = task_names(plan) + _desks(runtime)
    await supervisor.stop(timeout_s=PART_STOP_S, names=names)
    runtime.config, runtime.secrets = config, secrets
    if plan.devices:
        _swap_devices(runtime.devices, config, plan)
        for record in runtime.writer.model.reload(config, time.time()):
            runtime.ledger.append_nowait(record)
    else:
        runtime.devices.config = config
    await _swap_uplinks(runtime, config, secrets, plan)
    if "gateway.log_level" in plan.service:
        logging.getLogger().setLevel(config.gateway.log_level.upper())
    runtime.components = build_components(runtime)
    wanted = {c.name: c for c in runtime.components}
    for name in dict.fromkeys([*names, *_desks(runtime)]):
        if name in wanted:
            supervisor.start(name, wanted[name].run)
    activity = wanted.get("can-activity")
    if activity is not None and not supervisor.running(activity.name):
        supervisor.start(activity.name, activity.run)
    if activity is None:
        await supervisor.stop(timeout_s=PART_STOP_S, names=["can-activity"])
    supervisor.forget([*names, "can-activity"])
    log.info("now running: %s", runtime.summary())


def health(runtime: Runtime) -> dict[str, str | None]:
    """Each CAN bus, meter and uplink: None when it works, else why not (as far as known)."""
    devices = runtime.devices
    found: dict[str, str | None] = {}
    for listener in devices.listeners:
        cid = listener.spec.connector_id
        state = devices.bus_states.get(cid)
        working = state is not None and state.state == "open"
        why = f"{state.state}: {state.detail}" if state is not None else "not open yet"
        found[f"CAN bus of {cid}"] = None if working else why
    for poller in devices.pollers:
        for meter_id in poller.meter_ids:
            h = poller.health(meter_id)
            found[f"meter {meter_id}"] = None if h.online else (h.last_error or "no answer yet")
    for uplink in runtime.uplinks:
        stats = uplink.stats
        found[f"uplink {uplink.name}"] = (
            None if stats.connected else (stats.last_error or "not connected yet")
        )
    return found
