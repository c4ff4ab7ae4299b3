"""The T/CEC test receiver's business schemas (spec §13–§15) and how it checks them.

A schema maps member → (type, required, constraint); :func:`validate` returns the first
violation with its path (``Data.StationInfo.Address: empty``), which the receiver answers as
``Ret 4004``. :func:`business_key` names a push when the gateway sends no record id.
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from typing import Any, Final

# A schema maps member → (type, required, constraint). Types: "str" (constraint: max length,
# or ("exact", n)), "int"/"num" (constraint: allowed codes or (min, max)), "datetime", "date",
# "obj" (constraint: nested schema), "list" (constraint: element schema), "strlist".

Schema = dict[str, tuple[str, bool, Any]]

BMS_INFO: Final[Schema] = {
    "BMSCode": ("str", True, 50),
    "BMSVer": ("str", True, 50),
    "MaxChargeCurrent": ("num", True, None),
    "MaxChargeCellVoltage": ("num", True, None),
    "MaxTemp": ("int", True, None),
    "RatedCapacity": ("int", True, None),
    "TatalVoltage": ("num", True, None),
    "TotalCurrent": ("num", True, None),
    "Soc": ("int", True, (0, 100)),
    "VoltageH": ("num", True, None),
    "VoltageL": ("num", True, None),
    "TemptureH": ("int", True, None),
    "TemptureL": ("int", True, None),
}
CONNECTOR_STATUS: Final[Schema] = {
    "ConnectorID": ("str", True, 26),
    "Status": ("int", True, {0, 1, 2, 3, 4, 255}),
    "ParkStatus": ("int", False, {0, 10, 50}),
    "LockStatus": ("int", False, {0, 10, 50}),
    **{f"Current{p}": ("num", True, None) for p in "ABC"},
    **{f"Voltage{p}": ("num", True, None) for p in "ABC"},
    "SOC": ("int", False, (0, 100)),
    "ConnectorTemp": ("int", False, None),
    "EquipmentTemp": ("int", False, None),
    "ConnectorLock": ("int", False, {0, 1, 2, 255}),
    "ChargeElectricity": ("num", True, None),
    "DischargeElectricity": ("num", True, None),
}
_ALARM_OR_EVENT_HEAD: Final[Schema] = {
    "StationID": ("str", True, 20),
    "OperatorID": ("str", True, ("exact", 9)),
    "EquipmentOwnerID": ("str", True, ("exact", 9)),
    "StationName": ("str", True, 50),
}
ALARM_INFO: Final[Schema] = {
    **_ALARM_OR_EVENT_HEAD,
    "EquipmentID": ("str", True, 23),
    "ConnectorID": ("str", True, 26),
    "AlarmStatus": ("int", True, {0, 1}),
    "AlarmCode": ("int", True, set(range(1, 32)) | set(range(101, 123)) | set(range(201, 207))),
    "AlarmType": ("int", True, {1, 2, 3}),
    "AlarmLevel": ("int", True, {1, 2, 3}),
    "AlarmTime": ("datetime", True, None),
    "NoteString": ("str", False, 255),
    "BmsInfo": ("obj", False, BMS_INFO),
}
EVENT_INFO: Final[Schema] = {
    **_ALARM_OR_EVENT_HEAD,
    "EventType": ("int", True, {1, 2, 3, 4, 5, 6}),
    "EventCode": ("int", True, (1001, 7999)),
    "EventTime": ("datetime", True, None),
    "NoteString": ("str", False, 255),
}
CHARGE_DETAIL: Final[Schema] = {
    "DetailStartTime": ("datetime", True, None),
    "DetailEndTime": ("datetime", True, None),
    "ElecPrice": ("num", True, None),
    "SevicePrice": ("num", True, None),
    "DetailPower": ("num", True, None),
    "DetailElecMoney": ("num", True, None),
    "DetailSeviceMoney": ("num", True, None),
}
ORDER: Final[Schema] = {
    "StartChargeSeq": ("str", True, ("exact", 27)),
    "ConnectorID": ("str", True, 26),
    "StartTime": ("datetime", True, None),
    "EndTime": ("datetime", True, None),
    "TotalPower": ("num", True, None),
    "TotalElecMoney": ("num", True, None),
    "TotalSeviceMoney": ("num", True, None),
    "TotalMoney": ("num", True, None),
    "StopReason": ("int", True, (0, 99)),
    "SumPeriod": ("int", True, (0, 32)),
    "ChargeDetails": ("list", True, CHARGE_DETAIL),
}
CHARGE_STATUS: Final[Schema] = {
    "StartChargeSeq": ("str", True, ("exact", 27)),
    "StartChargeSeqStat": ("int", True, {1, 2, 3, 4, 5}),
    "ConnectorID": ("str", True, 26),
    "ConnectorStatus": ("int", True, {1, 2, 3, 4, 255}),
    **{f"Current{p}": ("num", True, None) for p in "ABC"},
    **{f"Voltage{p}": ("num", True, None) for p in "ABC"},
    "Soc": ("int", True, (0, 100)),
    "StartTime": ("datetime", True, None),
    "EndTime": ("datetime", True, None),
    "TotalPower": ("num", True, None),
    "ElecMoney": ("num", True, None),
    "SeviceMoney": ("num", True, None),
    "TotalMoney": ("num", True, None),
    "SumPeriod": ("int", True, (0, 32)),
    "ChargeDetails": ("list", True, CHARGE_DETAIL),
}
CONNECTOR_INFO: Final[Schema] = {
    "ConnectorID": ("str", True, 26),
    "ConnectorName": ("str", True, 30),
    "ConnectorType": ("int", True, {1, 2, 3, 4, 5, 6, 255}),
    "VoltageUpperLimits": ("int", True, None),
    "VoltageLowerLimits": ("int", True, None),
    "Voltage": ("int", True, None),
    "Current": ("int", True, None),
    "Power": ("num", True, None),
    "NationalStandard": ("int", False, {1, 2}),
    "BMSPowerType": ("int", True, {1, 2, 3, 255}),
    "ParkNo": ("str", False, 10),
}
EQUIPMENT_INFO: Final[Schema] = {
    "EquipmentID": ("str", True, 23),
    "ManufacturerID": ("str", True, ("exact", 9)),
    "ManufacturerName": ("str", False, 30),
    "EquipmentModel": ("str", False, 20),
    "ProductionDate": ("date", False, None),
    "EquipmentType": ("int", True, {0, 1, 2, 3, 4, 5, 255}),
    "Power": ("num", True, None),
    "EquipmentPower": ("num", True, None),
    "EquipmentName": ("str", True, 30),
    "EquipmentLng": ("num", False, None),
    "EquipmentLat": ("num", False, None),
    "EquipmentStatus": ("int", True, {1, 5, 6, 50}),
    "NewNationalStandard": ("int", True, {1, 2, 3, 255}),
    "ConnectorInfos": ("list", True, CONNECTOR_INFO),
}
STATION_INFO: Final[Schema] = {
    "StationID": ("str", True, 20),
    "OperatorID": ("str", True, ("exact", 9)),
    "EquipmentOwnerID": ("str", True, ("exact", 9)),
    "StationName": ("str", True, 50),
    "CountryCode": ("str", True, ("exact", 2)),
    "AreaCode": ("str", True, 20),
    "Address": ("str", True, 200),
    "StationTel": ("str", False, 32),
    "ServiceTel": ("str", True, 30),
    "StationType": ("int", True, {1, 50, 100, 101, 102, 103, 255}),
    "StationStatus": ("int", True, {0, 1, 5, 6, 50}),
    "ParkNums": ("int", True, None),
    "StationLng": ("num", True, None),
    "StationLat": ("num", True, None),
    "SiteGuide": ("str", False, 100),
    "Construction": ("int", True, set(range(1, 12)) | {255}),
    "Pictures": ("strlist", False, None),
    "BusineHours": ("str", False, 100),
    "ElectricityFee": ("str", False, 256),
    "ServiceFee": ("str", False, 256),
    "ParkFee": ("str", False, 100),
    "Payment": ("str", False, 20),
    "SupportOrder": ("int", False, {0, 1}),
    "ParkOwner": ("str", False, 100),
    "ParkManager": ("str", False, 100),
    "OpenAllDay": ("int", False, {0, 1}),
    "ParkFree": ("int", False, {0, 1}),
    "OpratorType": ("int", True, {1, 2}),
    "EquipmentInfos": ("list", True, EQUIPMENT_INFO),
}
CHECK_ORDERS: Final[Schema] = {
    "CheckOrderSeq": ("str", True, ("exact", 27)),
    "StartTime": ("datetime", True, None),
    "EndTime": ("datetime", True, None),
    "OrderCount": ("int", True, None),
    "TotalOrderPower": ("num", True, None),
    "TotalOrderMoney": ("num", True, None),
    "ChargeOrders": (
        "list",
        True,
        {
            "StartChargeSeq": ("str", True, ("exact", 27)),
            "TotalPower": ("num", True, None),
            "TotalMoney": ("num", True, None),
        },
    ),
}
TOKEN_REQUEST: Final[Schema] = {
    "OperatorID": ("str", True, ("exact", 9)),
    "OperatorSecret": ("str", True, 64),
}

SCHEMAS: Final[dict[str, Schema]] = {
    "query_token": TOKEN_REQUEST,
    "notification_stationStatus": {"ConnectorStatusInfo": ("obj", True, CONNECTOR_STATUS)},
    "notification_bmsInfo": {
        "ConnectorID": ("str", True, 26),
        "Status": ("int", True, {0, 1, 2, 3, 4, 255}),
        "BmsInfo": ("obj", False, BMS_INFO),
    },
    "notification_alarmInfo": {"AlarmInfos": ("list", True, ALARM_INFO)},
    "notification_eventInfo": {"EventInfos": ("list", True, EVENT_INFO)},
    "notification_stationInfo": {"StationInfo": ("obj", True, STATION_INFO)},
    "notification_charge_order_info": ORDER,
    "notification_equip_charge_status": CHARGE_STATUS,
    "check_charge_orders": CHECK_ORDERS,
}


def _is_datetime(value: str) -> bool:
    try:
        time.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return len(value) == 19


def _is_date(value: str) -> bool:
    try:
        time.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return len(value) == 10


def validate(obj: Any, schema: Schema, path: str = "Data") -> str | None:
    """The first schema violation as ``"<path>: <problem>"``, or None when ``obj`` is valid."""
    if not isinstance(obj, dict):
        return f"{path}: expected an object"
    for name, (kind, required, arg) in schema.items():
        where = f"{path}.{name}"
        if name not in obj or obj[name] is None:
            if required:
                return f"{where}: missing"
            continue
        value = obj[name]
        if kind == "str":
            if not isinstance(value, str):
                return f"{where}: expected a string"
            if isinstance(arg, tuple) and len(value) != arg[1]:
                return f"{where}: must be exactly {arg[1]} characters"
            if isinstance(arg, int) and len(value) > arg:
                return f"{where}: longer than {arg} characters"
            if required and not value:
                return f"{where}: empty"
        elif kind in ("int", "num"):
            integral = isinstance(value, int) or (
                isinstance(value, Decimal) and value == value.to_integral_value()
            )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | Decimal)
                or (kind == "int" and not integral)
            ):
                return f"{where}: expected {'an integer' if kind == 'int' else 'a number'}"
            if isinstance(arg, set) and value not in arg:
                return f"{where}: code {value} not allowed"
            if isinstance(arg, tuple) and not arg[0] <= value <= arg[1]:
                return f"{where}: {value} outside {arg[0]}..{arg[1]}"
        elif kind == "datetime":
            if not isinstance(value, str) or not _is_datetime(value):
                return f"{where}: expected yyyy-MM-dd HH:mm:ss"
        elif kind == "date":
            if not isinstance(value, str) or not _is_date(value):
                return f"{where}: expected yyyy-MM-dd"
        elif kind == "obj":
            problem = validate(value, arg, where)
            if problem:
                return problem
        elif kind == "strlist":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"{where}: expected a list of strings"
        elif kind == "list":
            if not isinstance(value, list):
                return f"{where}: expected a list"
            for i, item in enumerate(value):
                problem = validate(item, arg, f"{where}[{i}]")
                if problem:
                    return problem
    return None


def business_key(interface: str, data: dict[str, Any], plaintext: bytes) -> str:
    """Identity of a push when the gateway sends no record id (spec §9 business keys)."""
    digest = hashlib.sha256(plaintext).hexdigest()[:16]
    if interface in ("notification_charge_order_info", "notification_equip_charge_status"):
        return f"{data['StartChargeSeq']}|{data.get('EndTime', '')}"
    if interface == "check_charge_orders":
        return str(data["CheckOrderSeq"])
    if interface == "notification_alarmInfo":
        a = data["AlarmInfos"][0] if data["AlarmInfos"] else {}
        return "|".join(
            str(a.get(k))
            for k in ("EquipmentID", "ConnectorID", "AlarmCode", "AlarmTime", "AlarmStatus")
        )
    return f"{digest}"
