"""The site part of the station model: meter seals, site inputs, the grid connection.

:class:`Site` routes identity and seal events (:mod:`agent.station.seal`), site inputs and
the station main meter's readings (:mod:`agent.station.site_inputs`) to the place each alarm
belongs to (:mod:`agent.station.place`). At start it takes what the ledger says
(:func:`site_facts`): the identity and counts last recorded of each meter — so an exchange or
an opening while evgw was down is noticed — and the site alarms a previous run left raised,
so this run clears them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.config.schema import Config, MeterSection
from agent.records.envelope import Record, parse_iso_ts
from agent.station import seal as seals
from agent.station import site_inputs
from agent.station.codes import ALARM_CODES
from agent.station.connector import ConnectorModel
from agent.station.place import Place, StationPlace
from drivers.inputs.events import InputChanged, InputEvent
from drivers.modbus.events import MeterReading, SealEvent

SITE_CAUSES = ("seal.", "input.", "grid.")
"""The alarm causes of this module: restored at start when the ledger left them raised."""


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    """A site alarm whose newest edge in the ledger is a raise."""

    connector_id: str | None
    code: int
    cause: str
    raised_ts: float


@dataclass(frozen=True, slots=True)
class SiteFacts:
    seals: dict[str, seals.MeterSeal] = field(default_factory=dict)
    raised: tuple[RaisedAlarm, ...] = ()


def site_facts(events: Iterable[Record], alarms: Iterable[Record]) -> SiteFacts:
    """From the newest ``event`` and ``alarm`` records (newest first)."""
    seen: set[tuple[str | None, object]] = set()
    raised: list[RaisedAlarm] = []
    for r in alarms:
        code = r.body.get("code")
        if type(code) is not int or code not in ALARM_CODES or (r.connector_id, code) in seen:
            continue
        seen.add((r.connector_id, code))
        listed = r.body.get("causes")
        causes = (
            [c for c in listed if isinstance(c, str)] if isinstance(listed, list | tuple) else []
        )
        causes = [c for c in causes if c.startswith(SITE_CAUSES)]
        if r.body.get("status") == "raised" and causes:
            raised.append(RaisedAlarm(r.connector_id, code, causes[0], parse_iso_ts(r.ts)))
    return SiteFacts(seals.recorded(list(events)), tuple(raised))


class Site:
    def __init__(self, station_id: str) -> None:
        self.station = StationPlace(station_id)
        self.seals: dict[str, seals.MeterSeal] = {}

    def place_of(self, meter: MeterSection, connectors: Mapping[str, ConnectorModel]) -> Place:
        c = connectors.get(meter.connector_id or "")
        return c if c is not None and meter.role == "connector" else self.station

    def restore(self, facts: SiteFacts, connectors: Mapping[str, ConnectorModel]) -> None:
        for meter_id, recorded in facts.seals.items():
            self.seals[meter_id] = seals.MeterSeal(dict(recorded.identity), dict(recorded.counts))
        for a in facts.raised:
            place = self.station if a.connector_id is None else connectors.get(a.connector_id)
            if place is None:
                continue
            place.alarms.restore(a.code, a.cause, "device", a.raised_ts)
            meter_id, _, code = a.cause.removeprefix("seal.").rpartition(".")
            if a.cause.startswith("seal.") and code == str(a.code):
                self.seals.setdefault(meter_id, seals.MeterSeal()).raised[a.code] = a.raised_ts

    # ------------------------------------------------------------------ meters

    def seal_event(self, place: Place, ev: SealEvent) -> list[Record]:
        seal = self.seals.setdefault(ev.meter_id, seals.MeterSeal())
        return seals.on_seal_event(place, seal, ev)

    def reading(
        self, place: Place, meter: MeterSection, config: Config, r: MeterReading
    ) -> list[Record]:
        out: list[Record] = []
        seal = self.seals.get(meter.meter_id)
        if seal is not None and seal.raised:
            out += seals.clear_quiet(place, seal, meter, r.ts)
        if meter.role == "station_main":
            out += site_inputs.on_main_reading(self.station, config, r)
        return out

    # ------------------------------------------------------------------ inputs

    def input_event(
        self, ev: InputEvent, config: Config, connectors: Mapping[str, ConnectorModel]
    ) -> list[Record]:
        if not isinstance(ev, InputChanged):
            return site_inputs.on_fault(self.station, ev)
        section = next((i for i in config.inputs if i.input_id == ev.input_id), None)
        out: list[Record] = []
        if ev.initial and section is not None:
            # the module answers: a fault alarm a previous run left raised is over
            out += site_inputs.on_fault_cleared(self.station, section.module, ev.ts)
        places: list[Place] = [connectors[c] for c in ev.connectors if c in connectors]
        if not ev.connectors:
            places = [self.station]
        description = section.description if section is not None else ""
        return out + site_inputs.on_input(places, ev, description)
