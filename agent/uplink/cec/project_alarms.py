"""The T/CEC carrier of the project's own alarm codes (9001–9299): platforms do not know
them, so each group (``energy_audit``, ``meter_seal``, ``site_device``) goes out as an
``EventInfo`` of type 6, as an ``AlarmInfo`` with a Shenzhen code the platform agreed to, or
not at all (``[uplinks.cec] project_alarms``, docs/RECORDS.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from agent.records.bodies import AlarmBody
from agent.records.envelope import StoredRecord

if TYPE_CHECKING:
    from agent.uplink.cec.mapping import MappingContext


@dataclass(frozen=True, slots=True)
class ProjectCarrier:
    """How one group of the project's own alarm codes reaches the platform."""

    kind: Literal["event", "alarm"]
    code: int
    """The ``EventCode`` (type 6 "other") or the Shenzhen ``AlarmCode`` sent in its place."""


DEFAULT_PROJECT_CARRIERS: Final = {
    "energy_audit": ProjectCarrier("event", 7002),
    "meter_seal": ProjectCarrier("event", 7002),
}
"""The ``[uplinks.cec] project_alarms`` defaults: a group not named here stays off."""


def _platform_alarm_type(code: int) -> int:
    return 1 if code < 100 else 2 if code < 200 else 3


def project_alarm_object(
    record: StoredRecord, body: AlarmBody, ctx: MappingContext, time_text: str
) -> tuple[Literal["event", "alarm"], dict[str, Any]] | None:
    """The ``EventInfo`` or ``AlarmInfo`` of a project alarm edge, or None for a group whose
    carrier is off or an alarm that is no project code. ``time_text`` is the edge's time as
    the platform writes it.

    ``NoteString`` keeps what the platform's codes cannot say: the project code, its edge,
    meaning and figures (``9008 raised: billed energy differs …: metered … billed …``).
    """
    carrier = ctx.project_carriers.get(body.type) if isinstance(body.type, str) else None
    if carrier is None or not isinstance(body.code, int):
        return None
    head = {
        "StationID": record.station_id,
        "OperatorID": ctx.operator_id,
        "EquipmentOwnerID": ctx.equipment_owner_id,
        "StationName": ctx.station_name,
    }
    note = f"{body.code} {body.status}: {body.message}"[:255]
    if carrier.kind == "event":
        return "event", {
            **head,
            "EventType": 6,
            "EventCode": carrier.code,
            "EventTime": time_text,
            "NoteString": note,
        }
    return "alarm", {
        **head,
        "EquipmentID": record.equipment_id or "",
        "ConnectorID": record.connector_id or "",
        "AlarmStatus": 1 if body.status == "raised" else 0,
        "AlarmCode": carrier.code,
        "AlarmType": _platform_alarm_type(carrier.code),
        "AlarmLevel": body.level if isinstance(body.level, int) else 2,
        "AlarmTime": time_text,
        "NoteString": note,
    }
