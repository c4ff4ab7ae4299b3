"""A T/CEC 102 (Shenzhen flavour) test receiver: plays the city platform on loopback.

Serves ``query_token`` and every notification the gateway pushes, with the checks of spec
§19 in this order: unknown interface → HTTP 404; body not JSON or a member missing → 4003;
unknown OperatorID → 4003; bad or expired token → 4002; Sig mismatch → 4001; Data that does
not decrypt or parse → 4003; business object breaking the interface schema → 4004 naming the
member. Accepted objects go to SQLite, deduplicated by record identity (the gateway's record
id from the ``X-Evgw-Record-Id`` header, else the business key of spec §9). Every decoded
request is logged for tests. Faults can be injected: a forced ``Ret``, HTTP errors, dropped
connections, slow answers, lowercase or wrong Sig.

It binds 127.0.0.1 only: it is a test tool, not a platform.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets as _secrets
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from agent.uplink.cec.codec import (
    RECORD_ID_HEADER,
    CecCodecError,
    CecSecrets,
    decode_business,
    encode_business,
    envelope_bytes,
    open_request,
    parse_envelope,
    seal_response,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 4 * 1024 * 1024

# --- business schemas (spec §13–§15) ------------------------------------------------------
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


# --- configuration and faults -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """Who may call the receiver and how it answers."""

    operators: dict[str, str]
    """OperatorID → OperatorSecret of every gateway allowed to call."""
    secrets: CecSecrets
    """The secret set the platform issued to the gateways (used both ways)."""
    db_path: Path
    base_path: str = "/evcs/v1/"
    token_lifetime_s: float = 7200.0
    accept_lowercase_sig: bool = True
    unknown_operator_ret: int = 4003
    host: str = "127.0.0.1"
    port: int = 0
    tls_cert: Path | None = None
    """Serve HTTPS with this certificate chain (PEM) and ``tls_key``."""
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """Require client certificates signed by this CA (mutual TLS, as Shenzhen does)."""
    echo_seq: bool = False
    """Echo the request's ``TimeStamp`` and ``Seq`` inside every reply ``Data`` (signed and
    encrypted with it), so a gateway with ``reply_echoes_seq`` can refuse replayed answers."""


@dataclass(slots=True)
class Fault:
    """One injected fault, applied to the next ``count`` matching requests.

    ``action``: ``ret`` (answer a signed envelope with ``Ret value``), ``http`` (HTTP status
    ``value``), ``drop`` (close the connection without an answer), ``delay`` (sleep ``value``
    seconds, then answer normally), ``lowercase_sig``, ``wrong_sig``.
    """

    action: str
    value: float = 0
    count: int = 1
    interface: str | None = None


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rets: dict[int, int] = field(default_factory=dict)


class PlatformReceiver:
    """The receiver's logic and storage, independent of the HTTP server around it."""

    def __init__(self, settings: PlatformSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._tokens: dict[str, tuple[str, float]] = {}
        self._db = sqlite3.connect(settings.db_path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS accepted (
                identity TEXT PRIMARY KEY, interface TEXT NOT NULL, operator_id TEXT NOT NULL,
                record_id TEXT, data TEXT NOT NULL, received_at REAL NOT NULL,
                copies INTEGER NOT NULL DEFAULT 1, n INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS requests (
                n INTEGER PRIMARY KEY, interface TEXT NOT NULL, operator_id TEXT, time_stamp TEXT,
                seq TEXT, data TEXT, ret INTEGER NOT NULL, msg TEXT, received_at REAL NOT NULL);
            """
        )

    # -- knobs used by tests and technicians --

    def inject(
        self, action: str, value: float = 0, count: int = 1, interface: str | None = None
    ) -> None:
        with self._lock:
            self._faults.append(Fault(action, value, count, interface))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- queries for assertions --

    def accepted(self, interface: str | None = None) -> list[dict[str, Any]]:
        """Accepted business objects in arrival order (one per identity)."""
        sql = "SELECT interface, record_id, data, copies FROM accepted"
        args: tuple[Any, ...] = ()
        if interface is not None:
            sql, args = sql + " WHERE interface = ?", (interface,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY n", args).fetchall()
        return [
            {"interface": i, "record_id": r, "data": decode_business(d.encode()), "copies": c}
            for i, r, d, c in rows
        ]

    def requests(self, interface: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT interface, ret, msg, data FROM requests"
        args: tuple[Any, ...] = ()
        if interface is not None:
            sql, args = sql + " WHERE interface = ?", (interface,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY n", args).fetchall()
        return [{"interface": i, "ret": r, "msg": m, "data": d} for i, r, m, d in rows]

    # -- request handling --

    def take_fault(self, interface: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.interface in (None, interface) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _reply(
        self,
        ret: int,
        msg: str,
        reply: Any,
        fault: Fault | None,
        request: tuple[str, str, str, str, str],
    ) -> dict[str, Any]:
        interface, operator_id, stamp, seq, data = request
        if reply is not None and self.settings.echo_seq:
            reply = {**reply, "TimeStamp": stamp, "Seq": seq}
        plaintext = None if reply is None else encode_business(reply)
        envelope = seal_response(ret, msg, plaintext, self.settings.secrets)
        if fault is not None and fault.action == "lowercase_sig":
            envelope["Sig"] = envelope["Sig"].lower()
        elif fault is not None and fault.action == "wrong_sig":
            envelope["Sig"] = "0" * 32
        with self._lock:
            self.stats.requests += 1
            self.stats.rets[ret] = self.stats.rets.get(ret, 0) + 1
            self._db.execute(
                "INSERT INTO requests"
                " (interface, operator_id, time_stamp, seq, data, ret, msg, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (interface, operator_id, stamp, seq, data, ret, msg, self.clock()),
            )
        return envelope

    def handle(
        self,
        interface: str,
        body: bytes,
        authorization: str | None,
        record_id: str | None,
        fault: Fault | None,
    ) -> dict[str, Any]:
        """Answer one request (the HTTP layer already routed it and applied transport faults)."""
        meta = (interface, "", "", "", "")
        try:
            envelope = parse_envelope(body)
        except CecCodecError as exc:
            return self._reply(4003, f"POST参数不合法: {exc}", None, fault, meta)
        missing = [
            m
            for m in ("OperatorID", "Data", "TimeStamp", "Seq", "Sig")
            if not isinstance(envelope.get(m), str) or not envelope.get(m)
        ]
        if missing:
            return self._reply(
                4003, f"POST参数不合法: missing {', '.join(missing)}", None, fault, meta
            )
        operator_id = envelope["OperatorID"]
        meta = (interface, operator_id, envelope["TimeStamp"], envelope["Seq"], "")
        if operator_id not in self.settings.operators:
            return self._reply(
                self.settings.unknown_operator_ret, "OperatorID没有注册", None, fault, meta
            )
        if fault is not None and fault.action == "ret":
            return self._reply(int(fault.value), "injected fault", None, fault, meta)
        if interface != "query_token" and not self._token_ok(authorization, operator_id):
            return self._reply(4002, "Token错误", None, fault, meta)
        try:
            opened = open_request(
                envelope,
                self.settings.secrets,
                accept_lowercase_sig=self.settings.accept_lowercase_sig,
            )
        except CecCodecError as exc:
            if exc.problem == "sig":
                return self._reply(4001, f"签名错误: {exc}", None, fault, meta)
            return self._reply(4003, f"数据项Data解密失败: {exc}", None, fault, meta)
        text = opened.plaintext.decode("utf-8", "replace")
        meta = (interface, operator_id, opened.timestamp, opened.seq, text)
        try:
            data = decode_business(opened.plaintext)
        except CecCodecError as exc:
            return self._reply(4003, f"数据项Data解密失败: {exc}", None, fault, meta)
        problem = validate(data, SCHEMAS[interface])
        if problem:
            return self._reply(4004, f"请求的业务参数不合法: {problem}", None, fault, meta)
        if interface == "query_token":
            return self._issue_token(data, operator_id, fault, meta)
        identity = (
            f"{interface}|{record_id}"
            if record_id
            else f"{interface}|{business_key(interface, data, opened.plaintext)}"
        )
        self._store(identity, interface, operator_id, record_id, text)
        return self._reply(0, "", self._business_reply(interface, data), fault, meta)

    def _token_ok(self, authorization: str | None, operator_id: str) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            entry = self._tokens.get(authorization[7:])
        return entry is not None and entry[0] == operator_id and entry[1] > self.clock()

    def _issue_token(
        self,
        data: dict[str, Any],
        operator_id: str,
        fault: Fault | None,
        meta: tuple[str, str, str, str, str],
    ) -> dict[str, Any]:
        if (
            data["OperatorID"] != operator_id
            or self.settings.operators.get(operator_id) != data["OperatorSecret"]
        ):
            return self._reply(4003, "Data里的OperatorID或运营商密钥不对", None, fault, meta)
        token = _secrets.token_urlsafe(32)
        lifetime = self.settings.token_lifetime_s
        with self._lock:
            now = self.clock()
            self._tokens = {t: e for t, e in self._tokens.items() if e[1] > now}
            self._tokens[token] = (operator_id, now + lifetime)
        reply = {
            "OperatorID": operator_id,
            "SuccStat": 0,
            "AccessToken": token,
            "TokenAvailableTime": int(lifetime),
            "FailReason": 0,
        }
        return self._reply(0, "", reply, fault, meta)

    def _store(
        self, identity: str, interface: str, operator_id: str, record_id: str | None, text: str
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO accepted"
                " (identity, interface, operator_id, record_id, data, received_at, n)"
                " VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(n), 0) + 1 FROM accepted))"
                " ON CONFLICT(identity) DO UPDATE SET copies = copies + 1",
                (identity, interface, operator_id, record_id, text, self.clock()),
            )
            copies = self._db.execute(
                "SELECT copies FROM accepted WHERE identity = ?", (identity,)
            ).fetchone()[0]
            if copies > 1:
                self.stats.duplicates += 1
                log.info("duplicate %s (%d copies)", identity, copies)
            else:
                self.stats.accepted += 1

    def _business_reply(self, interface: str, data: dict[str, Any]) -> dict[str, Any]:
        if interface == "notification_charge_order_info":
            return {
                "StartChargeSeq": data["StartChargeSeq"],
                "ConnectorID": data["ConnectorID"],
                "ConfirmResult": 0,
            }
        if interface == "notification_equip_charge_status":
            return {"StartChargeSeq": data["StartChargeSeq"], "SuccStat": 0}
        if interface == "check_charge_orders":
            with self._lock:
                known = {
                    json.loads(row[0])["StartChargeSeq"]
                    for row in self._db.execute(
                        "SELECT data FROM accepted"
                        " WHERE interface = 'notification_charge_order_info'"
                    )
                }
            disputes = [
                {
                    "StartChargeSeq": o["StartChargeSeq"],
                    "TotalPower": o["TotalPower"],
                    "TotalMoney": o["TotalMoney"],
                    "DisputeReason": 1,
                }
                for o in data["ChargeOrders"]
                if o["StartChargeSeq"] not in known
            ]
            return {
                "CheckOrderSeq": data["CheckOrderSeq"],
                "StartTime": data["StartTime"],
                "EndTime": data["EndTime"],
                "TotalDisputeOrder": len(disputes),
                "TotalDisputePower": sum((d["TotalPower"] for d in disputes), Decimal(0)),
                "TotalDisputeMoney": sum((d["TotalMoney"] for d in disputes), Decimal(0)),
                "DisputeOrders": disputes,
            }
        return {"Status": 0}


# --- HTTP ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 30.0

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10.0)
            self.request.do_handshake()
        super().setup()

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        receiver = self.server.receiver
        base = receiver.settings.base_path
        path = self.path.split("?", 1)[0]
        interface = path[len(base) :] if path.startswith(base) else ""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, b"")
            return
        body = self.rfile.read(length)
        if interface not in SCHEMAS:
            self._send(404, b"unknown interface\n")
            return
        fault = receiver.take_fault(interface)
        if fault is not None and fault.action == "delay":
            time.sleep(fault.value)
            fault = None
        if fault is not None and fault.action == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.action == "http":
            self._send(int(fault.value), b"injected HTTP error\n")
            return
        envelope = receiver.handle(
            interface,
            body,
            self.headers.get("Authorization"),
            self.headers.get(RECORD_ID_HEADER),
            fault,
        )
        self._send(200, envelope_bytes(envelope), "application/json;charset=utf-8")

    def _send(self, status: int, payload: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: PlatformReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.info("connection from %s failed", client_address, exc_info=True)


class PlatformServer:
    """The receiver behind a threaded HTTP/1.1 server on 127.0.0.1 (keep-alive supported)."""

    def __init__(self, settings: PlatformSettings, clock: Callable[[], float] = time.time) -> None:
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the test receiver binds loopback only, not {settings.host}")
        self.receiver = PlatformReceiver(settings, clock)
        self._server = _Server((settings.host, settings.port), _Handler)
        self._server.receiver = self.receiver
        if settings.tls_cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(
                str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None
            )
            if settings.tls_client_ca is not None:
                ctx.load_verify_locations(cafile=str(settings.tls_client_ca))
                ctx.verify_mode = ssl.CERT_REQUIRED
            # the handshake runs in the handler thread, so a stalled client blocks no one
            self._server.socket = ctx.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.receiver.settings.tls_cert is not None else "http"
        return f"{scheme}://{self.receiver.settings.host}:{self.port}{self.receiver.settings.base_path}"

    def start(self) -> PlatformServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cec-platform", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
        self.receiver.close()
