"""Schemas of the ``body`` of each record kind (the station model ↔ uplinks contract).

The station model builds a body struct, turns it into a plain dict with :func:`body_to_dict`
and puts it in a :class:`agent.records.envelope.Record`. Uplinks read the dict back with
:func:`decode_body`, which validates it and names the kind and the field on error.

Field names are snake_case English with units in the name. Codes a platform defines (connector
status, stop reason, alarm code/type/level …) are the T/CEC 102 / DB4403/T 77 integer codes
(``docs/RECORDS.md``), so a mapping translates names and formats, never meanings. Times are UTC
ISO 8601 with milliseconds and ``Z``. Money and prices are ``Decimal`` yuan, never floats:
fixed-decimal strings in the dict (``"12.30"``); older records' JSON numbers decode alike.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Final, Literal

import msgspec


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every body: immutable, keyword-only, unknown fields refused."""


# --- connector_status -------------------------------------------------------------------


class ConnectorStatusBody(_Body, frozen=True, kw_only=True):
    """State of one connector, emitted on every change (and periodically while charging).

    ``status`` is the T/CEC connector code: 0 offline, 1 idle, 2 occupied (not charging),
    3 charging, 4 reserved, 255 fault. For DC connectors the ``*_a``/``*_v`` phase A values are
    the charger output; phases B and C stay 0.
    """

    KIND: ClassVar[str] = "connector_status"

    status: Literal[0, 1, 2, 3, 4, 255]
    phase: str | None = None
    """GB/T 27930 session phase name (``handshake``, ``config``, ``charging`` …) or None."""
    voltage_v: float = 0.0
    current_a: float = 0.0
    voltage_b_v: float = 0.0
    voltage_c_v: float = 0.0
    current_b_a: float = 0.0
    current_c_a: float = 0.0
    power_kw: float = 0.0
    energy_kwh: float | None = None
    """Meter register (import), absolute."""
    soc_pct: int | None = None
    park_status: Literal[0, 10, 50] = 0
    lock_status: Literal[0, 10, 50] = 0
    connector_lock: Literal[0, 1, 2, 255] | None = None
    connector_temp_c: int | None = None
    equipment_temp_c: int | None = None
    session_id: str | None = None
    """Charging session this status belongs to (None when idle)."""
    session_start_ts: str | None = None
    charge_energy_kwh: float = 0.0
    """Import energy of the current session (meter delta), 0 when idle."""
    discharge_energy_kwh: float = 0.0
    elec_money_yuan: Decimal = Decimal("0.00")
    service_money_yuan: Decimal = Decimal("0.00")
    """Money of the session so far (its bill up to this status, docs/BILLING.md)."""
    charge_details: tuple[ChargeDetailBody, ...] = ()
    """The session's charge details so far (empty when idle or without a tariff)."""


# --- bms_process (Shenzhen BmsInfo) -----------------------------------------------------


class BmsProcessBody(_Body, frozen=True, kw_only=True):
    """One battery-process sample of a DC charging session (GB/T 27930 BRM/BCP/BCL/BCS/BSM).

    Also used as the BmsInfo snapshot inside an alarm.
    """

    KIND: ClassVar[str] = "bms_process"

    session_id: str
    connector_status: Literal[0, 1, 2, 3, 4, 255] = 3
    demand_voltage_v: float
    demand_current_a: float
    measured_voltage_v: float
    measured_current_a: float
    soc_pct: int
    max_cell_voltage_v: float
    max_cell_voltage_no: int | None = None
    min_cell_voltage_v: float | None = None
    """Lowest cell voltage from BMV, None when the vehicle sends no per-cell voltages."""
    max_temp_c: int
    max_temp_probe_no: int | None = None
    min_temp_c: int
    min_temp_probe_no: int | None = None
    charger_output_voltage_v: float
    charger_output_current_a: float
    max_allowed_charge_current_a: float | None
    """The limits (BCP) and the identification (BRM) are sent once, before charging: None
    when the gateway joined the session later and never saw them (never a made-up 0)."""
    max_allowed_cell_voltage_v: float | None
    max_allowed_temp_c: int | None
    bms_protocol_version: str | None
    """E.g. ``V1.1``; None when BRM was not seen."""
    battery_type: int | None = None
    """GB/T 27930 BRM battery type code (1 lead-acid … 3 LFP …)."""
    rated_capacity_ah: float | None
    vin: str | None = None
    bms_code: str | None = None
    """BMS identifier if known; the mapping falls back to VIN, then connector + session."""
    elapsed_minutes: int | None = 0
    """Minutes since charging started; None when the timestamps never advanced."""
    remaining_minutes: int | None = None
    session_start_ts: str | None = None


# --- charge_order -----------------------------------------------------------------------


class ChargeDetailBody(_Body, frozen=True, kw_only=True):
    """Energy (as billed: 0.01 kWh, docs/BILLING.md) and money of one tariff period."""

    start_ts: str
    end_ts: str
    elec_price_yuan_per_kwh: Decimal
    service_price_yuan_per_kwh: Decimal
    energy_kwh: Decimal
    elec_money_yuan: Decimal
    service_money_yuan: Decimal


class VehicleBody(_Body, frozen=True, kw_only=True):
    """What the vehicle told the charger about itself (GB/T 27930 BRM and BCP)."""

    bms_protocol_version: str | None = None
    battery_type: int | None = None
    rated_capacity_ah: float | None = None
    rated_voltage_v: float | None = None
    nominal_energy_kwh: float | None = None
    battery_manufacturer: str | None = None
    pack_serial: int | None = None
    pack_charge_count: int | None = None
    max_charge_voltage_v: float | None = None
    max_charge_current_a: float | None = None
    max_cell_voltage_v: float | None = None
    max_temp_c: int | None = None


class ChargeOrderBody(_Body, frozen=True, kw_only=True):
    """The final order of one charging session.

    ``stop_reason`` is the T/CEC StopReason: 0 user, 1 platform, 2 BMS, 3 charger fault,
    4 connector disconnected. ``stop_bits`` keeps the raw BST/CST/BEM/CEM bits by name.
    """

    KIND: ClassVar[str] = "charge_order"

    session_id: str
    start_ts: str
    end_ts: str
    meter_energy_start_kwh: float | None = None
    """Meter import register at the start; None when the connector has no meter."""
    meter_energy_end_kwh: float | None = None
    energy_kwh: float
    """The order's energy: the meter delta, else the charger's CSD, else the CCS integral
    (``energy_source`` says which)."""
    energy_source: Literal["meter", "charger", "ccs_integral", "none"] = "meter"
    ccs_energy_kwh: float | None = None
    """Integral of the charger's reported output voltage × current (CCS) over the session."""
    meter_id: str | None = None
    charger_energy_kwh: float | None = None
    soc_start_pct: int | None = None
    soc_end_pct: int | None = None
    vin: str | None = None
    duration_s: int | None
    """``end_ts - start_ts``; None when the session's timestamps never advanced (a capture
    stamped once), so that there is no duration to give."""
    peak_power_kw: float = 0.0
    stop_reason: Literal[0, 1, 2, 3, 4]
    stop_bits: dict[str, int] = {}
    interrupted: bool = False
    """True when the session ended without a normal stop (power cut, gateway restart)."""
    end_reason: str | None = None
    """How the session ended: the GB/T tracker's reason (``normal``, ``lost`` …) or
    ``gateway_restart``."""
    vehicle: VehicleBody | None = None
    ocmf: str | None = None
    start_ts_estimated: bool = False
    """The gateway did not see the session begin (down at plug-in, joined late): ``start_ts``
    is the first frame it saw, ``start_ts_earliest`` the earliest the start can be."""
    start_ts_earliest: str | None = None
    end_ts_estimated: bool = False
    """The gateway did not see the session end (down at the end): ``end_ts`` is the last fact
    it saw, ``end_ts_latest`` the time by which the session had ended."""
    end_ts_latest: str | None = None
    energy_estimated: bool = False
    """``energy_kwh`` is not a measurement of the whole session (``notes`` say why): the meter
    did not answer after the end, its register went back, or a counter saw part of it."""
    resumed: int = 0
    """Gateway restarts the session continued across under the same ``session_id``."""
    unobserved_s: float = 0.0
    """Seconds of the session the gateway did not see (it was down)."""
    notes: tuple[str, ...] = ()
    """Why a field is estimated or flagged, in words (restart, meter silent, register back)."""
    tariff_id: str | None = None
    """The tariff the money was computed by (None: no tariff configured, money 0)."""
    elec_money_yuan: Decimal = Decimal("0.00")
    service_money_yuan: Decimal = Decimal("0.00")
    total_money_yuan: Decimal = Decimal("0.00")
    """Rounded to 0.01 yuan and the exact sum of the details (docs/BILLING.md)."""
    charge_details: tuple[ChargeDetailBody, ...] = ()


# --- alarm (Shenzhen AlarmInfo) ---------------------------------------------------------


class AlarmBody(_Body, frozen=True, kw_only=True):
    """An alarm edge.

    Platform alarms use the Shenzhen codes: ``code`` AlarmCode (1–31, 101–122, 201–206),
    ``type`` 1 charging system, 2 battery, 3 distribution, ``level`` 1 personal safety,
    2 equipment safety, 3 notice. ``bms`` is the last BmsInfo of the session on a DC
    connector, else None.

    Gateway-internal alarms (ledger, uplinks) use a string ``code`` such as
    ``LEDGER_RECOVERED`` with free-text ``type``/``level``; they go to the operator over MQTT
    but never to the city platform.
    """

    KIND: ClassVar[str] = "alarm"

    code: int | str
    type: Literal[1, 2, 3] | str
    level: Literal[1, 2, 3] | str
    status: Literal["raised", "cleared"]
    message: str = ""
    bms: BmsProcessBody | None = None
    causes: tuple[str, ...] = ()
    """The conditions behind the alarm (e.g. ``bsm.insulation_status``); empty when cleared."""

    @property
    def for_platform(self) -> bool:
        return (
            isinstance(self.code, int)
            and isinstance(self.type, int)
            and isinstance(self.level, int)
        )


# --- identity (StationInfo / EquipmentInfo / ConnectorInfo) -----------------------------


class ConnectorInfoBody(_Body, frozen=True, kw_only=True):
    connector_id: str
    name: str
    connector_type: int
    """T/CEC ConnectorType: 1 household socket … 4 DC plug; see spec §14.9."""
    voltage_upper_v: int
    voltage_lower_v: int
    rated_voltage_v: int
    current_a: int
    power_kw: float
    national_standard: Literal[1, 2] = 2
    bms_power_type: Literal[1, 2, 3, 255] = 1
    park_no: str | None = None


class EquipmentInfoBody(_Body, frozen=True, kw_only=True):
    equipment_id: str
    name: str
    manufacturer_id: str
    manufacturer_name: str = ""
    model: str = ""
    production_date: str | None = None
    """``yyyy-MM-dd``."""
    equipment_type: int
    """1 DC, 2 AC, 3 AC/DC, 4 wireless, 5 charge/discharge, 255 other."""
    power_kw: float
    equipment_status: Literal[1, 5, 6, 50] = 50
    new_national_standard: Literal[1, 2, 3, 255] = 2
    lng: float | None = None
    lat: float | None = None
    connectors: tuple[ConnectorInfoBody, ...]


class StationInfoBody(_Body, frozen=True, kw_only=True):
    name: str
    operator_id: str
    equipment_owner_id: str
    country_code: str = "CN"
    area_code: str
    address: str
    station_tel: str = ""
    service_tel: str
    station_type: int = 1
    station_status: Literal[0, 1, 5, 6, 50] = 50
    park_nums: int = 0
    lng: float
    lat: float
    """GCJ-02 coordinates."""
    construction: int = 255
    site_guide: str = ""
    pictures: tuple[str, ...] = ()
    busine_hours: str = ""
    electricity_fee: str = ""
    service_fee: str = ""
    park_fee: str = ""
    payment: str = ""
    support_order: Literal[0, 1] = 0
    park_owner: str = ""
    park_manager: str = ""
    open_all_day: Literal[0, 1] = 1
    park_free: Literal[0, 1] = 0
    operator_type: Literal[1, 2] = 1


class IdentityBody(_Body, frozen=True, kw_only=True):
    """Registration data of the station, pushed first and after every configuration change."""

    KIND: ClassVar[str] = "identity"

    station: StationInfoBody
    equipments: tuple[EquipmentInfoBody, ...]


# --- event, meter_sample, station_stats, gateway_health ---------------------------------


class EventBody(_Body, frozen=True, kw_only=True):
    """A lifecycle event (``started``, ``config_reloaded``, ``key_rotated``, ``clock_jump``,
    ``meter_replaced``, ``uplink_record_parked`` …). Only events with a T/CEC EventType/
    EventCode (e.g. 7001 distribution fault, 7002 station service fault) go to the city
    platform."""

    KIND: ClassVar[str] = "event"

    event: str
    message: str = ""
    details: dict[str, Any] = {}
    tcec_event_type: int | None = None
    tcec_event_code: int | None = None


class LostRange(_Body, frozen=True, kw_only=True):
    """A run of seqs a ledger event declares lost, with how many of each kind."""

    from_seq: int
    to_seq: int
    count: int
    kinds: dict[str, int] = {}
    unknown_kind: int = 0
    """Lost records whose kind nothing still names."""


class DroppedRange(_Body, frozen=True, kw_only=True):
    """Records of one kind whose bodies were dropped (the records stay as hash-only stubs)."""

    kind: str
    count: int
    from_seq: int
    to_seq: int


class LedgerEventBody(EventBody, frozen=True, kw_only=True, omit_defaults=True):
    """An ``event`` the ledger writes about itself (docs/LEDGER.md): ``ledger_recovered`` (a
    damaged file was salvaged; the event starts chain ``epoch`` and declares ``lost``),
    ``records_lost`` (records a stop could not write, declared at the next start),
    ``buffer_dropped`` and ``retention_dropped`` (bodies dropped, records kept as stubs:
    ``dropped``), and ``key_rotated`` (the old key announces the new one)."""

    EVENTS: ClassVar[frozenset[str]] = frozenset(
        {"ledger_recovered", "records_lost", "buffer_dropped", "retention_dropped", "key_rotated"}
    )

    reason: str | None = None
    epoch: int | None = None
    previous_epoch: int | None = None
    previous_file: str | None = None
    salvaged: int | None = None
    last_good_seq: int | None = None
    last_good_hash: str | None = None
    lost_from_seq: int | None = None
    lost_to_seq: int | None = None
    lost_count: int | None = None
    lost: tuple[LostRange, ...] = ()
    dropped: tuple[DroppedRange, ...] = ()
    size_cap_bytes: int | None = None
    acknowledged_deleted_below_seq: int | None = None
    memory_bound_bytes: int | None = None
    old_key_id: str | None = None
    new_key_id: str | None = None
    new_public_der_hex: str | None = None
    announcement_sig: str | None = None


class BillingEventBody(EventBody, frozen=True, kw_only=True):
    """An ``event`` of the billing audit about one session (docs/BILLING.md): ``billed_checked``
    (the operator's billed figure against the metered order, ``details`` holding both) and
    ``billed_missing`` (no billed figure within the deadline). ``session_id`` is top-level so
    that the ledger finds a session's audit by its index."""

    EVENTS: ClassVar[frozenset[str]] = frozenset({"billed_checked", "billed_missing"})

    session_id: str


class MeterSampleBody(_Body, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "meter_sample"

    meter_id: str
    power_kw: float
    energy_kwh: float
    export_energy_kwh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None


class ConnectorStatsBody(_Body, frozen=True, kw_only=True):
    connector_id: str
    equipment_id: str
    energy_kwh: float
    discharge_energy_kwh: float = 0.0
    sessions: int
    charging_minutes: float = 0.0
    alarms: dict[str, int] = {}
    """Alarms raised in the period, by code."""
    stop_reasons: dict[str, int] = {}
    """Orders finished in the period, by T/CEC StopReason."""


class StationStatsBody(_Body, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "station_stats"

    period: Literal["hour", "day"]
    period_start_ts: str
    period_end_ts: str
    connectors: tuple[ConnectorStatsBody, ...]


class GatewayHealthBody(_Body, frozen=True, kw_only=True):
    KIND: ClassVar[str] = "gateway_health"

    uptime_s: float
    version: str
    backlog: dict[str, int] = {}
    ledger_size_bytes: int | None = None
    last_seq: int | None = None
    versions: dict[str, str] = {}


BODIES: Final[tuple[type[_Body], ...]] = (
    ConnectorStatusBody,
    BmsProcessBody,
    ChargeOrderBody,
    AlarmBody,
    MeterSampleBody,
    StationStatsBody,
    EventBody,
    GatewayHealthBody,
    IdentityBody,
)
"""One body struct per record kind; each names its kind (``KIND``). Adding a kind: a struct
here with its ``KIND``, appended to this tuple — the ledger, the CLI and the uplinks take
their list of kinds from :data:`KINDS`."""

BODY_TYPES: Final[dict[str, type[_Body]]] = {body.KIND: body for body in BODIES}

KINDS: Final[tuple[str, ...]] = tuple(BODY_TYPES)
"""Every record kind. ``identity`` carries station/equipment/connector registration data."""


class BodyError(ValueError):
    """A body that does not match its kind's schema; the message names kind and field."""


def decode_body(kind: str, body: dict[str, Any]) -> Any:
    """Validate ``body`` against the schema of ``kind`` and return the typed struct.

    Raises :class:`BodyError` naming the kind and the offending field, e.g.
    ``connector_status body: Expected `int`, got `str` - at `$.status```.
    """
    body_type = BODY_TYPES.get(kind)
    if body_type is None:
        raise BodyError(f"unknown record kind {kind!r}; known kinds: {', '.join(BODY_TYPES)}")
    if body_type is EventBody and body.get("event") in LedgerEventBody.EVENTS:
        body_type = LedgerEventBody
    elif body_type is EventBody and body.get("event") in BillingEventBody.EVENTS:
        body_type = BillingEventBody
    try:
        return msgspec.convert(body, body_type)
    except msgspec.ValidationError as exc:
        raise BodyError(f"{kind} body: {exc}") from None


def body_to_dict(body: _Body) -> dict[str, Any]:
    """The plain-dict form of a body struct, as stored in ``Record.body``."""
    out = msgspec.to_builtins(body)
    assert isinstance(out, dict)
    return out
