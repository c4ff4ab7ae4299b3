"""The T/CEC 102 uplink as a plug-in: its section, secrets, settings, construction, check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agent.billing.tariff import Tariff, TariffBook
from agent.config.section import Secret
from agent.uplink.cec.check import check_platform
from agent.uplink.cec.codec import CecSecrets
from agent.uplink.cec.config import CecSection, cross_check, warnings
from agent.uplink.cec.queries import TariffOf
from agent.uplink.cec.reconcile import MARKS_FILE
from agent.uplink.cec.server import ServeSettings
from agent.uplink.cec.settings import project_carriers
from agent.uplink.cec.uplink import CecSettings, CecUplink
from agent.uplink.plugin import UplinkPlugin

if TYPE_CHECKING:
    from agent.commission.results import CheckResult
    from agent.config.schema import Config
    from agent.ledger import Ledger

log = logging.getLogger("agent.uplink.cec")

NO_SECRET: Final = Secret("")

CADENCE_FILE: Final = "cec-cadence.json"
"""The push cadence the platform set (``query_frequency``), kept beside the ledger."""

SIXTEEN_BYTES = ("data_secret", "data_iv", "sig_secret")
"""The AES key, the IV and the HMAC key are 16 bytes each (T/CEC 102 §8)."""


@dataclass(frozen=True, slots=True)
class CecPlatformSecrets:
    """``[cec]`` of secrets.toml: the four secrets the city platform issued."""

    operator_secret: Secret
    data_secret: Secret
    data_iv: Secret
    sig_secret: Secret
    inbound_operator_secret: Secret = NO_SECRET
    """The inbound set (``serve_listen``): issued by the gateway's operator to the platform."""
    inbound_data_secret: Secret = NO_SECRET
    inbound_data_iv: Secret = NO_SECRET
    inbound_sig_secret: Secret = NO_SECRET

    def inbound(self) -> CecSecrets | None:
        if not self.inbound_sig_secret:
            return None
        return CecSecrets(
            str(self.inbound_data_secret), str(self.inbound_data_iv), str(self.inbound_sig_secret)
        )


def _secret(table: dict[str, Any], key: str, problems: list[str]) -> Secret:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        problems.append(f"cec.{key}: required, a non-empty string")
        return Secret("")
    if key.removeprefix("inbound_") in SIXTEEN_BYTES and len(value.encode()) != 16:
        problems.append(
            f"cec.{key}: must be 16 ASCII characters, found {len(value.encode())} bytes"
        )
    return Secret(value)


OUTBOUND = ("operator_secret", "data_secret", "data_iv", "sig_secret")
INBOUND = tuple(f"inbound_{key}" for key in OUTBOUND)


def parse_secrets(table: dict[str, Any] | None, problems: list[str]) -> CecPlatformSecrets:
    """The outbound set (required) and the inbound set (all four, or none)."""
    table = table or {}
    keys = OUTBOUND + (INBOUND if any(k in table for k in INBOUND) else ())
    return CecPlatformSecrets(**{key: _secret(table, key, problems) for key in keys})


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cec_settings(config: Config, c: CecSection, s: CecPlatformSecrets) -> CecSettings:
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
        token_refresh_margin_s=c.token_refresh_margin_s,
        batch_size=c.batch_size,
        probe_interval_s=c.probe_interval_s,
        park_peer_on=frozenset(c.park_peer_on),
        link_alarm_after_s=c.link_alarm_after_s,
        catch_up_days=c.catch_up_days,
        reconcile_marks=Path(config.ledger.path).with_name(MARKS_FILE),
        cadence_file=Path(config.ledger.path).with_name(CADENCE_FILE),
        connectors=tuple(
            (e.equipment_id, conn.connector_id) for e in config.equipment for conn in e.connectors
        ),
        max_response_bytes=c.max_response_bytes,
        reply_echoes_seq=c.reply_echoes_seq,
        charge_status_interval_s=c.status_interval_s,
        retry_cap_s=c.retry_max_s,
        key_as_iv=c.iv_equals_key,
        accept_lowercase_sig=c.accept_lowercase_sig,
        unknown_fields_member=c.unknown_fields_member,
        ca_file=_path(c.ca_file),
        client_cert=_path(c.cert_file),
        client_key=_path(c.key_file),
        project_carriers=project_carriers(c),
    )


def serve_settings(config: Config, c: CecSection, s: CecPlatformSecrets) -> ServeSettings | None:
    """The query server's settings, or None when it is off (no ``serve_listen``)."""
    if c.serve_listen is None:
        return None
    inbound = s.inbound()
    if inbound is None:
        log.error(
            "uplinks.cec.serve_listen is set but secrets.toml [cec] has no inbound_* secrets: "
            "the platform's queries are not served"
        )
        return None
    host, _, port = c.serve_listen.rpartition(":")
    return ServeSettings(
        host=host,
        port=int(port),
        base_path=c.serve_base_path,
        platform_operator_id=c.platform_operator_id,
        operator_secret=str(s.inbound_operator_secret),
        secrets=inbound,
        cert_file=_path(c.serve_cert_file),
        key_file=_path(c.serve_key_file),
        client_ca_file=_path(c.serve_client_ca_file),
        tariff_of=tariff_of(config),
    )


def tariff_of(config: Config) -> TariffOf:
    """The tariff in force for a connector at a time, as the station bills it."""
    book = TariffBook.from_config(config.tariffs, config.station.timezone)
    chosen = {c.connector_id: c.tariff for e in config.equipment for c in e.connectors}

    def lookup(connector_id: str, ts: float) -> Tariff | None:
        tariff_id = book.tariff_id_for(chosen.get(connector_id))
        return book.in_force(tariff_id, ts) if tariff_id is not None else None

    return lookup


def build(
    config: Config, section: CecSection, secrets: CecPlatformSecrets, ledger: Ledger
) -> CecUplink:
    return CecUplink(
        cec_settings(config, section, secrets),
        ledger,
        serve=serve_settings(config, section, secrets),
    )


async def check(
    config: Config, section: CecSection, secrets: CecPlatformSecrets
) -> list[CheckResult]:
    return await check_platform(cec_settings(config, section, secrets))


PLUGIN = UplinkPlugin(
    name="cec",
    title="T/CEC platform",
    section=CecSection,
    secrets_required=True,
    needs_money=True,
    parse_secrets=parse_secrets,
    cross_check=cross_check,
    build=build,
    check=check,
    warnings=warnings,
)
