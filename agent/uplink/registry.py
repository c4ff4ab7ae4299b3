"""Every uplink plug-in the gateway knows, in the order they are built and checked.

Adding an uplink: a folder ``agent/uplink/<name>/`` with a ``plugin.py`` that exports
``PLUGIN`` (:class:`agent.uplink.plugin.UplinkPlugin`), and one line below. The config
schema, the secrets loader, the service, ``evgw check`` and ``evgw status`` take it from
here (docs/ARCHITECTURE.md, "Adding an uplink").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.uplink.cec.plugin import PLUGIN as CEC
from agent.uplink.mqtt.plugin import PLUGIN as MQTT
from agent.uplink.plugin import Uplink, UplinkPlugin

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.config.secrets import Secrets
    from agent.ledger import Ledger

PLUGINS: tuple[UplinkPlugin, ...] = (
    MQTT,
    CEC,
)


def enabled_uplinks(config: Config) -> list[tuple[UplinkPlugin, Any]]:
    """The enabled plug-ins with their config sections, in registry order."""
    found = [(plugin, plugin.enabled_section(config)) for plugin in PLUGINS]
    return [(plugin, section) for plugin, section in found if section is not None]


def build_uplinks(config: Config, secrets: Secrets, ledger: Ledger) -> list[Uplink]:
    """The enabled uplinks, in registry order."""
    return [
        plugin.build(config, section, secrets.uplink(plugin.name), ledger)
        for plugin, section in enabled_uplinks(config)
    ]
