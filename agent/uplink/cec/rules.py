"""The rules a strict city platform applies to business objects — one validator, two users.

The embedded test receiver (``sim/platform.py``) checks every ``Data`` it receives with
:func:`validate` and answers the first problem as ``Ret 4004``; ``evgw config check`` checks
the station, equipment and connector sections with :func:`config_problems` against the very
same identity rules (:data:`STATION_INFO`, :data:`EQUIPMENT_INFO`, :data:`CONNECTOR_INFO`),
so a config whose registration the platform would refuse fails there, with the key path.

A schema maps a wire member to ``(kind, required, constraint[, config key])``:

- ``str``: constraint a maximum length, or ``("exact", n)``; a required string is not empty;
- ``digits``: exactly ``n`` decimal digits; ``phone``: at most ``n`` of ``0-9 +-()`` and space;
- ``int`` / ``num``: constraint a set of allowed codes or a ``(min, max)`` range;
- ``datetime`` (``yyyy-MM-dd HH:mm:ss``), ``date`` (``yyyy-MM-dd``), ``strlist``;
- ``obj`` / ``list``: constraint the nested schema;
- ``ordered``: constraint two members whose values must not decrease (low, high); wire
  objects only (the config loader checks the ranges of a connector itself).

The config key, where there is one, is the field of the config section the member comes
from (``Address`` ← ``station.address``); members the gateway derives (``OperatorID``,
``Voltage``) have none, and the config check skips them.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from agent.config.schema import Config

Schema = dict[str, tuple[Any, ...]]

_PHONE: Final = re.compile(r"^[0-9+\-() ]+$")

CONNECTOR_INFO: Final[Schema] = {
    "ConnectorID": ("str", True, 26, "connector_id"),
    "ConnectorName": ("str", True, 30),
    "ConnectorType": ("int", True, {1, 2, 3, 4, 5, 6, 255}, "connector_type"),
    "VoltageUpperLimits": ("int", True, (1, 1500), "voltage_upper_v"),
    "VoltageLowerLimits": ("int", True, (0, 1500), "voltage_lower_v"),
    "Voltage": ("int", True, (1, 1500)),
    "Current": ("int", True, (1, 1000), "current_a"),
    "Power": ("num", True, (0.1, 2000), "power_kw"),
    "NationalStandard": ("int", False, {1, 2}, "national_standard"),
    "BMSPowerType": ("int", True, {1, 2, 3, 255}),
    "ParkNo": ("str", False, 10, "park_no"),
    "LowerNotAboveUpper": ("ordered", False, ("VoltageLowerLimits", "VoltageUpperLimits")),
}
EQUIPMENT_INFO: Final[Schema] = {
    "EquipmentID": ("str", True, 23, "equipment_id"),
    "ManufacturerID": ("str", True, ("exact", 9)),
    "ManufacturerName": ("str", False, 30),
    "EquipmentModel": ("str", False, 20, "model"),
    "ProductionDate": ("date", False, None, "production_date"),
    "EquipmentType": ("int", True, {0, 1, 2, 3, 4, 5, 255}, "equipment_type"),
    "Power": ("num", True, (0.1, 10000), "power_kw"),
    "EquipmentPower": ("num", True, (0.1, 10000)),
    "EquipmentName": ("str", True, 30),
    "EquipmentLng": ("num", False, (-180, 180)),
    "EquipmentLat": ("num", False, (-90, 90)),
    "EquipmentStatus": ("int", True, {1, 5, 6, 50}),
    "NewNationalStandard": ("int", True, {1, 2, 3, 255}),
    "ConnectorInfos": ("list", True, CONNECTOR_INFO, "connectors"),
}
STATION_INFO: Final[Schema] = {
    "StationID": ("str", True, 20, "station_id"),
    "OperatorID": ("str", True, ("exact", 9)),
    "EquipmentOwnerID": ("str", True, ("exact", 9)),
    "StationName": ("str", True, 50, "name"),
    "CountryCode": ("str", True, ("exact", 2), "country_code"),
    "AreaCode": ("digits", True, 6, "area_code"),
    "Address": ("str", True, 200, "address"),
    "StationTel": ("phone", False, 32, "station_tel"),
    "ServiceTel": ("phone", True, 30, "service_tel"),
    "StationType": ("int", True, {1, 50, 100, 101, 102, 103, 255}, "station_type"),
    "StationStatus": ("int", True, {0, 1, 5, 6, 50}, "station_status"),
    "ParkNums": ("int", True, (0, 100_000), "park_nums"),
    "StationLng": ("num", True, (-180, 180), "lng"),
    "StationLat": ("num", True, (-90, 90), "lat"),
    "SiteGuide": ("str", False, 100),
    "Construction": ("int", True, set(range(1, 12)) | {255}, "construction"),
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


def _is_time(value: Any, fmt: str, length: int) -> bool:
    if not isinstance(value, str) or len(value) != length:
        return False
    try:
        time.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _number_problem(kind: str, arg: Any, value: Any) -> str | None:
    integral = isinstance(value, int) or (
        isinstance(value, Decimal) and value == value.to_integral_value()
    )
    number = int | Decimal | float if kind == "num" else int | Decimal
    if isinstance(value, bool) or not isinstance(value, number) or (kind == "int" and not integral):
        return f"expected {'an integer' if kind == 'int' else 'a number'}"
    if isinstance(arg, set) and value not in arg:
        allowed = f" (allowed: {', '.join(map(str, sorted(arg)))})" if len(arg) <= 12 else ""
        return f"code {value} not allowed{allowed}"
    if isinstance(arg, tuple) and not arg[0] <= value <= arg[1]:
        return f"{value} outside {arg[0]}..{arg[1]}"
    return None


def _value_problem(kind: str, required: bool, arg: Any, value: Any) -> str | None:
    """What is wrong with one scalar value, or None."""
    if kind in ("str", "digits", "phone"):
        if not isinstance(value, str):
            return "expected a string"
        if required and not value:
            return "empty"
        if kind == "digits" and not (len(value) == arg and value.isascii() and value.isdigit()):
            return f"must be {arg} digits"
        if kind == "phone" and value and not _PHONE.match(value):
            return "a phone number has digits, spaces and + - ( ) only"
        if isinstance(arg, tuple) and len(value) != arg[1]:
            return f"must be exactly {arg[1]} characters"
        if isinstance(arg, int) and kind != "digits" and len(value) > arg:
            return f"longer than {arg} characters"
        return None
    if kind in ("int", "num"):
        return _number_problem(kind, arg, value)
    if kind == "datetime" and not _is_time(value, "%Y-%m-%d %H:%M:%S", 19):
        return "expected yyyy-MM-dd HH:mm:ss"
    if kind == "date" and not _is_time(value, "%Y-%m-%d", 10):
        return "expected yyyy-MM-dd"
    if kind == "strlist" and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return "expected a list of strings"
    return None


def problems(obj: Any, schema: Schema, path: str, *, config: bool = False) -> list[str]:
    """Every violation as ``"<path>: <problem>"``: of a wire object (a dict, members by wire
    name) or, with ``config``, of a config section (fields by config key; members without a
    config key are skipped)."""
    if not config and not isinstance(obj, dict):
        return [f"{path}: expected an object"]
    found: list[str] = []
    for name, (kind, required, arg, *key) in schema.items():
        if kind == "ordered":  # the config loader checks its own ranges in order
            low, high = (None, None) if config else (obj.get(arg[0]), obj.get(arg[1]))
            if isinstance(low, int | Decimal) and isinstance(high, int | Decimal) and low > high:
                found.append(f"{path}.{arg[0]}: {low} is above {arg[1]} {high}")
            continue
        if config and not key:
            continue
        where = f"{path}.{key[0] if config else name}"
        value = getattr(obj, key[0]) if config else obj.get(name)
        if value is None:
            if required:
                found.append(f"{where}: missing")
            continue
        if kind == "obj":
            found += problems(value, arg, where, config=config)
        elif kind == "list":
            if not isinstance(value, list):
                found.append(f"{where}: expected a list")
                continue
            for i, item in enumerate(value):
                found += problems(item, arg, f"{where}[{i}]", config=config)
        elif (problem := _value_problem(kind, required, arg, value)) is not None:
            found.append(f"{where}: {problem}")
    return found


def validate(obj: Any, schema: Schema, path: str = "Data") -> str | None:
    """The first violation of a wire object, or None when it is valid (the receiver's 4004)."""
    found = problems(obj, schema, path)
    return found[0] if found else None


def config_problems(config: Config) -> list[str]:
    """The station registration a strict platform would refuse, by config key path."""
    found = problems(config.station, STATION_INFO, "station", config=True)
    for i, equipment in enumerate(config.equipment):
        found += problems(equipment, EQUIPMENT_INFO, f"equipment[{i}]", config=True)
    return [f"{p} (the city platform refuses the station's registration)" for p in found]
