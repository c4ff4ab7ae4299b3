"""The shape of ``evgw.toml``: typed, immutable, with defaults and ranges.

Every section is a frozen ``msgspec.Struct``. Validation of a whole file (all errors at
once, key paths, "did you mean") lives in :mod:`agent.config.load`; cross-checks between
sections live there too. Field names carry their units.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agent.billing.config import TariffSection
from agent.config.section import (
    Baud,
    CanBitrate,
    Meta,
    NonEmpty,
    NonNegative,
    OperatorId,
    Percent,
    Port,
    Positive,
    Section,
    UnitId,
)
from agent.uplink.registry import PLUGINS


class GatewaySection(Section, kw_only=True):
    gateway_id: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._-]{1,64}$",
            description="1 to 64 letters, digits, dots, dashes or underscores",
        ),
    ]
    operator_id: OperatorId
    """The 9-character organisation code of the station operator (T/CEC OperatorID)."""
    state_dir: NonEmpty = "/var/lib/evgw"
    secrets_file: NonEmpty = "/etc/evgw/secrets.toml"
    """Used when systemd's ``$CREDENTIALS_DIRECTORY`` does not hold ``secrets.toml``."""
    runtime_dir: NonEmpty = "/run/evgw"
    """Where the status socket lives (systemd's ``$RUNTIME_DIRECTORY`` wins when set)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    apply_timeout_s: Annotated[float, Meta(ge=1, le=600)] = 60.0
    """After a ``config apply`` (``evgw config apply``, MQTT ``config.apply``): how long the
    buses, meters and uplinks that worked before may take to work again before the previous
    config is restored."""
    configs_kept: Annotated[int, Meta(ge=0, le=100)] = 5
    """How many replaced config files an apply keeps next to the file (``evgw.toml.1`` the
    newest … ``evgw.toml.<n>``)."""


class StationSection(Section, kw_only=True):
    station_id: Annotated[str, Meta(min_length=1, max_length=20)]
    name: Annotated[str, Meta(min_length=1, max_length=50)]
    area_code: Annotated[str, Meta(pattern=r"^[0-9]{6}$", description="6 digits")] = "440300"
    """GB/T 2260 administrative division code (440300 = Shenzhen)."""
    address: Annotated[str, Meta(max_length=200)] = ""
    country_code: Annotated[str, Meta(min_length=2, max_length=2)] = "CN"
    equipment_owner_id: OperatorId | None = None
    service_tel: Annotated[str, Meta(max_length=30)] = ""
    station_tel: Annotated[str, Meta(max_length=32)] = ""
    station_type: Literal[1, 50, 100, 101, 102, 103, 255] = 1
    station_status: Literal[0, 1, 5, 6, 50] = 50
    construction: Annotated[int, Meta(ge=1, le=255)] = 255
    park_nums: Annotated[int, Meta(ge=0)] = 0
    lng: Annotated[float, Meta(ge=-180, le=180)] = 0.0
    lat: Annotated[float, Meta(ge=-90, le=90)] = 0.0
    timezone: NonEmpty = "Asia/Shanghai"
    """Wall time of tariff periods and of the times sent to the city platform (IANA name)."""
    capacity_kw: Positive | None = None
    """The site's grid connection (transformer or contracted) capacity: the station main
    meter's power above it is alarm 202 (overload). None: no overload check."""


class ConnectorSection(Section, kw_only=True):
    connector_id: Annotated[str, Meta(min_length=1, max_length=26)]
    name: Annotated[str, Meta(max_length=30)] = ""
    connector_type: Literal[1, 2, 3, 4, 5, 6, 255]
    """T/CEC ConnectorType: 4 = DC plug with cable (GB/T 27930 CAN), 3 = AC plug with cable."""
    power_kw: Positive
    voltage_upper_v: Annotated[int, Meta(ge=1, le=1500)]
    voltage_lower_v: Annotated[int, Meta(ge=0, le=1500)]
    current_a: Annotated[int, Meta(ge=1, le=1000)]
    national_standard: Literal[1, 2] = 2
    """1 = GB/T 2011, 2 = GB/T 2015."""
    park_no: Annotated[str, Meta(max_length=10)] = ""
    tariff: str | None = None
    """The ``[[tariffs]]`` id billing this connector; None: the default tariff."""


class EquipmentSection(Section, kw_only=True):
    equipment_id: Annotated[str, Meta(min_length=1, max_length=23)]
    name: Annotated[str, Meta(max_length=30)] = ""
    equipment_type: Literal[1, 2, 3, 4, 5, 255]
    """1 DC, 2 AC, 3 AC/DC, 4 wireless, 5 charge/discharge, 255 other (T/CEC numbering)."""
    power_kw: Positive
    manufacturer_id: Annotated[str, Meta(max_length=9)] = ""
    model: Annotated[str, Meta(max_length=20)] = ""
    production_date: (
        Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="yyyy-MM-dd")] | None
    ) = None
    connectors: Annotated[list[ConnectorSection], Meta(min_length=1)]


class MeterSection(Section, kw_only=True):
    meter_id: Annotated[str, Meta(min_length=1, max_length=32)]
    profile: NonEmpty
    """Meter model profile name, as listed by ``evgw meter profiles``."""
    transport: Literal["rtu", "tcp", "rtu_over_tcp"]
    protocol: Literal["modbus", "dlt645"] = "modbus"
    """``dlt645``: DL/T 645-2007 on an RS-485 line (``transport = "rtu"``), found by ``address``."""
    unit_id: UnitId | None = None
    """Modbus unit id (required for Modbus meters)."""
    address: (
        Annotated[str, Meta(pattern=r"^[0-9]{12}$", description="12 decimal digits (BCD)")] | None
    ) = None
    """DL/T 645 meter address, 12 digits as printed on the meter (required for dlt645)."""
    connector_id: str | None = None
    role: Literal["connector", "station_main"] = "connector"
    # RTU
    port: str | None = None
    baud: Baud | None = None
    """Default 9600 for Modbus, 2400 for DL/T 645 (the standard's custom)."""
    parity: Literal["N", "E", "O"] | None = None
    """Default ``N`` for Modbus, ``E`` for DL/T 645."""
    stop_bits: Literal[1, 2] = 1
    # TCP
    host: str | None = None
    tcp_port: Port = 502
    poll_interval_s: Annotated[float, Meta(ge=0.2, le=3600)] = 5.0
    timeout_s: Annotated[float, Meta(gt=0, le=30)] = 1.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    offline_after_failures: Annotated[int, Meta(ge=1, le=100)] = 3
    rated_power_kw: Positive | None = None
    """Upper bound for plausibility checks; defaults to the connector's power."""
    function: Literal[3, 4] | None = None
    """Modbus function code for the measurements when the meter differs from its profile
    (``evgw meter scan`` reports it)."""
    options: dict[str, str] = msgspec.field(default_factory=dict)
    """Choices for the profile's disputed registers, as ``evgw meter scan`` settles them
    (e.g. ``{ energy_block = "0x4000" }``)."""
    seal_interval_s: Annotated[float, Meta(ge=5, le=86400)] = 60.0
    """How often identity, clock and event counters are read (DL/T 645 meters; Modbus meters
    whose profile declares identity registers), besides every session start and end."""
    clock_drift_max_s: Annotated[float, Meta(gt=0, le=86400)] = 300.0
    """A meter clock further than this from the gateway's is an alarm (DL/T 645 meters)."""
    seal_clear_after_s: Annotated[float, Meta(ge=60, le=604800)] = 3600.0
    """A tamper or replacement alarm clears this long after the last counted event (and at
    least two seal reads later) when no further event was counted (docs/METERS.md §9.5)."""

    def __post_init__(self) -> None:
        dlt645 = self.protocol == "dlt645"
        if self.baud is None:
            msgspec.structs.force_setattr(self, "baud", 2400 if dlt645 else 9600)
        if self.parity is None:
            msgspec.structs.force_setattr(self, "parity", "E" if dlt645 else "N")


DEFAULT_PROFILE_DIR = "/etc/evgw/meters"


class MeterProfilesSection(Section, kw_only=True):
    """``[meter_profiles]``: folders of field meter profiles, read after the shipped ones.

    Not ``meters.profile_dirs``: ``[[meters]]`` is an array of tables, and TOML cannot make
    ``meters`` both an array and a table with a ``profile_dirs`` key."""

    dirs: list[NonEmpty] = msgspec.field(default_factory=lambda: [DEFAULT_PROFILE_DIR])
    """In order; a profile with the name of an earlier one (or of a shipped one) replaces it.
    A missing ``/etc/evgw/meters`` is fine; any other missing folder is a config error."""


class InputModuleSection(Section, kw_only=True):
    """``[[input_modules]]``: a Modbus digital-input module (``evgw meter profiles`` style
    profiles in ``drivers/inputs/profiles``, or a ``[meter_profiles]`` folder)."""

    module_id: Annotated[str, Meta(min_length=1, max_length=32)]
    profile: NonEmpty
    transport: Literal["rtu", "tcp", "rtu_over_tcp"] = "rtu"
    unit_id: UnitId
    port: str | None = None
    baud: Baud = 9600
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    host: str | None = None
    tcp_port: Port = 502
    poll_interval_s: Annotated[float, Meta(ge=0.1, le=60)] = 0.5
    timeout_s: Annotated[float, Meta(gt=0, le=30)] = 0.5
    offline_after_failures: Annotated[int, Meta(ge=1, le=100)] = 3
    """Failed reads in a row before the module's own fault alarm (its inputs keep their state)."""


class InputSection(Section, kw_only=True):
    """``[[inputs]]``: one contact of a module, what it means and whom it concerns."""

    input_id: Annotated[str, Meta(min_length=1, max_length=32)]
    module: NonEmpty
    """The ``module_id`` of its ``[[input_modules]]`` entry."""
    channel: Annotated[int, Meta(ge=0, le=63)]
    role: Literal[
        "estop", "smoke_charger", "smoke_room", "door", "breaker_aux", "seal", "flood", "custom"
    ]
    active_level: Literal["high", "low"] = "high"
    """``low``: the alarm is an open contact (a normally-closed loop)."""
    debounce_s: Annotated[float, Meta(ge=0, le=60)] = 0.2
    connectors: list[NonEmpty] = msgspec.field(default_factory=list)
    """The connectors it concerns; empty: the whole station."""
    description: Annotated[str, Meta(max_length=100)] = ""


class CanBusSection(Section, kw_only=True):
    connector_id: NonEmpty
    interface: NonEmpty
    """A python-can interface: socketcan, slcan, pcan, kvaser, virtual, …"""
    channel: NonEmpty
    bitrate: CanBitrate = 250000
    listen_only: bool = True


UplinksSection = msgspec.defstruct(
    "UplinksSection",
    [(plugin.name, plugin.section | None, None) for plugin in PLUGINS],
    bases=(Section,),
    module=__name__,
    kw_only=True,
)
"""``[uplinks.<name>]``: one optional section per registered uplink plug-in."""


class LedgerSection(Section, kw_only=True):
    path: NonEmpty = "/var/lib/evgw/ledger.db"
    key_path: NonEmpty = "/var/lib/evgw/gateway.key"
    size_cap_mb: Annotated[float, Meta(ge=1)] = 1024.0
    checkpoint_interval_s: Annotated[float, Meta(ge=1, le=60)] = 60.0


class SamplingSection(Section, kw_only=True):
    bms_process_interval_s: Annotated[float, Meta(ge=1, le=3600)] = 15.0
    status_heartbeat_s: Annotated[float, Meta(ge=5, le=3600)] = 50.0
    meter_sample_interval_s: Annotated[float, Meta(ge=1, le=86400)] = 60.0
    offline_after_s: Annotated[float, Meta(ge=1, le=3600)] = 30.0
    """A connector whose bus and meter are silent this long is reported offline (status 0)."""
    ac_charging_current_a: NonNegative = 1.0
    """An AC connector without CAN is charging (status 3) while its meter reads more current."""
    ac_session_end_s: Annotated[float, Meta(ge=1, le=86400)] = 120.0
    """An AC session (no CAN) ends when the current stays below the threshold this long."""
    stats_utc_offset_h: Annotated[float, Meta(ge=-12, le=14)] = 8.0
    """Local time of the hourly/daily statistics (China: +8); days start at local midnight."""
    resume_window_s: Annotated[float, Meta(ge=1, le=3600)] = 120.0
    """After a start, how long the bus is watched for a session a previous run left open to
    continue (same session id, same start register) before it is closed from the register."""
    max_session_h: Annotated[float, Meta(gt=0, le=720)] = 24.0
    """A session left open longer ago than this is closed at start, never continued."""


class SafetySection(Section, kw_only=True):
    battery_over_temp_c: Annotated[float, Meta(ge=0, le=150)] = 55.0
    temp_rise_c_per_min: Annotated[float, Meta(gt=0, le=100)] = 2.0
    overcurrent_margin_a: NonNegative = 5.0
    overcurrent_duration_s: Annotated[float, Meta(gt=0, le=600)] = 5.0
    voltage_mismatch_pct: Percent = 5.0
    connector_over_temp_c: Annotated[float, Meta(ge=0, le=200)] = 90.0
    bms_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 5.0
    energy_tolerance_kwh: NonNegative = 0.5
    energy_tolerance_pct: Percent = 2.0
    hysteresis_c: NonNegative = 2.0
    hysteresis_pct: Percent = 1.0
    """Voltage mismatch clears when back below ``voltage_mismatch_pct`` minus this."""
    cell_voltage_hysteresis_v: NonNegative = 0.05
    """Cell/pack over-voltage clears when this far below the BCP limit."""
    billed_energy_tolerance_kwh: NonNegative = 0.05
    billed_energy_tolerance_pct: Percent = 0.5
    """Billed against metered energy: the larger of the two allowances (the percentage of the
    metered energy); more is alarm 9008."""
    billed_money_tolerance_yuan: Annotated[float, Meta(ge=0, le=100)] = 0.01
    """Billed against the gateway's own money: a larger difference is alarm 9009."""
    billed_deadline_s: Annotated[float, Meta(ge=0, le=30 * 86400)] = 86400.0
    """An order without a billed figure this long after its end is alarm 9010 (0: off)."""
    no_energy_current_a: Annotated[float, Meta(gt=0, le=1000)] = 5.0
    """An order with no metered energy while the BMS reported more current is alarm 9011."""
    short_session_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    short_session_energy_kwh: NonNegative = 0.1
    """A session shorter than ``short_session_s`` with more energy is alarm 9012."""
    duplicate_order_window_h: Annotated[float, Meta(ge=0, le=720)] = 48.0
    """A second order for a session whose order was written this recently is alarm 9013."""
    energy_above_power_pct: Percent = 10.0
    """Energy above peak power x duration by more than this (and ``energy_tolerance_kwh``) is
    alarm 9015."""
    grid_over_voltage_v: Annotated[float, Meta(ge=100, le=1000)] = 242.0
    """A phase voltage of the station main meter above this is alarm 201 (grid over-voltage;
    default 220 V + 10 %); it clears 2 % below."""


class MetricsSection(Section, kw_only=True):
    enabled: bool = False
    port: Port = 9108
    """Bound to 127.0.0.1 only."""


class Config(Section, kw_only=True):
    gateway: GatewaySection
    station: StationSection
    equipment: Annotated[list[EquipmentSection], Meta(min_length=1)]
    meters: list[MeterSection] = msgspec.field(default_factory=list)
    meter_profiles: MeterProfilesSection = msgspec.field(default_factory=MeterProfilesSection)
    can_buses: list[CanBusSection] = msgspec.field(default_factory=list)
    input_modules: list[InputModuleSection] = msgspec.field(default_factory=list)
    inputs: list[InputSection] = msgspec.field(default_factory=list)
    tariffs: list[TariffSection] = msgspec.field(default_factory=list)
    uplinks: UplinksSection = msgspec.field(default_factory=UplinksSection)
    ledger: LedgerSection = msgspec.field(default_factory=LedgerSection)
    sampling: SamplingSection = msgspec.field(default_factory=SamplingSection)
    safety: SafetySection = msgspec.field(default_factory=SafetySection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)

    def connectors(self) -> dict[str, tuple[EquipmentSection, ConnectorSection]]:
        """Every connector by id, with the equipment that holds it."""
        return {c.connector_id: (e, c) for e in self.equipment for c in e.connectors}
