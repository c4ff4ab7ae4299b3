"""The answers to the platform's queries, from the ledger (spec §13.4–§13.6, §15.3–§15.10).

Each reads only the newest records of a kind (the ``(kind, seq)`` index, bounded) or the seq
range of a time window (found by bisection on the primary key,
:func:`agent.uplink.cec.reconcile.seq_at`), never the station model. A request the
interface cannot use raises :class:`ValueError`, which the server answers with ``Ret 4004``.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agent.records.bodies import (
    AlarmBody,
    BmsProcessBody,
    ConnectorStatusBody,
    EventBody,
    IdentityBody,
    StationStatsBody,
    decode_body,
)
from agent.records.envelope import StoredRecord, parse_iso_ts
from agent.uplink.cec.codec import CHINA_TZ
from agent.uplink.cec.mapping import (
    ALARM_INFO,
    EVENT_INFO,
    MappingContext,
    alarm_info,
    bms_info,
    connector_status_info,
    dec,
    event_info,
    project_alarm,
    station_info,
)
from agent.uplink.cec.reconcile import seq_at

if TYPE_CHECKING:
    from agent.billing.tariff import Tariff
    from agent.ledger import Ledger

RECENT_ALARMS: Final = 2000
"""Alarm edges looked at to find the raised ones (newest first)."""
MAX_WINDOW_DAYS: Final = 31
PAGE: Final = 500

SetFrequency = Callable[[int], Awaitable[bool]]
TariffOf = Callable[[str, float], "Tariff | None"]
"""(connector id, epoch seconds) → the tariff in force for it then, or None."""


class Queries:
    def __init__(
        self,
        ledger: Ledger,
        ctx: MappingContext,
        station_id: str,
        connectors: tuple[tuple[str, str], ...],
        set_frequency: SetFrequency,
        tariff_of: TariffOf | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._ctx = ctx
        self._station_id = station_id
        self._connectors = connectors
        self._set_frequency = set_frequency
        self._tariff_of = tariff_of
        self._clock = clock
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "query_stations_info": self.stations_info,
            "query_station_status": self.station_status,
            "query_stations_status": self.station_status,
            "query_bms_info": self.bms_info,
            "query_alarm_info": self.alarm_info,
            "query_event_info": self.event_info,
            "query_station_stats": self.station_stats,
            "query_station_charge_stats": self.charge_stats,
            "query_station_discharge_stats": self.discharge_stats,
            "query_frequency": self.frequency,
            "query_equip_business_policy": self.business_policy,
        }

    async def _newest(self, kind: str, connector_id: str | None = None) -> Any:
        found = await self._ledger.find(kind, connector_id=connector_id, limit=1, newest_first=True)
        return (found[0], decode_body(kind, found[0].body)) if found else (None, None)

    def _connector(self, data: dict[str, Any]) -> str:
        connector = data.get("ConnectorID")
        if not isinstance(connector, str) or connector not in {c for _e, c in self._connectors}:
            raise ValueError(f"ConnectorID: no connector {connector!r} at this station")
        return connector

    def _station(self, data: dict[str, Any]) -> None:
        if data.get("StationID") != self._station_id:
            raise ValueError(f"StationID: not this station ({data.get('StationID')!r})")

    async def _window(
        self, data: dict[str, Any], kind: str, fmt: str, written_late_s: float = 0.0
    ) -> tuple[float, float, list[StoredRecord]]:
        """The records of ``kind`` written in ``[StartTime, EndTime]`` (China time, ``fmt``),
        or up to ``written_late_s`` after it (statistics are written when a period closes)."""
        try:
            start = _dt.datetime.strptime(str(data.get("StartTime") or data.get("StarTime")), fmt)
            end = _dt.datetime.strptime(str(data.get("EndTime")), fmt)
        except ValueError:
            raise ValueError(f"StartTime/EndTime: expected {fmt.replace('%', '')}") from None
        if fmt == "%Y-%m-%d":
            end += _dt.timedelta(days=1)  # a date range includes its last day
        start_s = start.replace(tzinfo=CHINA_TZ).timestamp()
        end_s = end.replace(tzinfo=CHINA_TZ).timestamp()
        if not 0 <= end_s - start_s <= MAX_WINDOW_DAYS * 86400:
            raise ValueError(f"StartTime..EndTime: at most {MAX_WINDOW_DAYS} days, in order")
        first = await seq_at(self._ledger, start_s)
        last = await seq_at(self._ledger, end_s + written_late_s)
        found: list[StoredRecord] = []
        after = first - 1
        while after < last - 1:
            page = await self._ledger.read_after(after, PAGE, kinds={kind})
            found += [r for r in page if r.seq < last]
            if len(page) < PAGE or page[-1].seq >= last:
                break
            after = page[-1].seq
        return start_s, end_s, found

    # -- the interfaces --

    async def stations_info(self, data: dict[str, Any]) -> dict[str, Any]:
        record, body = await self._newest("identity")
        infos = [station_info(record, body)] if isinstance(body, IdentityBody) else []
        return {"PageNo": 1, "PageCount": 1, "ItemSize": len(infos), "StationInfos": infos}

    async def station_status(self, data: dict[str, Any]) -> dict[str, Any]:
        wanted = data.get("StationIDs")
        if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
            raise ValueError("StationIDs: expected a list of strings")
        statuses = []
        if self._station_id in wanted:
            for _equipment, connector in self._connectors:
                _record, body = await self._newest("connector_status", connector)
                if isinstance(body, ConnectorStatusBody):
                    statuses.append(connector_status_info(connector, body, self._ctx))
        infos = [{"StationID": self._station_id, "ConnectorStatusInfos": statuses}]
        return {
            "Total": len(infos) if statuses else 0,
            "StationStatusInfos": infos if statuses else [],
        }

    async def bms_info(self, data: dict[str, Any]) -> dict[str, Any]:
        connector = self._connector(data)
        _record, body = await self._newest("bms_process", connector)
        if not isinstance(body, BmsProcessBody):
            return {"ConnectorID": connector, "Status": 1}
        info = bms_info(body, connector, self._ctx.unknown_fields_member)
        return {"ConnectorID": connector, "Status": body.connector_status, "BmsInfo": info}

    async def alarm_info(self, data: dict[str, Any]) -> dict[str, Any]:
        """The alarms raised and not cleared on the equipment (the newest edge decides)."""
        self._station(data)
        equipment = data.get("EquipmentID")
        edges = await self._ledger.find("alarm", limit=RECENT_ALARMS, newest_first=True)
        seen: set[tuple[str | None, object]] = set()
        raised = []
        for record in edges:
            body = decode_body("alarm", record.body)
            key = (record.connector_id, body.code)
            if not isinstance(body, AlarmBody) or key in seen:
                continue
            if body.for_platform:
                info = alarm_info(record, body, self._ctx)
            elif (carried := project_alarm(record, body, self._ctx)) and carried[0] == ALARM_INFO:
                info = carried[1]["AlarmInfos"][0]
            else:
                continue
            seen.add(key)
            if body.status == "raised" and equipment in (None, "", record.equipment_id):
                raised.append(info)
        return {"AlarmInfos": raised[::-1]}

    async def event_info(self, data: dict[str, Any]) -> dict[str, Any]:
        self._station(data)
        _start, _end, records = await self._window(data, "event", "%Y-%m-%d %H:%M:%S")
        _start, _end, alarms = await self._window(data, "alarm", "%Y-%m-%d %H:%M:%S")
        infos = []
        for record in sorted((*records, *alarms), key=lambda r: r.seq):
            body = decode_body(record.kind, record.body)
            if isinstance(body, EventBody) and (info := event_info(record, body, self._ctx)):
                infos.append(info)
            elif (
                isinstance(body, AlarmBody)
                and (carried := project_alarm(record, body, self._ctx))
                and carried[0] == EVENT_INFO
            ):
                infos += carried[1]["EventInfos"]
        return {"EventInfos": infos}

    async def _daily(self, data: dict[str, Any]) -> tuple[str, str, dict[str, dict[str, Any]]]:
        """Per equipment and connector, the charged and discharged energy of the days."""
        self._station(data)
        start_s, end_s, records = await self._window(
            data, "station_stats", "%Y-%m-%d", written_late_s=2 * 86400.0
        )
        totals: dict[str, dict[str, Any]] = {}
        for record in records:
            body = decode_body("station_stats", record.body)
            if not isinstance(body, StationStatsBody) or body.period != "day":
                continue
            if not start_s <= parse_iso_ts(body.period_start_ts) < end_s:
                continue
            for c in body.connectors:
                row = totals.setdefault(
                    c.connector_id, {"equipment": c.equipment_id, "in": 0.0, "out": 0.0}
                )
                row["in"] += c.energy_kwh
                row["out"] += c.discharge_energy_kwh
        return str(data.get("StartTime") or data.get("StarTime")), str(data["EndTime"]), totals

    def _stats(
        self,
        start: str,
        end: str,
        totals: dict[str, dict[str, Any]],
        names: tuple[str, ...],
        key: str,
    ) -> dict[str, Any]:
        station, equipment_name, connector_name, infos, cinfos = names
        by_equipment: dict[str, list[dict[str, Any]]] = {}
        for equipment, connector in self._connectors:
            kwh = totals.get(connector, {}).get(key, 0.0)
            by_equipment.setdefault(equipment, []).append(
                {"ConnectorID": connector, connector_name: dec(kwh, 1)}
            )
        equipments = [
            {
                "EquipmentID": e,
                equipment_name: sum((c[connector_name] for c in rows), Decimal(0)),
                cinfos: rows,
            }
            for e, rows in by_equipment.items()
        ]
        return {
            "StationStats": {
                "StationID": self._station_id,
                "StartTime": start,
                "EndTime": end,
                station: sum((e[equipment_name] for e in equipments), Decimal(0)),
                infos: equipments,
            }
        }

    async def station_stats(self, data: dict[str, Any]) -> dict[str, Any]:
        start, end, totals = await self._daily(data)
        names = ("StationElectricity", "EquipmentElectricity", "ConnectorElectricity",
                 "EquipmentStatsInfos", "ConnectorStatsInfos")  # fmt: skip
        return self._stats(start, end, totals, names, "in")

    async def charge_stats(self, data: dict[str, Any]) -> dict[str, Any]:
        start, end, totals = await self._daily(data)
        names = ("StationChargeElectricity", "EquipmentChargeElectricity",
                 "ConnectorChargeElectricity", "EquipmentChargeStatsInfos",
                 "ConnectorChargeStatsInfos")  # fmt: skip
        return self._stats(start, end, totals, names, "in")

    async def discharge_stats(self, data: dict[str, Any]) -> dict[str, Any]:
        start, end, totals = await self._daily(data)
        names = ("StationDischargeElectricity", "EquipmentDischargeElectricity",
                 "ConnectorDischargeElectricity", "EquipmentDischargeStatsInfos",
                 "ConnectorDischargeStatsInfos")  # fmt: skip
        return self._stats(start, end, totals, names, "out")

    async def frequency(self, data: dict[str, Any]) -> dict[str, Any]:
        """``ParaFrequency`` (seconds presumed, spec §15.8) becomes the push cadence."""
        value = data.get("ParaFrequency")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("ParaFrequency: expected an integer (seconds)")
        return {"Status": 0 if await self._set_frequency(value) else 1}

    async def business_policy(self, data: dict[str, Any]) -> dict[str, Any]:
        """The connector's tariff periods in force now (spec §13.8); ``SuccStat 1`` with
        ``FailReason 1`` when it has none."""
        seq = data.get("EquipBizSeq")
        if not isinstance(seq, str) or len(seq) != 27:
            raise ValueError("EquipBizSeq: expected 27 characters")
        connector = self._connector(data)
        tariff = self._tariff_of(connector, self._clock()) if self._tariff_of else None
        head = {"EquipBizSeq": seq, "ConnectorID": connector}
        if tariff is None:
            return {**head, "SuccStat": 1, "FailReason": 1, "SumPeriod": 0, "PolicyInfos": []}
        policies = [
            {
                "StartTime": p.start_text.replace(":", ""),
                "ElecPrice": p.elec_price.quantize(Decimal("0.0001")),
                "SevicePrice": p.service_price.quantize(Decimal("0.0001")),
            }
            for p in tariff.periods
        ]
        return {**head, "SuccStat": 0, "FailReason": 0, "SumPeriod": len(policies),
                "PolicyInfos": policies}  # fmt: skip
