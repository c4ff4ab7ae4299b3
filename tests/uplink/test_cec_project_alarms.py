"""The T/CEC carrier of the project's own alarm codes (9001–9299): ``[uplinks.cec]
project_alarms`` validated with key paths, each group mapped to its carrier, and an audit
alarm arriving at the real test receiver as the configured carrier."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.ledger import Ledger
from agent.records.bodies import AlarmBody
from agent.records.envelope import Record, StoredRecord
from agent.station.codes import BILLED_ENERGY_MISMATCH, INPUT_SOURCE_FAULT, PROJECT_TYPES
from agent.uplink.cec.config import PROJECT_GROUPS
from agent.uplink.cec.mapping import MappingContext, notification_for
from agent.uplink.cec.plugin import cec_settings, parse_secrets
from agent.uplink.cec.project_alarms import ProjectCarrier
from agent.uplink.cec.uplink import CecUplink
from sim.platform import PlatformServer
from sim.platform_client import PlatformQueries
from tests.foundation.test_config import BASE, TARIFF
from tests.uplink.conftest import OPERATOR_ID, STATION, FakeClock, record
from tests.uplink.test_cec_queries import CONNECTORS, INBOUND, PLATFORM, SERVE, ask
from tests.uplink.test_cec_uplink import drain, make_settings, make_uplink

CEC = '[uplinks.cec]\nbase_url = "https://x/"\nplatform_operator_id = "MA5GOV001"\n'
NOTE = "billed energy differs from the metered order beyond tolerance: metered 30.13 kWh, billed 31.00 kWh"


def config_with(lines: str) -> str:
    return BASE + TARIFF + CEC + lines + "\n"


def audit_record(code: int = BILLED_ENERGY_MISMATCH, group: str = "energy_audit") -> Record:
    body = AlarmBody(code=code, type=group, level=2, status="raised", message=NOTE)
    return record("alarm", body)


def stored(rec: Record, seq: int) -> StoredRecord:
    fields = {f: getattr(rec, f) for f in rec.__struct_fields__}
    return StoredRecord(**fields, seq=seq, id=f"gw:{seq}", prev="0" * 64, hash="1" * 64)


def test_groups_are_the_station_models() -> None:
    assert PROJECT_GROUPS == PROJECT_TYPES


def test_defaults() -> None:
    cec = parse_config(config_with("")).uplinks.cec
    assert cec is not None
    settings = cec_settings(parse_config(config_with("")), cec, parse_secrets({}, []))
    assert settings.project_carriers == {
        "energy_audit": ProjectCarrier("event", 7002),
        "meter_seal": ProjectCarrier("event", 7002),
    }


def test_configured_carriers_and_codes() -> None:
    config = parse_config(
        config_with(
            'project_alarms = { energy_audit = "alarm", site_device = "event" }\n'
            "project_alarm_codes = { energy_audit = 27 }\n"
            "project_event_codes = { site_device = 7001 }"
        )
    )
    assert config.uplinks.cec is not None
    settings = cec_settings(config, config.uplinks.cec, parse_secrets({}, []))
    assert settings.project_carriers == {
        "energy_audit": ProjectCarrier("alarm", 27),
        "meter_seal": ProjectCarrier("event", 7002),
        "site_device": ProjectCarrier("event", 7001),
    }


BROKEN = [
    (
        'project_alarms = { energy_audit = "event", bogus = "event" }',
        "uplinks.cec.project_alarms.bogus: unknown group of project alarm codes; known: energy_audit, meter_seal, site_device",
    ),
    (
        'project_alarms = { energy_audit = "pigeon" }',
        "uplinks.cec.project_alarms.energy_audit: expected one of 'event', 'alarm', 'off', found 'pigeon'",
    ),
    (
        'project_alarms = { meter_seal = "alarm" }',
        'uplinks.cec.project_alarm_codes.meter_seal: required with project_alarms.meter_seal = "alarm"',
    ),
    (
        'project_alarms = { meter_seal = "alarm" }\nproject_alarm_codes = { meter_seal = 9101 }',
        "uplinks.cec.project_alarm_codes.meter_seal: 9101 is not a Shenzhen AlarmCode",
    ),
    (
        "project_alarm_codes = { energy_audit = 3 }",
        'uplinks.cec.project_alarm_codes.energy_audit: read only when project_alarms.energy_audit = "alarm"',
    ),
    (
        "project_event_codes = { site_device = 7002 }",
        'uplinks.cec.project_event_codes.site_device: read only when project_alarms.site_device = "event"',
    ),
    (
        "project_event_codes = { energy_audit = 12 }",
        "uplinks.cec.project_event_codes.energy_audit: expected a T/CEC EventCode of type 6 'other' (6001-7999",
    ),
    (
        "project_alarm_codes = { nope = 3 }",
        "uplinks.cec.project_alarm_codes.nope: unknown group",
    ),
    ('project_alarms = "event"', "uplinks.cec.project_alarms: expected `object`"),
]


@pytest.mark.parametrize(("lines", "expected"), BROKEN)
def test_broken_carriers_are_reported(lines: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(lines), source="test.toml")
    assert any(expected in p for p in info.value.problems), info.value.problems


CTX = MappingContext(OPERATOR_ID, OPERATOR_ID, "Station")


def test_event_carrier_keeps_code_meaning_and_figures() -> None:
    note = notification_for(stored(audit_record(), 1), CTX)
    assert note is not None and note.interface == "notification_eventInfo"
    (event,) = note.data["EventInfos"]
    assert (event["EventType"], event["EventCode"]) == (6, 7002)
    assert event["NoteString"] == f"9008 raised: {NOTE}"


def test_alarm_carrier_and_off() -> None:
    ctx = MappingContext(
        OPERATOR_ID,
        OPERATOR_ID,
        "Station",
        project_carriers={"energy_audit": ProjectCarrier("alarm", 27)},
    )
    note = notification_for(stored(audit_record(), 1), ctx)
    assert note is not None and note.interface == "notification_alarmInfo"
    (info,) = note.data["AlarmInfos"]
    assert (info["AlarmCode"], info["AlarmType"], info["AlarmLevel"], info["AlarmStatus"]) == (
        27,
        1,
        2,
        1,
    )
    assert info["NoteString"].startswith("9008 raised: billed energy")
    site = stored(audit_record(INPUT_SOURCE_FAULT, "site_device"), 2)
    assert notification_for(site, CTX) is None
    assert (
        notification_for(
            stored(audit_record(), 3),
            MappingContext(OPERATOR_ID, OPERATOR_ID, "S", project_carriers={}),
        )
        is None
    )


@pytest.mark.parametrize(
    ("carriers", "interface"),
    [
        ({"energy_audit": ProjectCarrier("event", 7002)}, "notification_eventInfo"),
        ({"energy_audit": ProjectCarrier("alarm", 27)}, "notification_alarmInfo"),
    ],
)
async def test_audit_alarm_reaches_the_receiver_as_its_carrier(
    platform: PlatformServer,
    ledger: Ledger,
    clock: FakeClock,
    tmp_path: Path,
    carriers: dict[str, ProjectCarrier],
    interface: str,
) -> None:
    await ledger.append(audit_record())
    await ledger.append(audit_record(INPUT_SOURCE_FAULT, "site_device"))
    uplink, _naps = make_uplink(platform, ledger, clock, project_carriers=carriers)
    async with uplink:
        await drain(uplink)
    accepted = platform.receiver.accepted()
    assert [row["interface"] for row in accepted] == [interface]
    data = accepted[0]["data"]
    item = (data.get("EventInfos") or data["AlarmInfos"])[0]
    assert item["NoteString"] == f"9008 raised: {NOTE}"
    assert (uplink.stats.acked, uplink.stats.parked) == (2, 0)


async def test_queries_answer_project_alarms_by_their_carrier(
    ledger: Ledger, clock: FakeClock
) -> None:
    """query_event_info lists an event-carried audit alarm; query_alarm_info an alarm-carried one."""
    await ledger.append(audit_record())
    await ledger.append(audit_record(INPUT_SOURCE_FAULT, "site_device"))
    head = {"StationID": STATION, "OperatorID": OPERATOR_ID}
    window = {**head, "StartTime": "2025-01-01 10:00:00", "EndTime": "2025-01-01 12:00:00"}
    for carriers, interface, key in (
        ({"energy_audit": ProjectCarrier("event", 7002)}, "query_event_info", "EventInfos"),
        ({"energy_audit": ProjectCarrier("alarm", 27)}, "query_alarm_info", "AlarmInfos"),
    ):
        settings = make_settings(
            "http://127.0.0.1:9/", connectors=CONNECTORS, project_carriers=carriers
        )
        uplink = CecUplink(settings, ledger, clock=clock, serve=SERVE)
        assert uplink.queries is not None
        uplink.queries.start()
        client = PlatformQueries(
            f"http://127.0.0.1:{uplink.queries.port}/evcs/v1/",
            PLATFORM,
            "inboundopsecret1",
            INBOUND,
        )
        try:
            reply = (await ask(client, interface, window if key == "EventInfos" else head)).reply
            assert [i["NoteString"] for i in reply[key]] == [f"9008 raised: {NOTE}"]
        finally:
            uplink.queries.stop()


def test_a_carrier_without_its_interface_is_a_warning() -> None:
    from agent.uplink.cec.config import warnings

    config = parse_config(config_with('interfaces = ["notification_charge_order_info"]'))
    assert config.uplinks.cec is not None
    assert warnings(config, config.uplinks.cec) == [
        "uplinks.cec.project_alarms.energy_audit: 'event' needs notification_eventInfo in "
        "uplinks.cec.interfaces; those alarms stay operator-only",
        "uplinks.cec.project_alarms.meter_seal: 'event' needs notification_eventInfo in "
        "uplinks.cec.interfaces; those alarms stay operator-only",
    ]
    default = parse_config(config_with(""))
    assert default.uplinks.cec is not None and warnings(default, default.uplinks.cec) == []
