"""The MQTT uplink as a plug-in: its section, secrets, settings, construction and check."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.errors import ConfigError
from agent.config.section import Secret
from agent.uplink.mqtt.check import check_broker
from agent.uplink.mqtt.config import MqttSection, cross_check, warnings
from agent.uplink.mqtt.settings import MqttSettings
from agent.uplink.mqtt.uplink import MqttUplink
from agent.uplink.plugin import UplinkPlugin

if TYPE_CHECKING:
    from agent.commission.results import CheckResult
    from agent.config.schema import Config
    from agent.ledger import Ledger


@dataclass(frozen=True, slots=True)
class MqttSecrets:
    """``[mqtt]`` of secrets.toml: the broker login, both optional."""

    username: Secret | None = None
    password: Secret | None = None


def parse_secrets(table: dict[str, Any] | None, problems: list[str]) -> MqttSecrets:
    if table is None:
        return MqttSecrets()
    values = {}
    for key in ("username", "password"):
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"mqtt.{key}: expected a string, found {type(value).__name__}")
        values[key] = Secret(value) if isinstance(value, str) else None
    return MqttSecrets(**values)


REPLAY_FILE = "mqtt-commands.seen"
"""Beside the ledger (the service's state directory): the command ids already accepted."""


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def mqtt_settings(config: Config, m: MqttSection, secrets: MqttSecrets) -> MqttSettings:
    command_key = None
    if m.command_pubkey_file:
        try:
            command_key = Path(m.command_pubkey_file).read_text("ascii")
        except OSError as exc:
            raise ConfigError(
                "uplinks.mqtt.command_pubkey_file",
                [f"cannot read {m.command_pubkey_file}: {exc.strerror}"],
            ) from None
    return MqttSettings(
        brokers=tuple(m.brokers),
        station_id=config.station.station_id,
        client_id=m.client_id or f"evgw-{config.gateway.gateway_id}",
        topic_prefix=m.topic_prefix,
        protocol=m.protocol,
        username=secrets.username,
        password=secrets.password,
        tls=m.tls,
        ca_file=_path(m.ca_file),
        client_cert=_path(m.cert_file),
        client_key=_path(m.key_file),
        verify_hostname=m.verify_hostname,
        batch_size=max(m.batch_size, 1),
        records_per_message=min(m.batch_size, 500),
        inflight_window=m.inflight,
        keepalive_s=m.keepalive_s,
        command_public_key_pem=command_key,
        command_replay_file=Path(config.ledger.path).with_name(REPLAY_FILE),
    )


def build(config: Config, section: MqttSection, secrets: MqttSecrets, ledger: Ledger) -> MqttUplink:
    return MqttUplink(mqtt_settings(config, section, secrets), ledger)


async def check(config: Config, section: MqttSection, secrets: MqttSecrets) -> list[CheckResult]:
    return await asyncio.to_thread(check_broker, mqtt_settings(config, section, secrets))


PLUGIN = UplinkPlugin(
    name="mqtt",
    title="MQTT",
    section=MqttSection,
    secrets_required=False,
    parse_secrets=parse_secrets,
    cross_check=cross_check,
    build=build,
    check=check,
    warnings=warnings,
)
