"""The T/CEC test receiver's business schemas (spec §13–§15) and how it checks them.

A schema maps member → (type, required, constraint) as in :mod:`agent.uplink.cec.rules`,
whose :func:`~agent.uplink.cec.rules.validate` returns the first violation with its path
(``Data.StationInfo.Address: empty``), which the receiver answers as ``Ret 4004``.
:func:`business_key` names a push when the gateway sends no record id.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any, Final

from agent.uplink.cec.rules import STATION_INFO, Schema

# The schema language and the station/equipment/connector rules are the gateway's own
# (agent/uplink/cec/rules.py), so `evgw config check` refuses what this receiver refuses.

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


def money_problem(interface: str, data: dict[str, Any]) -> str | None:
    """An order whose money does not add up exactly on the wire (T/CEC §13.10-13.11): the
    details' sums against the totals, ``SumPeriod`` against the details, and
    ``TotalMoney = TotalElecMoney + TotalSeviceMoney``."""
    if interface != "notification_charge_order_info":
        return None
    details = data["ChargeDetails"]
    if data["SumPeriod"] != len(details):
        return f"SumPeriod {data['SumPeriod']} but {len(details)} ChargeDetails"
    total = Decimal(str(data["TotalElecMoney"])) + Decimal(str(data["TotalSeviceMoney"]))
    if Decimal(str(data["TotalMoney"])) != total:
        return f"TotalMoney {data['TotalMoney']} is not TotalElecMoney + TotalSeviceMoney ({total})"
    if not details:
        return None
    for detail_key, total_key in (
        ("DetailPower", "TotalPower"),
        ("DetailElecMoney", "TotalElecMoney"),
        ("DetailSeviceMoney", "TotalSeviceMoney"),
    ):
        summed = sum((Decimal(str(d[detail_key])) for d in details), Decimal(0))
        if summed != Decimal(str(data[total_key])):
            return (
                f"the ChargeDetails' {detail_key} add up to {summed}, "
                f"not {total_key} {data[total_key]}"
            )
    return None
