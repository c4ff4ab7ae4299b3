"""What the T/CEC uplink runs with: :class:`CecSettings`, filled by the plug-in from
``[uplinks.cec]``, whose defaults these are (one set of defaults:
:func:`agent.config.section.default_of`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.config.section import default_of
from agent.uplink.cec.codec import CecSecrets
from agent.uplink.cec.config import STATION_SERVICE_FAULT, CecSection, carriers_of
from agent.uplink.cec.mapping import ALL_INTERFACES
from agent.uplink.cec.project_alarms import DEFAULT_PROJECT_CARRIERS, ProjectCarrier
from agent.uplink.cec.token import FAILURE_BACKOFF_S


@dataclass(frozen=True, slots=True)
class CecSettings:
    """Everything the T/CEC uplink needs."""

    base_url: str
    """Platform base including its version path, e.g. ``https://host/shevcs/v1.0/``."""
    operator_id: str
    """Own OperatorID (9 characters)."""
    platform_operator_id: str
    operator_secret: str
    data_secret: str
    data_iv: str
    sig_secret: str
    station_id: str
    station_name: str
    equipment_owner_id: str = ""
    """Defaults to ``operator_id``."""
    interfaces: frozenset[str] = frozenset(default_of(CecSection, "interfaces"))
    connect_timeout_s: float = 5.0
    timeout_s: float = default_of(CecSection, "request_timeout_s")
    """Total deadline of one HTTP exchange (connect, send, the whole answer)."""
    max_response_bytes: int = default_of(CecSection, "max_response_bytes")
    reply_echoes_seq: bool = default_of(CecSection, "reply_echoes_seq")
    """The platform echoes ``TimeStamp`` and ``Seq`` inside its signed reply ``Data``: an
    answer without them, or with another request's, is refused."""
    batch_size: int = default_of(CecSection, "batch_size")
    probe_interval_s: float = default_of(CecSection, "probe_interval_s")
    park_peer_on: frozenset[int] = frozenset(default_of(CecSection, "park_peer_on"))
    link_alarm_after_s: float = default_of(CecSection, "link_alarm_after_s")
    catch_up_days: int = default_of(CecSection, "catch_up_days")
    reconcile_marks: Path | None = None
    """The file of reconciled days (beside the ledger); None keeps them in memory only."""
    cadence_file: Path | None = None
    """The push cadence the platform set with ``query_frequency`` (beside the ledger)."""
    connectors: tuple[tuple[str, str], ...] = ()
    """(EquipmentID, ConnectorID) of every connector: where alarm 27 is raised."""
    lanes_in_parallel: int = 4
    poll_s: float = 1.0
    charge_status_interval_s: float = default_of(CecSection, "status_interval_s")
    retry_initial_s: float = 1.0
    retry_cap_s: float = default_of(CecSection, "retry_max_s")
    token_retry_s: tuple[float, ...] = FAILURE_BACKOFF_S
    token_refresh_margin_s: float = default_of(CecSection, "token_refresh_margin_s")
    key_as_iv: bool = default_of(CecSection, "iv_equals_key")
    """Shenzhen 2020 quirk: the DataSecret is also the IV."""
    accept_lowercase_sig: bool = default_of(CecSection, "accept_lowercase_sig")
    unknown_fields_member: bool = default_of(CecSection, "unknown_fields_member")
    verify_response_sig: bool = True
    integer_status_values: bool = True
    send_record_id_header: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    uplink_name: str = "cec"
    project_carriers: dict[str, ProjectCarrier] = field(
        default_factory=lambda: dict(DEFAULT_PROJECT_CARRIERS)
    )
    """How each group of project alarm codes reaches the platform (``project_alarms``)."""

    def __post_init__(self) -> None:
        if len(self.operator_id) != 9:
            raise ValueError(f"operator_id must be 9 characters, got {self.operator_id!r}")
        unknown = self.interfaces - ALL_INTERFACES
        if unknown:
            raise ValueError(
                f"unknown interfaces {sorted(unknown)}; known: {sorted(ALL_INTERFACES)}"
            )

    def secrets(self) -> CecSecrets:
        iv = self.data_secret if self.key_as_iv else self.data_iv
        return CecSecrets(self.data_secret, iv, self.sig_secret)


def project_carriers(cec: CecSection) -> dict[str, ProjectCarrier]:
    """``project_alarms`` with its codes, as the mapping uses them (``off`` groups left out)."""
    out = {}
    for group, kind in carriers_of(cec).items():
        if kind == "event":
            out[group] = ProjectCarrier(
                "event", cec.project_event_codes.get(group, STATION_SERVICE_FAULT)
            )
        elif kind == "alarm":
            out[group] = ProjectCarrier("alarm", cec.project_alarm_codes[group])
    return out
