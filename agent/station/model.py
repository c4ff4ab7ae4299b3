"""The station model: driver events and time in, records out (sans-I/O).

``StationModel(config, signer=...)`` keeps one :class:`~agent.station.connector.ConnectorModel`
per configured connector plus station-wide meter sampling and statistics::

    model = StationModel(config, signer=OcmfSigner(key, gateway_id=..., software_version=...))
    records = model.startup(restart_facts, ts)   # identity; sessions left open are held
    records = model.feed(event)                  # GB/T tracker, meter, bus activity, remote
                                                 # stop, meter seal, site input
    records = model.tick(ts)                     # heartbeats, offline, timeouts, statistics
    records = model.reload(new_config, ts)       # identity again when it changed

The site's own alarms (meter seals, site inputs, the station main meter's grid checks) are
:class:`~agent.station.site.Site`'s. It never reads a clock or does I/O: every timestamp comes
from the events or the caller. Events for connectors or meters the config does not know are
counted in ``ignored`` and otherwise dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from agent.config.schema import Config, MeterSection
from agent.records.bodies import IdentityBody, MeterSampleBody, body_to_dict
from agent.records.envelope import Record, StoredRecord, iso_ts
from agent.station import resume
from agent.station.connector import ConnectorModel
from agent.station.identity import identity_body
from agent.station.inputs import BusActivity, RemoteStop, Reservation
from agent.station.ocmf import OcmfSigner
from agent.station.restart import RestartFacts
from agent.station.site import Site, SiteFacts
from agent.station.stats import StatsRoller
from drivers.gbt27930.events import BmsEvent
from drivers.inputs.events import InputChanged, InputEvent, InputFault
from drivers.modbus.events import (
    MeterAlarm,
    MeterAnomaly,
    MeterOffline,
    MeterOnline,
    MeterReading,
    SealEvent,
)

MeterInput = MeterReading | MeterOffline | MeterOnline | MeterAnomaly | MeterAlarm | SealEvent
StationInput = BmsEvent | MeterInput | BusActivity | Reservation | RemoteStop | InputEvent


class StationModel:
    def __init__(self, config: Config, *, signer: OcmfSigner | None = None) -> None:
        self.config = config
        self.signer = signer
        self.connectors: dict[str, ConnectorModel] = {}
        self.meters: dict[str, MeterSection] = {}
        self.ignored: Counter[str] = Counter()
        self.records_out = 0
        self._stats: StatsRoller | None = None
        self._identity: IdentityBody | None = None
        self._last_sample_ts: dict[str, float] = {}
        self.site = Site(config.station.station_id)

    # ------------------------------------------------------------------ lifecycle

    def _build(self, config: Config, ts: float) -> None:
        self.config = config
        by_connector = {m.connector_id: m for m in config.meters if m.role == "connector"}
        can = {b.connector_id for b in config.can_buses}
        self.meters = {m.meter_id: m for m in config.meters}
        self.site.station.station_id = config.station.station_id
        known = config.connectors()
        stats_ids = {cid: e.equipment_id for cid, (e, _c) in known.items()}
        if self._stats is None:
            self._stats = StatsRoller(stats_ids, config.sampling.stats_utc_offset_h, ts)
        else:
            self._stats.set_connectors(stats_ids)
        new: dict[str, ConnectorModel] = {}
        for cid, (equipment, connector) in known.items():
            old = self.connectors.get(cid)
            model = ConnectorModel(
                config,
                equipment,
                connector,
                meter=by_connector.get(cid),
                has_can=cid in can,
                stats=self._stats,
                signer=self.signer,
                start_ts=ts,
            )
            if old is not None:
                _carry_over(old, model)
            new[cid] = model
        self.connectors = new

    def startup(
        self,
        restart_facts: Iterable[RestartFacts],
        ts: float,
        site: SiteFacts | None = None,
        recent_orders: Sequence[StoredRecord] = (),
    ) -> list[Record]:
        """First call: the identity record; then what the ledger says of each connector (its
        open session, its last register) is settled over the next moments (see
        :mod:`agent.station.resume`), and of the site (recorded meter seals, alarms left
        raised: :mod:`agent.station.site`). ``recent_orders`` (newest first) are the orders
        an earlier run wrote, for the duplicate-order rule."""
        self._build(self.config, ts)
        if site is not None:
            self.site.restore(site, self.connectors)
        for r in reversed(recent_orders):
            sid, end = r.body.get("session_id"), r.body.get("end_ts")
            c = self.connectors.get(r.connector_id or "")
            if c is not None and isinstance(sid, str) and isinstance(end, str):
                c.orders_seen.remember(sid, end)
        out = self._identity_records(ts, force=True)
        for facts in restart_facts:
            c = self.connectors.get(facts.connector_id)
            if c is None:
                self.ignored[f"open_session:{facts.connector_id}"] += 1
                continue
            out += resume.begin(c, facts, ts)
        return self._count(out)

    def reload(self, config: Config, ts: float) -> list[Record]:
        """A new config: rebuild connectors (sessions carry over), identity if it changed."""
        out: list[Record] = []
        for cid, c in self.connectors.items():
            if cid not in config.connectors():
                out += c.close_for_removal(ts)
        self._build(config, ts)
        out += self._identity_records(ts, force=False)
        return self._count(out)

    def _identity_records(self, ts: float, *, force: bool) -> list[Record]:
        body = identity_body(self.config)
        if not force and body == self._identity:
            return []
        self._identity = body
        return [
            Record(
                kind="identity",
                ts=iso_ts(ts),
                station_id=self.config.station.station_id,
                body=body_to_dict(body),
            )
        ]

    # ------------------------------------------------------------------ inputs

    def feed(self, event: StationInput) -> list[Record]:
        if self._stats is None:
            self._build(self.config, event.ts)
        out = self._roll(event.ts)
        if isinstance(event, BmsEvent | BusActivity | Reservation | RemoteStop):
            c = self.connectors.get(event.connector_id)
            if c is None:
                self.ignored[f"connector:{event.connector_id}"] += 1
                return self._count(out)
            if isinstance(event, BusActivity):
                out += c.bus_activity(event.ts)
            elif isinstance(event, Reservation):
                out += c.set_reserved(event.ts, event.reserved)
            elif isinstance(event, RemoteStop):
                out += c.remote_stop(event.ts)
            else:
                out += c.feed_bms(event)
            return self._count(out)
        if isinstance(event, InputChanged | InputFault):
            return self._count(out + self.site.input_event(event, self.config, self.connectors))
        meter = self.meters.get(event.meter_id)
        if meter is None:
            self.ignored[f"meter:{event.meter_id}"] += 1
            return self._count(out)
        place = self.site.place_of(meter, self.connectors)
        if isinstance(event, SealEvent):
            return self._count(out + self.site.seal_event(place, event))
        if isinstance(event, MeterReading):
            out += self._meter_sample(event)
            out += self.site.reading(place, meter, self.config, event)
        c = self.connectors.get(meter.connector_id or "")
        if c is not None and meter.role == "connector":
            out += c.feed_meter(event)
        return self._count(out)

    def tick(self, ts: float) -> list[Record]:
        if self._stats is None:
            self._build(self.config, ts)
        out = self._roll(ts)
        for c in self.connectors.values():
            out += c.tick(ts)
        return self._count(out)

    def flush(self, ts: float) -> list[Record]:
        """Before stopping: write the orders still waiting for a meter reading."""
        out: list[Record] = []
        for c in self.connectors.values():
            out += c.finish_pending(ts)
        return self._count(out)

    # ------------------------------------------------------------------ station-wide work

    def _meter_sample(self, r: MeterReading) -> list[Record]:
        last = self._last_sample_ts.get(r.meter_id)
        if last is not None and r.ts - last < self.config.sampling.meter_sample_interval_s:
            return []
        energy = r.energy_import_kwh
        if energy is None:
            return []
        self._last_sample_ts[r.meter_id] = r.ts
        v = r.values
        meter = self.meters[r.meter_id]
        c = self.connectors.get(meter.connector_id or "")
        body = MeterSampleBody(
            meter_id=r.meter_id,
            power_kw=round(v.get("power_w", 0.0) / 1000.0, 3),
            energy_kwh=energy,
            export_energy_kwh=r.energy_export_kwh,
            voltage_v=v.get("voltage_v", v.get("voltage_l1_v")),
            current_a=v.get("current_a", v.get("current_l1_a")),
        )
        return [
            Record(
                kind="meter_sample",
                ts=iso_ts(r.ts),
                station_id=self.config.station.station_id,
                body=body_to_dict(body),
                equipment_id=None if c is None else c.equipment.equipment_id,
                connector_id=None if c is None else c.connector_id,
            )
        ]

    def _roll(self, ts: float) -> list[Record]:
        stats = self._stats
        assert stats is not None
        if ts < stats.next_boundary:
            return []
        boundary = stats.next_boundary
        for c in self.connectors.values():
            c.flush_charging(boundary)
        return [
            Record(
                kind="station_stats",
                ts=body.period_end_ts,
                station_id=self.config.station.station_id,
                body=body_to_dict(body),
            )
            for body in stats.roll(ts)
        ]

    def _count(self, out: list[Record]) -> list[Record]:
        self.records_out += len(out)
        return out


def _carry_over(old: ConnectorModel, new: ConnectorModel) -> None:
    """Keep the live state of a connector across a config reload."""
    state: dict[str, Any] = {
        name: getattr(old, name)
        for name in (
            "status",
            "last_status_ts",
            "session",
            "pending",
            "fault",
            "reserved",
            "alarms",
            "last_bus_ts",
            "last_meter_ts",
            "meter_online",
            "reading",
            "last_energy_kwh",
            "registers",
            "charging_since",
            "ac_below_since",
            "restart",
            "created_ts",
            "orders_seen",
        )
    }
    for name, value in state.items():
        setattr(new, name, value)
