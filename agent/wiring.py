"""What the service runs, built from the config.

:func:`build_runtime` turns a validated :class:`~agent.config_schema.Config` into a
:class:`Runtime`: long-lived resources (the ledger) plus the list of supervised
:class:`Component`\\ s (drivers, station model, uplinks). On SIGHUP the service stops the
components, calls :meth:`Runtime.reconfigure` with the new config and starts the new ones;
long-lived resources stay open.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Secrets
from agent.config_schema import Config

log = logging.getLogger("evgw.wiring")


@dataclass(frozen=True, slots=True)
class Component:
    """One supervised, long-running part of the service."""

    name: str
    run: Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Runtime:
    config: Config
    secrets: Secrets
    components: list[Component] = field(default_factory=list)

    def summary(self) -> str:
        c = self.config
        uplinks = [
            name
            for name, section in (("mqtt", c.uplinks.mqtt), ("cec", c.uplinks.cec))
            if section is not None and section.enabled
        ]
        return (
            f"station {c.station.station_id}: {len(c.connectors())} connectors, "
            f"{len(c.meters)} meters, {len(c.can_buses)} CAN buses, "
            f"uplinks: {', '.join(uplinks) or 'none'}"
        )

    def snapshot(self) -> dict[str, Any]:
        """This runtime's part of the status snapshot."""
        c = self.config
        return {
            "connectors": [
                {"connector_id": cid, "equipment_id": e.equipment_id, "type": conn.connector_type}
                for cid, (e, conn) in c.connectors().items()
            ],
        }

    async def reconfigure(self, config: Config, secrets: Secrets) -> Runtime:
        """The runtime for a reloaded config, keeping long-lived resources open."""
        return await build_runtime(config, secrets)

    async def close(self) -> None:
        """Flush and close long-lived resources."""


async def build_runtime(config: Config, secrets: Secrets) -> Runtime:
    runtime = Runtime(config=config, secrets=secrets)
    log.info(runtime.summary())
    return runtime
