"""Where a site alarm belongs: a connector, or the station itself.

A meter's seal alarms belong to its connector (``role = "connector"``) or to the station (the
station main meter); a site input's to the connectors it lists, or to the station when it
lists none. :class:`StationPlace` is the station's own alarm book: its records carry no
equipment or connector id.
"""

from __future__ import annotations

import msgspec

from agent.records.bodies import body_to_dict
from agent.records.envelope import Record, iso_ts
from agent.station.alarms import AlarmBook, AlarmEdge, Scope, alarm_body
from agent.station.connector import ConnectorModel
from agent.station.session import Session


class StationPlace:
    """The station's alarms (no connector); it never has a session."""

    session: Session | None = None

    def __init__(self, station_id: str) -> None:
        self.station_id = station_id
        self.alarms = AlarmBook()

    def record(self, kind: str, ts: float, body: msgspec.Struct) -> Record:
        return Record(kind=kind, ts=iso_ts(ts), station_id=self.station_id, body=body_to_dict(body))

    def _records(self, edge: AlarmEdge | None) -> list[Record]:
        return [] if edge is None else [self.record("alarm", edge.ts, alarm_body(edge, None))]

    def raise_alarm(
        self, ts: float, code: int, cause: str, message: str, scope: Scope = "device"
    ) -> list[Record]:
        return self._records(self.alarms.raise_(ts, code, cause, message, scope))

    def clear_alarm(self, ts: float, code: int, cause: str, message: str) -> list[Record]:
        return self._records(self.alarms.clear(ts, code, cause, message))


Place = ConnectorModel | StationPlace


def open_sessions(place: Place) -> list[Session]:
    """The sessions whose order is not written yet: the running one and one waiting for the
    meter's end reading."""
    if isinstance(place, StationPlace):
        return []
    found = [] if place.session is None else [place.session]
    if place.pending is not None:
        found.append(place.pending.session)
    return found
