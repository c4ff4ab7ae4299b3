"""What the MQTT uplink and its command handler need, filled by the plug-in from
``[uplinks.mqtt]`` (kept apart so neither module imports the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.config.section import default_of
from agent.uplink.mqtt.config import MqttSection


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything the MQTT uplink needs; the plug-in fills it from ``[uplinks.mqtt]``, whose
    defaults these are (one set of defaults: :func:`agent.config.section.default_of`)."""

    brokers: tuple[str, ...]
    """``host:port`` of each broker (cluster node), tried in turn."""
    station_id: str
    client_id: str
    """Stable across restarts: the broker keeps the session under it."""
    topic_prefix: str = default_of(MqttSection, "topic_prefix")
    topic_template: str = "{prefix}/{station_id}/{kind}"
    protocol: Literal["3.1.1", "5"] = default_of(MqttSection, "protocol")
    username: str | None = None
    password: str | None = None
    tls: bool = default_of(MqttSection, "tls")
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify_hostname: bool = default_of(MqttSection, "verify_hostname")
    """Check that the broker's certificate names the host dialled. Off, the chain is still
    verified against ``ca_file`` (a broker reached by an address its certificate lacks)."""
    qos: Literal[1] = 1
    batch_size: int = default_of(MqttSection, "batch_size")
    """Records read from the ledger per batch."""
    records_per_message: int = 500
    inflight_window: int = default_of(MqttSection, "inflight")
    """Messages published and not yet acknowledged, at most."""
    keepalive_s: int = default_of(MqttSection, "keepalive_s")
    session_expiry_s: int = 7 * 86400
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    poll_s: float = 1.0
    command_public_key_pem: str | None = None
    """The platform key commands must be signed with; None refuses every command."""
    command_max_age_s: float = 300.0
    command_replay_file: Path | None = None
    """Where accepted command ids are kept across restarts (None: in memory only)."""
    uplink_name: str = "mqtt"

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("brokers: at least one host:port is needed")
        for address in self.brokers:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"broker address {address!r} is not host:port")
        if "{kind}" not in self.topic_template and "{station_id}" not in self.topic_template:
            raise ValueError("topic_template needs {station_id} (and usually {kind})")
        if self.batch_size < 1 or self.records_per_message < 1 or self.inflight_window < 1:
            raise ValueError("batch_size, records_per_message and inflight_window must be ≥ 1")

    def address(self, index: int) -> tuple[str, int]:
        host, _, port = self.brokers[index % len(self.brokers)].rpartition(":")
        return host.strip("[]"), int(port)

    def topic(self, kind: str) -> str:
        return self.topic_template.format(
            prefix=self.topic_prefix, station_id=self.station_id, kind=kind
        )

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.station_id}"
