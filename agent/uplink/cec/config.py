"""``[uplinks.cec]``: the T/CEC 102 uplink's section of evgw.toml and its cross-checks."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Final, Literal
from urllib.parse import urlsplit

import msgspec

from agent.config.section import Meta, OperatorId, Section
from agent.uplink.cec.rules import config_problems
from agent.uplink.plugin import is_loopback

if TYPE_CHECKING:
    from agent.config.schema import Config


CecInterface = Literal[
    "notification_stationInfo",
    "notification_stationStatus",
    "notification_bmsInfo",
    "notification_alarmInfo",
    "notification_charge_order_info",
    "notification_eventInfo",
    "notification_equip_charge_status",
    "check_charge_orders",
]

ALL_CEC_INTERFACES: tuple[str, ...] = CecInterface.__args__  # type: ignore[attr-defined]
RETRIED_CODES: Final = frozenset({0, -1, 500, 4001, 4002})
"""``Ret`` codes with their own handling, never a reason to park (spec §10.1)."""


class CecSection(Section, kw_only=True):
    enabled: bool = True
    base_url: Annotated[
        str, Meta(pattern=r"^https?://\S+$", description="an http:// or https:// URL")
    ]
    operator_id: OperatorId | None = None
    """Our OperatorID on the platform; defaults to ``gateway.operator_id``."""
    platform_operator_id: OperatorId
    interfaces: list[CecInterface] = msgspec.field(default_factory=lambda: list(ALL_CEC_INTERFACES))
    request_timeout_s: Annotated[float, Meta(gt=0, le=120)] = 10.0
    """Total deadline of one request: connect, send and the whole answer."""
    max_response_bytes: Annotated[int, Meta(ge=4096, le=64 * 1024 * 1024)] = 1024 * 1024
    """A longer answer is aborted while it streams in and retried."""
    reply_echoes_seq: bool = False
    """The platform echoes TimeStamp and Seq inside its reply Data: require and check them."""
    token_refresh_margin_s: Annotated[float, Meta(ge=0, le=86400)] = 300.0
    status_interval_s: Annotated[float, Meta(ge=5, le=3600)] = 50.0
    retry_max_s: Annotated[float, Meta(ge=1, le=3600)] = 300.0
    batch_size: Annotated[int, Meta(ge=1, le=1000)] = 50
    probe_interval_s: Annotated[float, Meta(ge=1, le=86400)] = 600.0
    """While the platform is parked (``park_peer_on``), one probe this often."""
    park_peer_on: list[Annotated[int, Meta(ge=-1, le=99999)]] = msgspec.field(
        default_factory=lambda: [4003]
    )
    """``Ret`` codes that park the whole platform (probe, then resume in order); any other
    refusal but -1, 500, 4001 and 4002 parks only the record."""
    link_alarm_after_s: Annotated[float, Meta(ge=10, le=86400)] = 300.0
    """Alarm 27 (back-end communication fault) after the platform failed this long."""
    catch_up_days: Annotated[int, Meta(ge=1, le=60)] = 7
    """Days back that ``check_charge_orders`` catches up on when a day was missed."""
    iv_equals_key: bool = False
    """Platform quirk: the AES IV is the DataSecret itself (Shenzhen 2020-era)."""
    accept_lowercase_sig: bool = False
    """Platform quirk: the platform answers with a lower-case hex Sig."""
    serve_listen: (
        Annotated[str, Meta(pattern=r"^[^\s:]+:[0-9]{1,5}$", description="host:port")] | None
    ) = None
    """Serve the platform's queries on this address (off by default; needs the inbound
    secrets in secrets.toml)."""
    serve_base_path: Annotated[
        str, Meta(pattern=r"^/\S*/$", description="a path that starts and ends with /")
    ] = "/evcs/v1/"
    serve_cert_file: str | None = None
    serve_key_file: str | None = None
    serve_client_ca_file: str | None = None
    """Require client certificates signed by this CA (mutual TLS)."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def cross_check(config: Config, cec: CecSection) -> list[str]:
    problems = []
    if (cec.cert_file is None) != (cec.key_file is None):
        problems.append("uplinks.cec: cert_file and key_file must be given together")
    if (cec.serve_cert_file is None) != (cec.serve_key_file is None):
        problems.append("uplinks.cec: serve_cert_file and serve_key_file must be given together")
    if cec.serve_client_ca_file is not None and cec.serve_cert_file is None:
        problems.append("uplinks.cec.serve_client_ca_file: mutual TLS needs serve_cert_file")
    if cec.serve_listen is not None and not 1 <= int(cec.serve_listen.rpartition(":")[2]) <= 65535:
        problems.append(f"uplinks.cec.serve_listen: port outside 1..65535 in {cec.serve_listen!r}")
    for i, e in enumerate(config.equipment):
        if len(e.manufacturer_id) != 9:
            problems.append(
                f"equipment[{i}].manufacturer_id: the city platform requires the "
                f"manufacturer's 9-character organisation code, found {e.manufacturer_id!r}"
            )
    retried = sorted(set(cec.park_peer_on) & RETRIED_CODES)
    if retried:
        problems.append(
            f"uplinks.cec.park_peer_on: {retried} cannot park the platform: 0 is success, "
            "-1 and 500 are retried, 4001 and 4002 have their own handling"
        )
    if "notification_stationInfo" in cec.interfaces:
        problems += config_problems(config)
    twice = sorted(name for name, n in Counter(cec.interfaces).items() if n > 1)
    if twice:
        problems.append(f"uplinks.cec.interfaces: listed twice: {twice}")
    return problems


def warnings(_config: Config, cec: CecSection) -> list[str]:
    """Plaintext HTTP to a platform that is not on this machine."""
    scheme, _, rest = cec.base_url.partition("://")
    host = urlsplit(cec.base_url).hostname or rest.split("/", 1)[0]
    if scheme != "http" or is_loopback(host):
        return []
    return [
        f"uplinks.cec.base_url: http:// to {host} sends the bearer token in plaintext (the "
        "Data is AES-encrypted, the token is not); a city platform should be https://"
    ]
