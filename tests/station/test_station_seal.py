"""The station's site alarms: meter identity and electronic seal (raised, cleared, across a
restart, while evgw was down, the order flagged), site inputs by role, input-module faults, and
the station main meter's grid checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.load import parse_config
from agent.records.envelope import Record, iso_ts
from agent.station import codes
from agent.station.model import StationInput, StationModel
from agent.station.site import SiteFacts, site_facts
from drivers.inputs.events import InputChanged, InputFault
from drivers.modbus.events import (
    MeterClockDrift,
    MeterCounters,
    MeterIdentity,
    MeterReading,
    MeterReplaced,
    MeterTamper,
)
from sim.charging import VehicleProfile, generate
from tests.station.sim_runner import MeterPlan, run_sim
from tests.station.station_fixtures import (
    AC,
    AC_METER,
    BASE,
    DC,
    DLT645_DC,
    check_bodies,
    make_config,
    of,
)

T0 = 1_780_000_000.0
ID = {"address": "000012345678", "serial": "000000000001", "firmware": "SIM-645 1.0"}
COUNTS = {"meter_cover_open": 1, "terminal_cover_open": 0, "power_down": 4}

SITE = (
    DLT645_DC
    + "seal_interval_s = 10\nseal_clear_after_s = 60\n"
    + AC_METER
    + """[[meters]]
meter_id = "main"
protocol = "dlt645"
profile = "dtsu666-dlt645"
transport = "rtu"
port = "/dev/ttyUSB0"
address = "000000000099"
role = "station_main"
[[input_modules]]
module_id = "di1"
profile = "generic-di8"
port = "/dev/ttyUSB1"
unit_id = 9
[[inputs]]
input_id = "door-dc"
module = "di1"
channel = 0
role = "door"
connectors = ["SZFT0001DC0101"]
[[inputs]]
input_id = "estop-site"
module = "di1"
channel = 1
role = "estop"
[[inputs]]
input_id = "flood"
module = "di1"
channel = 2
role = "flood"
[[inputs]]
input_id = "box-seal"
module = "di1"
channel = 3
role = "seal"
connectors = ["SZFT0001DC0101", "SZFT0001AC0101"]
[[inputs]]
input_id = "fan"
module = "di1"
channel = 4
role = "custom"
description = "room fan running"
[sampling]
ac_session_end_s = 2
"""
)
CONFIG = parse_config(BASE.replace("lat = 22.52\n", "lat = 22.52\ncapacity_kw = 100\n") + SITE)


def new_model(site: SiteFacts | None = None, ts: float = T0) -> tuple[StationModel, list[Record]]:
    model = StationModel(CONFIG)
    return model, model.startup([], ts, site)


def feed(model: StationModel, events: Iterable[StationInput]) -> list[Record]:
    out: list[Record] = []
    for ev in events:
        out += model.feed(ev)
    check_bodies(out)
    return out


def alarms(records: list[Record], connector: str | None = "any") -> list[tuple[int, str]]:
    return [
        (r.body["code"], r.body["status"])
        for r in records
        if r.kind == "alarm" and (connector == "any" or r.connector_id == connector)
    ]


def events(records: list[Record], name: str) -> list[Record]:
    return [r for r in records if r.kind == "event" and r.body["event"] == name]


def facts_of(records: list[Record]) -> SiteFacts:
    """What a restart reads from the ledger (newest first)."""
    newest = list(reversed(records))
    return site_facts(of(newest, "event"), of(newest, "alarm"))


def reading(meter_id: str, ts: float, **values: float) -> MeterReading:
    return MeterReading(meter_id, ts, {"energy_import_kwh": 100.0, **values}, {}, {})


# ------------------------------------------------------------------ identity


def test_identity_is_recorded_and_a_change_across_a_restart_is_a_replacement() -> None:
    model, _ = new_model()
    first = feed(model, [MeterIdentity("dc1", T0 + 1, ID)])
    [identity] = events(first, "meter_identity")
    assert identity.connector_id == DC
    assert identity.body["details"] == {"meter_id": "dc1", "identity": ID}
    assert alarms(first) == []

    # the same meter after a restart: recorded again, nothing raised
    model2, _ = new_model(facts_of(first), T0 + 100)
    again = feed(model2, [MeterIdentity("dc1", T0 + 101, ID)])
    assert alarms(again) == [] and len(events(again, "meter_identity")) == 1

    # another meter after the next restart: meter_replaced and alarm 9107
    swapped = {**ID, "serial": "000000000999"}
    model3, _ = new_model(facts_of(first + again), T0 + 200)
    out = feed(model3, [MeterIdentity("dc1", T0 + 201, swapped)])
    [replaced] = events(out, "meter_replaced")
    assert replaced.body["details"]["previous"] == ID
    assert replaced.body["details"]["current"] == swapped
    assert alarms(out, DC) == [(codes.METER_REPLACED, "raised")]
    [alarm] = of(out, "alarm")
    assert "serial 000000000001 → 000000000999" in alarm.body["message"]
    assert alarm.body["type"] == codes.SEAL_TYPE


def test_replacement_between_polls_is_one_event_and_one_alarm() -> None:
    model, _ = new_model()
    swapped = {**ID, "serial": "000000000999"}
    out = feed(
        model,
        [
            MeterIdentity("dc1", T0 + 1, ID),
            MeterReplaced("dc1", T0 + 20, ID, swapped),
            MeterIdentity("dc1", T0 + 20, swapped),  # the driver's identity after the change
        ],
    )
    assert len(events(out, "meter_replaced")) == 1
    assert alarms(out) == [(codes.METER_REPLACED, "raised")]
    # cleared at a reading once seal_clear_after_s (60 s) passed without a further event
    assert alarms(feed(model, [reading("dc1", T0 + 79)])) == []
    assert alarms(feed(model, [reading("dc1", T0 + 80)])) == [(codes.METER_REPLACED, "cleared")]


# ------------------------------------------------------------------ counters


def test_counters_that_moved_while_evgw_was_down_raise_their_alarms() -> None:
    model, _ = new_model()
    first = feed(model, [MeterCounters("dc1", T0 + 1, COUNTS, dict.fromkeys(COUNTS))])
    [baseline] = events(first, "meter_counters")
    assert baseline.body["details"]["counts"] == COUNTS
    assert baseline.body["details"]["previous"] is None
    assert alarms(first) == []

    later = {**COUNTS, "meter_cover_open": 3, "power_down": 5}
    model2, _ = new_model(facts_of(first), T0 + 500)
    out = feed(
        model2,
        [MeterCounters("dc1", T0 + 501, later, {**dict.fromkeys(COUNTS), "power_down": T0 + 300})],
    )
    [counted] = events(out, "meter_counters")
    assert counted.body["details"]["rose"] == {"meter_cover_open": [1, 3], "power_down": [4, 5]}
    assert sorted(alarms(out, DC)) == [
        (codes.METER_COVER_OPENED, "raised"),
        (codes.METER_POWER_DOWN, "raised"),
    ]
    power = next(r for r in of(out, "alarm") if r.body["code"] == codes.METER_POWER_DOWN)
    assert "4→5 while evgw was not running" in power.body["message"]
    assert power.body["level"] == 3


def test_tamper_during_a_session_flags_its_order_and_clears_after_a_quiet_time() -> None:
    model, _ = new_model()
    # an AC session: the meter's current opens it (no CAN on the AC connector)
    out = feed(model, [reading("ac1", T0 + 1, current_a=16.0, power_w=3600.0)])
    session_id = model.connectors[AC].session.session_id  # type: ignore[union-attr]
    counts = {"meter_cover_open": 1}
    tamper = MeterTamper("ac1", T0 + 5, "meter_cover_open", 1, 2, T0 + 3)
    out = feed(model, [MeterCounters("ac1", T0 + 2, counts, {"meter_cover_open": None}), tamper])
    assert alarms(out, AC) == [(codes.METER_COVER_OPENED, "raised")]
    [alarm] = of(out, "alarm")
    assert "meter_cover_open 1→2" in alarm.body["message"]
    assert session_id in alarm.body["message"]
    assert f"latest event {iso_ts(T0 + 3)}" in alarm.body["message"]  # the meter's time
    [ev] = events(out, "meter_tamper")
    assert ev.body["details"]["session_id"] == session_id
    assert ev.body["details"]["counts"] == {"meter_cover_open": 2}

    # a second opening while the alarm is up: cleared and raised again (one raise per event)
    again = MeterTamper("ac1", T0 + 30, "meter_cover_open", 2, 3, T0 + 29)
    assert alarms(feed(model, [again]), AC) == [
        (codes.METER_COVER_OPENED, "cleared"),
        (codes.METER_COVER_OPENED, "raised"),
    ]
    # the session ends; the order is written at the next reading and carries the flag
    out = feed(model, [reading("ac1", T0 + 40, current_a=0.0)])
    out += model.tick(T0 + 43)
    out += feed(model, [reading("ac1", T0 + 44, current_a=0.0)])
    [order] = of(out, "charge_order", AC)
    assert order.body["stop_bits"]["meter.tamper.meter_cover_open"] == 1
    assert any("meter_cover_open counted 1→2" in n for n in order.body["notes"])
    # quiet for seal_clear_after_s after the last event (ac1: default 3600 s)
    assert alarms(feed(model, [reading("ac1", T0 + 3629)])) == []
    assert alarms(feed(model, [reading("ac1", T0 + 3630)])) == [
        (codes.METER_COVER_OPENED, "cleared")
    ]


def test_a_tamper_alarm_left_raised_by_a_previous_run_is_cleared_by_this_one() -> None:
    model, _ = new_model()
    out = feed(model, [MeterTamper("dc1", T0 + 5, "terminal_cover_open", 0, 1, None)])
    assert alarms(out) == [(codes.METER_TERMINAL_COVER_OPENED, "raised")]
    facts = facts_of(out)
    assert facts.seals["dc1"].counts == {"terminal_cover_open": 1}
    model2, _ = new_model(facts, T0 + 30)
    assert alarms(feed(model2, [reading("dc1", T0 + 40)])) == []
    assert alarms(feed(model2, [reading("dc1", T0 + 65)])) == [
        (codes.METER_TERMINAL_COVER_OPENED, "cleared")
    ]


def test_clock_drift_raises_and_clears_also_across_a_restart() -> None:
    model, _ = new_model()
    out = feed(model, [MeterClockDrift("main", T0 + 1, 600.0, 300.0, True)])
    assert alarms(out, None) == [(codes.METER_CLOCK_DRIFT, "raised")]  # station main: no connector
    assert "+600 s" in of(out, "alarm")[0].body["message"]
    # the driver reports the drift's state at its first read after a restart
    model2, _ = new_model(facts_of(out), T0 + 50)
    cleared = feed(model2, [MeterClockDrift("main", T0 + 51, 1.0, 300.0, False)])
    assert alarms(cleared, None) == [(codes.METER_CLOCK_DRIFT, "cleared")]


# ------------------------------------------------------------------ site inputs


def changed(input_id: str, active: bool, *connectors: str, role: str, initial: bool = False):
    return InputChanged(input_id, T0 + 10, role, active, tuple(connectors), initial)


def test_each_role_raises_its_code_where_the_input_belongs() -> None:
    model, _ = new_model()
    quiet = feed(
        model,
        [
            changed("door-dc", False, DC, role="door", initial=True),
            changed("fan", False, role="custom", initial=True),
        ],
    )
    assert quiet == []  # a first state that is inactive raises nothing
    out = feed(
        model,
        [
            changed("door-dc", True, DC, role="door"),
            changed("estop-site", True, role="estop", initial=True),
            changed("flood", True, role="flood"),
            changed("box-seal", True, DC, AC, role="seal"),
            changed("fan", True, role="custom"),
        ],
    )
    assert alarms(out, DC) == [(26, "raised"), (codes.SEAL_SWITCH_OPENED, "raised")]
    assert alarms(out, AC) == [(codes.SEAL_SWITCH_OPENED, "raised")]
    assert alarms(out, None) == [(2, "raised"), (codes.FLOOD, "raised")]
    [fan] = events(out, "site_input")
    assert fan.body["details"]["description"] == "room fan running" and fan.connector_id is None
    door = next(r for r in out if r.kind == "alarm" and r.body["code"] == 26)
    assert door.body["message"].endswith("input door-dc (door) active")
    out = feed(model, [changed("door-dc", False, DC, role="door")])
    assert alarms(out, DC) == [(26, "cleared")]


def test_a_silent_module_is_its_own_fault_never_a_closed_door() -> None:
    model, _ = new_model()
    opened = feed(model, [changed("door-dc", True, DC, role="door", initial=True)])
    fault = InputFault("di1", T0 + 20, True, "no answer (timeout)", ("door-dc", "estop-site"))
    out = feed(model, [fault])
    assert alarms(out) == [(codes.INPUT_SOURCE_FAULT, "raised")]
    assert "keep their last state (door-dc, estop-site)" in out[0].body["message"]
    assert model.connectors[DC].alarms.is_active(26)  # the door alarm stays up
    back = feed(model, [InputFault("di1", T0 + 30, False, "answers", ())])
    assert alarms(back) == [(codes.INPUT_SOURCE_FAULT, "cleared")]

    # a restart: the ledger left the door and a module fault raised; the first states clear
    left = feed(model, [InputFault("di1", T0 + 40, True, "no answer (timeout)", ("door-dc",))])
    model2, _ = new_model(facts_of(opened + out + back + left), T0 + 60)
    out2 = feed(model2, [changed("door-dc", False, DC, role="door", initial=True)])
    assert sorted(alarms(out2)) == [(26, "cleared"), (codes.INPUT_SOURCE_FAULT, "cleared")]


# ------------------------------------------------------------------ grid connection


def test_main_meter_over_voltage_and_overload_with_hysteresis() -> None:
    model, _ = new_model()
    steps = [
        (dict(voltage_l1_v=230.0, voltage_l2_v=250.0, power_w=50_000.0), [(201, "raised")]),
        (dict(voltage_l1_v=240.0, power_w=120_000.0), [(202, "raised")]),  # 240 > 237.2: held
        (dict(voltage_l1_v=236.0, power_w=97_000.0), [(201, "cleared")]),  # 97 > 95 kW: held
        (dict(voltage_l1_v=236.0, power_w=90_000.0), [(202, "cleared")]),
    ]
    for n, (values, expected) in enumerate(steps):
        out = feed(model, [reading("main", T0 + 5 * n, **values)])
        assert alarms(out, None) == expected, (n, out)
    assert all(r.connector_id is None for r in of(out, "alarm"))


# ------------------------------------------------------------------ a simulated DC session


def test_cover_opened_during_a_simulated_dc_session_flags_its_order() -> None:
    s = generate(VehicleProfile(capacity_ah=20.0, soc_start_pct=30, soc_target_pct=80))
    t_rel = s.curve[0].ts - s.frames[0].ts + 30  # half a minute into charging
    cfg = make_config(meters=True, protocol="dlt645")
    plan = MeterPlan(protocol="dlt645", cover_open_at_s=t_rel)
    records = run_sim(s, cfg, meter=plan).records
    check_bodies(records)
    assert alarms(records, DC) == [(codes.METER_COVER_OPENED, "raised")]
    [order] = of(records, "charge_order", DC)
    [alarm] = of(records, "alarm", DC)
    assert f"during session {order.body['session_id']}" in alarm.body["message"]
    assert alarm.body["bms"]["session_id"] == order.body["session_id"]  # a DC alarm's BmsInfo
    assert order.body["stop_bits"]["meter.tamper.meter_cover_open"] == 1
    assert order.body["energy_source"] == "meter"
    assert [r.body["event"] for r in of(records, "event", DC)] == [
        "meter_identity",
        "meter_counters",
        "meter_tamper",
    ]


# ------------------------------------------------------------------ what the ledger holds

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
SEAL_NAMES = st.sampled_from(["meter_identity", "meter_counters", "meter_tamper", "other"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "event": SEAL_NAMES,
                "details": JSON
                | st.fixed_dictionaries(
                    {"meter_id": st.just("dc1"), "counts": JSON, "identity": JSON}
                ),
            }
        ),
        max_size=4,
    ),
    st.lists(
        st.fixed_dictionaries(
            {
                "code": JSON | st.sampled_from([26, 9101]),
                "status": JSON | st.just("raised"),
                "causes": JSON | st.just(["input.door-dc", "seal.dc1.9101"]),
            }
        ),
        max_size=4,
    ),
)
def test_whatever_the_ledger_holds_the_start_never_fails(
    events_: list[dict[str, Any]], alarms_: list[dict[str, Any]]
) -> None:
    def record(kind: str, body: dict[str, Any]) -> Record:
        return Record(kind=kind, ts=iso_ts(T0), station_id="S", body=body, connector_id=DC)

    facts = site_facts([record("event", b) for b in events_], [record("alarm", b) for b in alarms_])
    for seal in facts.seals.values():
        assert all(type(v) is int for v in seal.counts.values())
        assert all(isinstance(v, str) for v in seal.identity.values())
    model, _ = new_model(facts, T0)
    check_bodies(feed(model, [MeterIdentity("dc1", T0 + 1, ID), reading("dc1", T0 + 7200)]))
