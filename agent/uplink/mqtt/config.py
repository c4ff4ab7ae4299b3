"""``[uplinks.mqtt]``: the MQTT uplink's section of evgw.toml and its cross-checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from agent.config.section import Meta, Section
from agent.uplink.plugin import is_loopback

if TYPE_CHECKING:
    from agent.config.schema import Config


class MqttSection(Section, kw_only=True):
    enabled: bool = True
    brokers: Annotated[
        list[Annotated[str, Meta(pattern=r"^[^:\s]+:\d{1,5}$", description="host:port")]],
        Meta(min_length=1),
    ]
    """``host:port`` entries, tried in turn."""
    tls: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True
    client_id: str | None = None
    """Stable client id; defaults to ``evgw-<gateway_id>``."""
    protocol: Literal["3.1.1", "5"] = "5"
    topic_prefix: Annotated[
        str, Meta(pattern=r"^[^#+\s]+$", description="a topic without wildcards or spaces")
    ] = "evgw/v1"
    qos: Literal[1] = 1
    keepalive_s: Annotated[int, Meta(ge=5, le=3600)] = 60
    batch_size: Annotated[int, Meta(ge=1, le=10000)] = 500
    inflight: Annotated[int, Meta(ge=1, le=1000)] = 20
    command_pubkey_file: str | None = None
    """PEM public key of the platform: downlink commands must be signed by it (the ``admin``
    role: every command)."""
    command_keys: dict[Literal["read", "operate", "admin"], str] = msgspec.field(
        default_factory=dict
    )
    """Role → PEM public key file: one platform key per role (``read`` asks, ``operate`` also
    acts, ``admin`` may do everything; see ``agent.uplink.mqtt.command_roles``)."""


def cross_check(_config: Config, m: MqttSection) -> list[str]:
    problems = []
    if m.tls and not m.ca_file:
        problems.append(
            "uplinks.mqtt.ca_file: required when tls = true (the CA that signed the broker's "
            "certificate); set tls = false only on a trusted local network"
        )
    if (m.cert_file is None) != (m.key_file is None):
        problems.append("uplinks.mqtt: cert_file and key_file must be given together")
    return problems


def warnings(_config: Config, m: MqttSection) -> list[str]:
    if m.tls:
        return []
    public = [b for b in m.brokers if not is_loopback(b.rpartition(":")[0])]
    if not public:
        return []
    return [
        f"uplinks.mqtt.tls: false sends records and the broker password in plaintext to "
        f"{', '.join(public)}; use tls = true unless the link is a private, trusted network"
    ]
