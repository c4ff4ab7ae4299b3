"""What an uplink plug-in gives the rest of the gateway (DESIGN §4, §6).

An uplink is one folder, ``agent/uplink/<name>/``, whose ``plugin.py`` exports one
:class:`UplinkPlugin`, and one line in :mod:`agent.uplink.registry`. Through it the uplink
owns its config section (``[uplinks.<name>]``), its secrets table (``[<name>]`` in
``secrets.toml``), its settings and their defaults, its construction, its ``evgw check`` step
and — through :meth:`Uplink.status` — its lines in ``evgw status``. The config loader, the
secrets loader, the service, the checks and the status view iterate over the registry and
name no uplink.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from agent.uplink.base import UplinkStats

if TYPE_CHECKING:
    from agent.commission.results import CheckResult
    from agent.config.schema import Config
    from agent.ledger import Ledger


class Uplink(Protocol):
    """What the service runner needs from an uplink."""

    name: str
    stats: UplinkStats

    async def run(self) -> None:
        """Forward records until cancelled; transient failures are retried, never raised."""
        ...

    def status(self) -> dict[str, Any]:
        """This uplink's row in ``evgw status`` and the metrics (its counters and state)."""
        ...


@dataclass(frozen=True, slots=True)
class UplinkPlugin:
    """One uplink kind, as the registry lists it."""

    name: str
    """Its key: ``[uplinks.<name>]`` in evgw.toml, ``[<name>]`` in secrets.toml, the cursor."""
    title: str
    """How messages name it, e.g. ``MQTT``."""
    section: type[msgspec.Struct]
    """The schema of ``[uplinks.<name>]`` (a :class:`agent.config.section.Section`)."""
    secrets_required: bool
    """Whether ``secrets.toml`` must exist and hold ``[<name>]`` when the uplink is enabled."""
    parse_secrets: Callable[[dict[str, Any] | None, list[str]], Any]
    """``[<name>]`` of secrets.toml (None when absent) → its secrets object; problems are
    appended with their key path (``<name>.<key>: …``)."""
    cross_check: Callable[[Config, Any], list[str]]
    """Problems between its section and the rest of the config (key paths in each)."""
    build: Callable[[Config, Any, Any, Ledger], Uplink]
    """(config, its section, its secrets, the ledger) → the uplink the service supervises."""
    check: Callable[[Config, Any, Any], Awaitable[list[CheckResult]]]
    """``evgw check``'s step: talk to the platform once, OK/WARN/FAIL lines with hints."""
    needs_money: bool = False
    """Whether the orders it sends must carry money: then every connector needs a tariff."""
    warnings: Callable[[Config, Any], list[str]] = lambda _config, _section: []
    """Settings that work but deserve a second look (plaintext to a public address), shown by
    ``evgw config check`` and ``evgw check`` and logged at start; never a refusal."""

    def enabled_section(self, config: Config) -> Any | None:
        """Its section when configured and enabled, else None."""
        section = getattr(config.uplinks, self.name)
        return section if section is not None and section.enabled else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) stays on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
