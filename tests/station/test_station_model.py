"""Station model details: AC connectors from meter current, offline and reserved status,
statistics roll-ups, identity on config change, unknown inputs."""

from __future__ import annotations

import msgspec

from agent.records.envelope import Record, iso_ts
from agent.station.inputs import BusActivity, Reservation
from agent.station.model import StationModel
from agent.station.registers import RegisterWatch
from drivers.modbus.events import MeterOffline, MeterReading
from tests.station.station_fixtures import AC, DC, check_bodies, make_config, of, ts

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z = 06:13:20 at UTC+8


def reading(t: float, energy: float, current: float, meter: str = "ac1") -> MeterReading:
    values = {
        "energy_import_kwh": energy,
        "current_a": current,
        "voltage_v": 230.0,
        "power_w": 230.0 * current,
    }
    return MeterReading(meter, t, values, {}, {})


def run(model: StationModel, events: list) -> list[Record]:
    out: list[Record] = []
    for e in events:
        out += model.tick(e.ts)
        out += model.feed(e)
    return out


def test_ac_connector_follows_its_meter_current_and_writes_an_order() -> None:
    model = StationModel(make_config(meters=True))
    out = model.startup([], T0)
    events = [reading(T0 + i, 100.0, 0.0) for i in range(5)]
    # 32 A for 10 minutes at 230 V: 1.2267 kWh
    energy = 100.0
    for i in range(600):
        energy += 230.0 * 32 / 3.6e6
        events.append(reading(T0 + 5 + i, energy, 32.0))
    events += [reading(T0 + 605 + i, energy, 0.0) for i in range(200)]
    out += run(model, events)
    check_bodies(out)
    statuses = [(r.body["status"], ts(r) - T0) for r in of(out, "connector_status", AC)]
    assert statuses[:3] == [(1, 0.0), (3, 5.0), (3, 55.0)]  # idle, charging, heartbeat
    assert statuses[-2:] == [(2, 605.0), (1, 725.0)]  # current stopped; ended 120 s later
    [order] = of(out, "charge_order", AC)
    o = order.body
    assert o["meter_energy_start_kwh"] == 100.0
    assert o["energy_kwh"] == round(energy - 100.0, 3)
    assert o["energy_source"] == "meter"
    assert o["stop_reason"] == 2
    assert o["end_reason"] == "current_stopped"
    assert o["peak_power_kw"] == 230.0 * 32 / 1000
    assert of(out, "alarm") == []  # AC alarms never carry BmsInfo; there are none here


def test_offline_when_every_source_is_silent_and_meter_alarm() -> None:
    model = StationModel(make_config(meters=True))
    out = model.startup([], T0)
    out += model.feed(BusActivity(DC, T0))
    out += model.feed(reading(T0, 5.0, 0.0, meter="dc1"))
    out += model.tick(T0 + 20)
    assert [r.body["status"] for r in of(out, "connector_status", DC)] == [1]
    out += model.feed(BusActivity(DC, T0 + 25))  # the bus keeps it alive …
    out += model.feed(MeterOffline("dc1", T0 + 26, 3, "timeout"))
    out += model.tick(T0 + 50)
    assert [r.body["status"] for r in of(out, "connector_status", DC)] == [1]
    out += model.tick(T0 + 56)  # … until it is silent too
    assert [r.body["status"] for r in of(out, "connector_status", DC)] == [1, 0]
    [alarm] = of(out, "alarm", DC)
    assert (alarm.body["code"], alarm.body["type"], alarm.body["level"]) == (3, 1, 3)
    assert alarm.body["bms"] is None  # no session: no BmsInfo
    # the AC connector never heard from its meter: offline once offline_after_s passed
    assert [(r.body["status"], ts(r) - T0) for r in of(out, "connector_status", AC)] == [(0, 50.0)]
    out = model.feed(Reservation(DC, T0 + 60, True)) + model.feed(BusActivity(DC, T0 + 60))
    assert [r.body["status"] for r in of(out, "connector_status", DC)] == [4]


def test_hourly_and_daily_statistics() -> None:
    model = StationModel(make_config(meters=True))
    start = T0 - (T0 + 8 * 3600) % 86400 + 86400 - 2 * 3600  # 22:00 local time
    out = model.startup([], start)
    energy = 10.0
    for minute in range(181):  # 22:00 → 01:00 local, 1 kWh per hour on the AC meter
        t = start + minute * 60
        out += model.tick(t)
        out += model.feed(reading(t, energy, 0.0))
        energy += 1 / 60
    stats = of(out, "station_stats")
    check_bodies(stats)
    periods = [(r.body["period"], r.body["period_start_ts"]) for r in stats]
    assert periods == [
        ("hour", iso_ts(start)),
        ("hour", iso_ts(start + 3600)),
        ("day", iso_ts(start + 2 * 3600 - 86400)),
        ("hour", iso_ts(start + 7200)),
    ]
    by_id = {c["connector_id"]: c for c in stats[0].body["connectors"]}
    assert by_id[AC]["energy_kwh"] == round(59 / 60, 3)  # the first reading is the baseline
    second = {c["connector_id"]: c for c in stats[1].body["connectors"]}
    assert second[AC]["energy_kwh"] == 1.0
    day = {c["connector_id"]: c for c in stats[2].body["connectors"]}
    assert day[AC]["energy_kwh"] == round(59 / 60 + 1, 3)
    assert by_id[DC]["energy_kwh"] == 0.0 and by_id[DC]["sessions"] == 0


def test_identity_again_only_when_the_config_changes() -> None:
    cfg = make_config(meters=True)
    model = StationModel(cfg)
    assert [r.kind for r in model.startup([], T0)] == ["identity"]
    assert model.reload(cfg, T0 + 1) == []
    new_cfg = msgspec.structs.replace(
        cfg, station=msgspec.structs.replace(cfg.station, name="Renamed")
    )
    [identity] = model.reload(new_cfg, T0 + 2)
    assert identity.body["station"]["name"] == "Renamed"


def test_unknown_connectors_and_meters_are_counted_not_fatal() -> None:
    model = StationModel(make_config())
    model.startup([], T0)
    assert model.feed(BusActivity("NOPE", T0)) == []
    assert model.feed(reading(T0, 1.0, 0.0, meter="ghost")) == []
    assert model.ignored == {"connector:NOPE": 1, "meter:ghost": 1}


def test_a_register_going_back_is_noticed_by_the_station() -> None:
    """The station, not the meter driver, notices a cumulative register going back (meter
    reset, exchanged or tampered with), from readings alone, whatever protocol the meter speaks
    (the Modbus checker's assertions moved here: 1006.05 → 0.01, and any energy register)."""
    model = StationModel(make_config(meters=True))
    out = model.startup([], T0)

    def dc(t: float, **values: float) -> MeterReading:
        return MeterReading("dc1", t, values, {}, {})

    out += run(model, [dc(T0, energy_import_kwh=1006.05), dc(T0 + 60, energy_import_kwh=0.01)])
    [alarm] = of(out, "alarm", DC)
    assert (alarm.body["code"], alarm.body["status"]) == (9004, "raised")
    assert "energy_import_kwh went back from 1006.05 to 0.01" in alarm.body["message"]
    # an export register going back raises the same code (the import register stays clean)
    model = StationModel(make_config(meters=True))
    out = model.startup([], T0)
    out += run(
        model,
        [
            dc(T0, energy_import_kwh=10.0, energy_export_kwh=5.0),
            dc(T0 + 60, energy_import_kwh=10.5, energy_export_kwh=0.0),
        ],
    )
    [alarm] = of(out, "alarm", DC)
    assert alarm.body["code"] == 9004
    assert "energy_export_kwh went back from 5 to 0" in alarm.body["message"]


def test_register_watch_keeps_the_lower_value_as_the_new_baseline() -> None:
    w = RegisterWatch()
    assert w.update({"energy_import_kwh": 500.0, "power_w": 900.0}) == []
    [back] = w.update({"energy_import_kwh": 3.0, "power_w": 100.0})
    assert (back.register, back.previous, back.current) == ("energy_import_kwh", 500.0, 3.0)
    assert w.update({"energy_import_kwh": 53.0}) == []  # measured from 3.0 now
    assert w.update({"x_counter_kwh": 5.0}) == [] and w.update({"x_counter_kwh": 1.0}) == []
    both = w.update({"reactive_energy_import_kvarh": 9.0, "energy_import_kwh": 60.0})
    assert both == []
    both = w.update({"reactive_energy_import_kvarh": 1.0, "energy_import_kwh": 1.0})
    assert [d.register for d in both] == ["energy_import_kwh", "reactive_energy_import_kvarh"]
