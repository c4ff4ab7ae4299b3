"""Records → T/CEC 102 / Shenzhen business objects, in their exact wire formats.

Pure functions: a :class:`~agent.records.envelope.StoredRecord` (with a body validated by
:func:`agent.records.bodies.decode_body`) becomes a :class:`Notification` — the interface name
and the ``Data`` object — or None when the kind does not go to the city platform. Wire rules
(spec §12–§15): PascalCase member names with the standard's misspellings (``Sevice*``,
``TatalVoltage``, ``TemptureH/L``, ``BusineHours``, ``OpratorType``), times as
``yyyy-MM-dd HH:mm:ss`` in UTC+8, quantities as JSON numbers with fixed decimals (``Decimal``,
written with trailing zeros by :func:`agent.uplink.cec.codec.encode_business`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from agent.records.bodies import (
    AlarmBody,
    BmsProcessBody,
    ChargeDetailBody,
    ChargeOrderBody,
    ConnectorStatusBody,
    EventBody,
    IdentityBody,
    decode_body,
)
from agent.records.envelope import StoredRecord, parse_iso_ts
from agent.uplink.cec.codec import CHINA_TZ
from agent.uplink.cec.project_alarms import (
    DEFAULT_PROJECT_CARRIERS,
    ProjectCarrier,
    project_alarm_object,
)

STATION_STATUS: Final = "notification_stationStatus"
BMS_INFO: Final = "notification_bmsInfo"
ALARM_INFO: Final = "notification_alarmInfo"
ORDER_INFO: Final = "notification_charge_order_info"
STATION_INFO: Final = "notification_stationInfo"
EVENT_INFO: Final = "notification_eventInfo"
CHARGE_STATUS: Final = "notification_equip_charge_status"
CHECK_ORDERS: Final = "check_charge_orders"

INTERFACE_BY_KIND: Final = {
    "connector_status": STATION_STATUS,
    "bms_process": BMS_INFO,
    "alarm": ALARM_INFO,
    "charge_order": ORDER_INFO,
    "identity": STATION_INFO,
    "event": EVENT_INFO,
}
ALL_INTERFACES: Final = frozenset((*INTERFACE_BY_KIND.values(), CHARGE_STATUS, CHECK_ORDERS))


@dataclass(frozen=True, slots=True)
class MappingContext:
    """What the objects need beyond the record: the gateway's identity on the platform."""

    operator_id: str
    equipment_owner_id: str
    station_name: str
    integer_status_values: bool = True
    unknown_fields_member: bool = True
    """Name what is unknown in ``BmsInfo.UnknownFields`` (``[uplinks.cec]``)."""
    """Shenzhen declares ConnectorStatusInfo currents/voltages int: send rounded integers."""
    project_carriers: dict[str, ProjectCarrier] = field(
        default_factory=lambda: dict(DEFAULT_PROJECT_CARRIERS)
    )
    """Alarm ``type`` of a project code group → its carrier; a group not here stays off."""


@dataclass(frozen=True, slots=True)
class Notification:
    interface: str
    data: dict[str, Any]
    lane: str
    """Ordering lane: records of one lane (one connector) are sent strictly in order."""
    record_id: str | None = None


# --- value formats ------------------------------------------------------------------------


def dec(value: float | Decimal, places: int) -> Decimal:
    """``value`` rounded half-up to ``places`` decimals, printed with trailing zeros. Money and
    prices come as ``Decimal`` and are taken as they are (no float on their way)."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return exact.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def cst_datetime(iso: str) -> str:
    """ISO 8601 UTC (``…Z``) → ``yyyy-MM-dd HH:mm:ss`` China Standard Time."""
    return cst_from_epoch(parse_iso_ts(iso))


def cst_from_epoch(epoch_s: float) -> str:
    return _dt.datetime.fromtimestamp(int(epoch_s), tz=CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def start_charge_seq(operator_id: str, session_id: str) -> str:
    """27 characters: OperatorID + an 18-character unique part derived from the session id.

    A session id that already is 18 alphanumerics is used as is; anything else is replaced by
    the first 18 hex digits of its SHA-256, so the same session always gets the same seq.
    """
    if len(session_id) == 18 and session_id.isascii() and session_id.isalnum():
        return operator_id + session_id
    return operator_id + hashlib.sha256(session_id.encode()).hexdigest()[:18].upper()


def _lane(record: StoredRecord) -> str:
    return record.connector_id or record.equipment_id or "station"


def _whole(value: float, as_int: bool) -> int | Decimal:
    return (
        int(Decimal(repr(float(value))).quantize(Decimal(1), ROUND_HALF_UP))
        if as_int
        else dec(value, 1)
    )


# --- objects ------------------------------------------------------------------------------


def connector_status_info(
    connector_id: str, body: ConnectorStatusBody, ctx: MappingContext
) -> dict[str, Any]:
    as_int = ctx.integer_status_values
    info: dict[str, Any] = {
        "ConnectorID": connector_id,
        "Status": body.status,
        "ParkStatus": body.park_status,
        "LockStatus": body.lock_status,
        "CurrentA": _whole(abs(body.current_a), as_int),
        "CurrentB": _whole(abs(body.current_b_a), as_int),
        "CurrentC": _whole(abs(body.current_c_a), as_int),
        "VoltageA": _whole(body.voltage_v, as_int),
        "VoltageB": _whole(body.voltage_b_v, as_int),
        "VoltageC": _whole(body.voltage_c_v, as_int),
        "ChargeElectricity": dec(body.charge_energy_kwh, 2),
        "DischargeElectricity": dec(body.discharge_energy_kwh, 2),
    }
    if body.soc_pct is not None:
        info["SOC"] = body.soc_pct
    if body.connector_temp_c is not None:
        info["ConnectorTemp"] = body.connector_temp_c
    if body.equipment_temp_c is not None:
        info["EquipmentTemp"] = body.equipment_temp_c
    if body.connector_lock is not None:
        info["ConnectorLock"] = body.connector_lock
    return info


def bms_info(
    body: BmsProcessBody, connector_id: str, unknown_member: bool = True
) -> dict[str, Any]:
    """The Shenzhen ``BmsInfo`` object (all members required).

    Nothing is invented: a member the gateway does not know (the vehicle's limits and
    identification when it joined the session after BRM/BCP; ``VoltageL`` when the vehicle
    sends no per-cell voltages, spec §20) carries the spec's neutral value — 0, or
    ``unknown`` for ``BMSVer`` — and is named in the project member ``UnknownFields`` unless
    ``unknown_member`` is off (docs/RECORDS.md, "values the gateway cannot know").
    """
    if body.bms_code:
        code = body.bms_code
    elif body.vin:
        code = body.vin
    else:
        start = body.session_start_ts or body.session_id
        code = f"{connector_id}-{start}"
    known: dict[str, float | int | str | None] = {
        "BMSVer": None if body.bms_protocol_version is None else body.bms_protocol_version[:50],
        "MaxChargeCurrent": _maybe_dec(body.max_allowed_charge_current_a, 1),
        "MaxChargeCellVoltage": _maybe_dec(body.max_allowed_cell_voltage_v, 2),
        "MaxTemp": body.max_allowed_temp_c,
        "RatedCapacity": (
            None if body.rated_capacity_ah is None else int(dec(body.rated_capacity_ah, 0))
        ),
        "VoltageL": _maybe_dec(body.min_cell_voltage_v, 2),
    }
    unknown = [name for name, value in known.items() if value is None]
    placeholder = {name: "unknown" if name == "BMSVer" else 0 for name in unknown}
    info: dict[str, Any] = {
        "BMSCode": code[:50],
        "BMSVer": known["BMSVer"],
        "MaxChargeCurrent": known["MaxChargeCurrent"],
        "MaxChargeCellVoltage": known["MaxChargeCellVoltage"],
        "MaxTemp": known["MaxTemp"],
        "RatedCapacity": known["RatedCapacity"],
        "TatalVoltage": dec(body.measured_voltage_v, 1),
        "TotalCurrent": dec(abs(body.measured_current_a), 1),
        "Soc": body.soc_pct,
        "VoltageH": dec(body.max_cell_voltage_v, 2),
        "VoltageL": known["VoltageL"],
        "TemptureH": body.max_temp_c,
        "TemptureL": body.min_temp_c,
        **placeholder,
    }
    if unknown and unknown_member:
        info["UnknownFields"] = unknown
    return info


def _maybe_dec(value: float | None, places: int) -> Decimal | None:
    return None if value is None else dec(value, places)


def alarm_info(record: StoredRecord, body: AlarmBody, ctx: MappingContext) -> dict[str, Any]:
    info: dict[str, Any] = {
        "StationID": record.station_id,
        "OperatorID": ctx.operator_id,
        "EquipmentOwnerID": ctx.equipment_owner_id,
        "StationName": ctx.station_name,
        "EquipmentID": record.equipment_id or "",
        "ConnectorID": record.connector_id or "",
        "AlarmStatus": 1 if body.status == "raised" else 0,
        "AlarmCode": body.code,
        "AlarmType": body.type,
        "AlarmLevel": body.level,
        "AlarmTime": cst_datetime(record.ts),
    }
    if body.message:
        info["NoteString"] = body.message[:255]
    if body.bms is not None:
        info["BmsInfo"] = bms_info(body.bms, record.connector_id or "", ctx.unknown_fields_member)
    return info


def project_alarm(
    record: StoredRecord, body: AlarmBody, ctx: MappingContext
) -> tuple[str, dict[str, Any]] | None:
    """The interface and ``Data`` that carry a project alarm code (9001–9299) to the platform,
    or None (its group's carrier is off, or it is no project code)."""
    carried = project_alarm_object(record, body, ctx, cst_datetime(record.ts))
    if carried is None:
        return None
    kind, obj = carried
    return (
        (EVENT_INFO, {"EventInfos": [obj]})
        if kind == "event"
        else (ALARM_INFO, {"AlarmInfos": [obj]})
    )


def charge_details(details: Iterable[ChargeDetailBody]) -> list[dict[str, Any]]:
    """``ChargeDetails`` of an order or of a session so far."""
    return [
        {
            "DetailStartTime": cst_datetime(d.start_ts),
            "DetailEndTime": cst_datetime(d.end_ts),
            "ElecPrice": dec(d.elec_price_yuan_per_kwh, 4),
            "SevicePrice": dec(d.service_price_yuan_per_kwh, 4),
            "DetailPower": dec(d.energy_kwh, 2),
            "DetailElecMoney": dec(d.elec_money_yuan, 2),
            "DetailSeviceMoney": dec(d.service_money_yuan, 2),
        }
        for d in details
    ]


def charge_order_info(
    record: StoredRecord, body: ChargeOrderBody, ctx: MappingContext
) -> dict[str, Any]:
    details = charge_details(body.charge_details)
    return {
        "StartChargeSeq": start_charge_seq(ctx.operator_id, body.session_id),
        "ConnectorID": record.connector_id or "",
        "StartTime": cst_datetime(body.start_ts),
        "EndTime": cst_datetime(body.end_ts),
        # with details, the total is their sum exactly (docs/BILLING.md, rounding rule)
        "TotalPower": sum((d["DetailPower"] for d in details), Decimal("0.00"))
        if details
        else dec(body.energy_kwh, 2),
        "TotalElecMoney": dec(body.elec_money_yuan, 2),
        "TotalSeviceMoney": dec(body.service_money_yuan, 2),
        "TotalMoney": dec(body.total_money_yuan, 2),
        "StopReason": body.stop_reason,
        "SumPeriod": len(details),
        "ChargeDetails": details,
    }


def _optional(info: dict[str, Any], **members: Any) -> None:
    for name, value in members.items():
        if value not in (None, ""):
            info[name] = value


def station_info(record: StoredRecord, body: IdentityBody) -> dict[str, Any]:
    st = body.station
    info: dict[str, Any] = {
        "StationID": record.station_id,
        "OperatorID": st.operator_id,
        "EquipmentOwnerID": st.equipment_owner_id,
        "StationName": st.name,
        "CountryCode": st.country_code,
        "AreaCode": st.area_code,
        "Address": st.address,
        "ServiceTel": st.service_tel,
        "StationType": st.station_type,
        "StationStatus": st.station_status,
        "ParkNums": st.park_nums,
        "StationLng": dec(st.lng, 6),
        "StationLat": dec(st.lat, 6),
        "Construction": st.construction,
        "Pictures": list(st.pictures),
        "SupportOrder": st.support_order,
        "OpenAllDay": st.open_all_day,
        "ParkFree": st.park_free,
        "OpratorType": st.operator_type,
    }
    _optional(
        info,
        StationTel=st.station_tel,
        SiteGuide=st.site_guide,
        BusineHours=st.busine_hours,
        ElectricityFee=st.electricity_fee,
        ServiceFee=st.service_fee,
        ParkFee=st.park_fee,
        Payment=st.payment,
        ParkOwner=st.park_owner,
        ParkManager=st.park_manager,
    )
    equipments = []
    for eq in body.equipments:
        item: dict[str, Any] = {
            "EquipmentID": eq.equipment_id,
            "ManufacturerID": eq.manufacturer_id,
            "EquipmentType": eq.equipment_type,
            "Power": dec(eq.power_kw, 1),
            "EquipmentPower": dec(eq.power_kw, 1),
            "EquipmentName": eq.name,
            "EquipmentStatus": eq.equipment_status,
            "NewNationalStandard": eq.new_national_standard,
        }
        _optional(
            item,
            ManufacturerName=eq.manufacturer_name,
            EquipmentModel=eq.model,
            ProductionDate=eq.production_date,
            EquipmentLng=None if eq.lng is None else dec(eq.lng, 6),
            EquipmentLat=None if eq.lat is None else dec(eq.lat, 6),
        )
        connectors = []
        for c in eq.connectors:
            conn: dict[str, Any] = {
                "ConnectorID": c.connector_id,
                "ConnectorName": c.name,
                "ConnectorType": c.connector_type,
                "VoltageUpperLimits": c.voltage_upper_v,
                "VoltageLowerLimits": c.voltage_lower_v,
                "Voltage": c.rated_voltage_v,
                "Current": c.current_a,
                "Power": dec(c.power_kw, 1),
                "NationalStandard": c.national_standard,
                "BMSPowerType": c.bms_power_type,
            }
            _optional(conn, ParkNo=c.park_no)
            connectors.append(conn)
        item["ConnectorInfos"] = connectors
        equipments.append(item)
    info["EquipmentInfos"] = equipments
    return info


def event_info(record: StoredRecord, body: EventBody, ctx: MappingContext) -> dict[str, Any] | None:
    if body.tcec_event_code is None:
        return None
    info: dict[str, Any] = {
        "StationID": record.station_id,
        "OperatorID": ctx.operator_id,
        "EquipmentOwnerID": ctx.equipment_owner_id,
        "StationName": ctx.station_name,
        "EventType": body.tcec_event_type if body.tcec_event_type is not None else 6,
        "EventCode": body.tcec_event_code,
        "EventTime": cst_datetime(record.ts),
    }
    if body.message:
        info["NoteString"] = body.message[:255]
    return info


def notification_for(record: StoredRecord, ctx: MappingContext) -> Notification | None:
    """The push for one record, or None when the record does not go to the city platform.

    Raises :class:`agent.records.bodies.BodyError` for a body that breaks its schema.
    """
    interface = INTERFACE_BY_KIND.get(record.kind)
    if interface is None:
        return None
    body = decode_body(record.kind, record.body)
    connector = record.connector_id or ""
    data: dict[str, Any]
    if isinstance(body, ConnectorStatusBody):
        data = {"ConnectorStatusInfo": connector_status_info(connector, body, ctx)}
    elif isinstance(body, BmsProcessBody):
        data = {
            "ConnectorID": connector,
            "Status": body.connector_status,
            "BmsInfo": bms_info(body, connector, ctx.unknown_fields_member),
        }
    elif isinstance(body, AlarmBody):
        if not body.for_platform:
            carried = project_alarm(record, body, ctx)
            if carried is None:
                return None
            return Notification(carried[0], carried[1], _lane(record), record.id)
        data = {"AlarmInfos": [alarm_info(record, body, ctx)]}
    elif isinstance(body, ChargeOrderBody):
        data = charge_order_info(record, body, ctx)
    elif isinstance(body, IdentityBody):
        data = {"StationInfo": station_info(record, body)}
    else:
        assert isinstance(body, EventBody)
        event = event_info(record, body, ctx)
        if event is None:
            return None
        data = {"EventInfos": [event]}
    return Notification(interface, data, _lane(record), record.id)


def equip_charge_status(
    connector_id: str, body: ConnectorStatusBody, sample_epoch_s: float, ctx: MappingContext
) -> dict[str, Any] | None:
    """The §13.10 session object for a connector that is charging, else None."""
    if body.status != 3 or body.session_id is None:
        return None
    start = (
        cst_datetime(body.session_start_ts)
        if body.session_start_ts
        else cst_from_epoch(sample_epoch_s)
    )
    details = charge_details(body.charge_details)
    elec, service = dec(body.elec_money_yuan, 2), dec(body.service_money_yuan, 2)
    return {
        "StartChargeSeq": start_charge_seq(ctx.operator_id, body.session_id),
        "StartChargeSeqStat": 2,
        "ConnectorID": connector_id,
        "ConnectorStatus": 3,
        "CurrentA": dec(abs(body.current_a), 1),
        "CurrentB": dec(abs(body.current_b_a), 1),
        "CurrentC": dec(abs(body.current_c_a), 1),
        "VoltageA": dec(body.voltage_v, 1),
        "VoltageB": dec(body.voltage_b_v, 1),
        "VoltageC": dec(body.voltage_c_v, 1),
        "Soc": body.soc_pct or 0,
        "StartTime": start,
        "EndTime": cst_from_epoch(sample_epoch_s),
        # money so far, by the order's rounding rule: totals are the sums of the details
        "TotalPower": sum((d["DetailPower"] for d in details), Decimal("0.00"))
        if details
        else dec(body.charge_energy_kwh, 2),
        "ElecMoney": elec,
        "SeviceMoney": service,
        "TotalMoney": elec + service,
        "SumPeriod": len(details),
        "ChargeDetails": details,
    }


def check_charge_orders(
    orders: Iterable[StoredRecord], day_start_s: float, day_end_s: float, ctx: MappingContext
) -> dict[str, Any]:
    """The daily reconciliation of orders that ended within ``[day_start_s, day_end_s)``."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    total_energy = Decimal(0)
    total_money = Decimal(0)
    for rec in orders:
        body = decode_body("charge_order", rec.body)
        if not day_start_s <= parse_iso_ts(body.end_ts) < day_end_s:
            continue
        seq = start_charge_seq(ctx.operator_id, body.session_id)
        if seq in seen:
            continue
        seen.add(seq)
        energy, money = dec(body.energy_kwh, 2), dec(body.total_money_yuan, 2)
        total_energy += energy
        total_money += money
        items.append({"StartChargeSeq": seq, "TotalPower": energy, "TotalMoney": money})
    day = _dt.datetime.fromtimestamp(day_start_s, tz=CHINA_TZ).strftime("%Y%m%d")
    unique = (day + hashlib.sha256(f"{ctx.operator_id}{day}".encode()).hexdigest()).upper()[:18]
    return {
        "CheckOrderSeq": ctx.operator_id + unique,
        "StartTime": cst_from_epoch(day_start_s),
        "EndTime": cst_from_epoch(day_end_s - 1),
        "OrderCount": len(items),
        "TotalOrderPower": total_energy,
        "TotalOrderMoney": total_money,
        "ChargeOrders": items,
    }
