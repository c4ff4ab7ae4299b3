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

ProjectGroup = Literal["energy_audit", "meter_seal", "site_device"]
"""The groups of the project's own alarm codes 9001–9299 (``agent.station.codes``
``PROJECT_TYPES``, which an uplink may not import; a test keeps the two equal)."""
Carrier = Literal["event", "alarm", "off"]
PROJECT_GROUPS: tuple[str, ...] = ProjectGroup.__args__  # type: ignore[attr-defined]
DEFAULT_CARRIERS: Final[dict[str, str]] = {
    "energy_audit": "event",
    "meter_seal": "event",
    "site_device": "off",
}
"""How each group reaches the city platform unless configured (docs/RECORDS.md)."""
STATION_SERVICE_FAULT: Final = 7002
"""The default ``EventCode`` of the ``event`` carrier (spec §15.7)."""
PLATFORM_ALARM_CODES: Final = (
    frozenset(range(1, 32)) | frozenset(range(101, 123)) | frozenset(range(201, 207))
)
"""The Shenzhen ``AlarmCode`` table (spec §15.6): what the ``alarm`` carrier may send."""
CARRIERS: tuple[str, ...] = Carrier.__args__  # type: ignore[attr-defined]


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
    unknown_fields_member: bool = True
    """``BmsInfo.UnknownFields`` names the members the gateway could not know (docs/RECORDS.md);
    false leaves the project member out for a platform that refuses members it does not know."""
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
    project_alarms: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_CARRIERS))
    """Group of project alarm codes → T/CEC carrier: ``event`` (EventInfo), ``alarm``
    (AlarmInfo with ``project_alarm_codes``), ``off`` (operator only); a group left out keeps
    its default."""
    project_event_codes: dict[str, int] = msgspec.field(default_factory=dict)
    """``EventCode`` of the ``event`` carrier per group (default 7002 station service fault)."""
    project_alarm_codes: dict[str, int] = msgspec.field(default_factory=dict)
    """Shenzhen ``AlarmCode`` of the ``alarm`` carrier per group (required for it)."""


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
    return problems + _carrier_problems(cec)


def carriers_of(cec: CecSection) -> dict[str, str]:
    """Every group's carrier: the configured one, else its default."""
    return {**DEFAULT_CARRIERS, **cec.project_alarms}


def _unknown_groups(cec: CecSection) -> list[str]:
    problems = []
    for name, table in (
        ("project_alarms", cec.project_alarms),
        ("project_event_codes", cec.project_event_codes),
        ("project_alarm_codes", cec.project_alarm_codes),
    ):
        for group in sorted(set(table) - set(PROJECT_GROUPS)):
            problems.append(
                f"uplinks.cec.{name}.{group}: unknown group of project alarm codes; "
                f"known: {', '.join(PROJECT_GROUPS)}"
            )
    for group, carrier in sorted(cec.project_alarms.items()):
        if carrier not in CARRIERS:
            problems.append(
                f"uplinks.cec.project_alarms.{group}: expected one of "
                f"{', '.join(repr(c) for c in CARRIERS)}, found {carrier!r}"
            )
    for group, code in sorted(cec.project_event_codes.items()):
        if not 6001 <= code <= 7999:
            problems.append(
                f"uplinks.cec.project_event_codes.{group}: expected a T/CEC EventCode of type 6 "
                f"'other' (6001-7999, e.g. 7002 station service fault), found {code}"
            )
    return problems


def _carrier_problems(cec: CecSection) -> list[str]:
    problems = _unknown_groups(cec)
    if problems:
        return problems
    carriers = carriers_of(cec)
    for group, code in sorted(cec.project_alarm_codes.items()):
        key = f"uplinks.cec.project_alarm_codes.{group}"
        if code not in PLATFORM_ALARM_CODES:
            problems.append(f"{key}: {code} is not a Shenzhen AlarmCode (1-31, 101-122, 201-206)")
        if carriers[group] != "alarm":
            problems.append(f'{key}: read only when project_alarms.{group} = "alarm"')
    for group, _code in sorted(cec.project_event_codes.items()):
        if carriers[group] != "event":
            problems.append(
                f"uplinks.cec.project_event_codes.{group}: read only when "
                f'project_alarms.{group} = "event"'
            )
    for group in sorted(g for g, c in carriers.items() if c == "alarm"):
        if group not in cec.project_alarm_codes:
            problems.append(
                f"uplinks.cec.project_alarm_codes.{group}: required with "
                f'project_alarms.{group} = "alarm" (the Shenzhen AlarmCode to send)'
            )
    return problems


def warnings(_config: Config, cec: CecSection) -> list[str]:
    """Plaintext HTTP to a platform that is not on this machine; a project alarm carrier
    whose interface is not among ``interfaces`` (those alarms would not go out)."""
    out = []
    scheme, _, rest = cec.base_url.partition("://")
    host = urlsplit(cec.base_url).hostname or rest.split("/", 1)[0]
    if scheme == "http" and not is_loopback(host):
        out.append(
            f"uplinks.cec.base_url: http:// to {host} sends the bearer token in plaintext (the "
            "Data is AES-encrypted, the token is not); a city platform should be https://"
        )
    interface = {"event": "notification_eventInfo", "alarm": "notification_alarmInfo"}
    for group, carrier in sorted(carriers_of(cec).items()):
        if carrier in interface and interface[carrier] not in cec.interfaces:
            out.append(
                f"uplinks.cec.project_alarms.{group}: {carrier!r} needs "
                f"{interface[carrier]} in uplinks.cec.interfaces; those alarms stay operator-only"
            )
    return out
