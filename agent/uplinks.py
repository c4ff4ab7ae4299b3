"""Config + secrets → the uplink objects (MQTT, T/CEC 102) the service supervises.

Each uplink reads the ledger through its own durable cursor; they are registered with the
ledger at start so retention never deletes what an uplink has not acknowledged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import ConfigError, Secrets
from agent.config_schema import Config
from agent.ledger import Ledger
from agent.uplink.cec import CecSettings, CecUplink
from agent.uplink.mqtt import MqttSettings, MqttUplink


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def mqtt_settings(config: Config, secrets: Secrets) -> MqttSettings:
    m = config.uplinks.mqtt
    assert m is not None
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
        username=secrets.mqtt.username,
        password=secrets.mqtt.password,
        tls=m.tls,
        ca_file=_path(m.ca_file),
        client_cert=_path(m.cert_file),
        client_key=_path(m.key_file),
        tls_verify=m.verify_hostname,
        batch_size=max(m.batch_size, 1),
        records_per_message=min(m.batch_size, 500),
        inflight_window=m.inflight,
        keepalive_s=m.keepalive_s,
        command_public_key_pem=command_key,
    )


def cec_settings(config: Config, secrets: Secrets) -> CecSettings:
    c = config.uplinks.cec
    assert c is not None and secrets.cec is not None  # load_secrets requires [cec] when enabled
    s = secrets.cec
    return CecSettings(
        base_url=c.base_url,
        operator_id=c.operator_id or config.gateway.operator_id,
        platform_operator_id=c.platform_operator_id,
        operator_secret=str(s.operator_secret),
        data_secret=str(s.data_secret),
        data_iv=str(s.data_iv),
        sig_secret=str(s.sig_secret),
        station_id=config.station.station_id,
        station_name=config.station.name,
        equipment_owner_id=config.station.equipment_owner_id or "",
        interfaces=frozenset(c.interfaces),
        timeout_s=c.request_timeout_s,
        batch_size=c.batch_size,
        charge_status_interval_s=c.status_interval_s,
        retry_cap_s=c.retry_max_s,
        key_as_iv=c.iv_equals_key,
        accept_lowercase_sig=c.accept_lowercase_sig,
        ca_file=_path(c.ca_file),
        client_cert=_path(c.cert_file),
        client_key=_path(c.key_file),
    )


def build_uplinks(config: Config, secrets: Secrets, ledger: Ledger) -> list[Any]:
    """The enabled uplinks, in a stable order (mqtt, cec)."""
    uplinks: list[Any] = []
    if config.uplinks.mqtt is not None and config.uplinks.mqtt.enabled:
        uplinks.append(MqttUplink(mqtt_settings(config, secrets), ledger))
    if config.uplinks.cec is not None and config.uplinks.cec.enabled:
        uplinks.append(CecUplink(cec_settings(config, secrets), ledger))
    return uplinks
