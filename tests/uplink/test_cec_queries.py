"""Serving the platform's queries (#15 item 9): the test platform's client side asks a
gateway uplink that serves them, with good and bad input."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.ledger import Ledger
from agent.records.bodies import ConnectorStatsBody, StationStatsBody, decode_body
from agent.uplink.cec.codec import CecSecrets
from agent.uplink.cec.plugin import parse_secrets, serve_settings, tariff_of
from agent.uplink.cec.rules import STATION_INFO, validate
from agent.uplink.cec.server import ServeSettings
from agent.uplink.cec.uplink import CecUplink
from sim.platform_client import PlatformQueries
from tests.uplink.conftest import (
    OPERATOR_ID,
    STATION,
    FakeClock,
    Pki,
    alarm_record,
    bms_body,
    event_record,
    identity_record,
    record,
    status_record,
)
from tests.uplink.test_cec_rules import GOOD
from tests.uplink.test_cec_uplink import make_settings

PLATFORM = "MA5DA0053"
INBOUND = CecSecrets("inb0data0secret1", "inb0data0iv00001", "inb0sig0secret01")
SERVE = ServeSettings(
    host="127.0.0.1",
    port=0,
    base_path="/evcs/v1/",
    platform_operator_id=PLATFORM,
    operator_secret="inboundopsecret1",
    secrets=INBOUND,
)
CONNECTORS = (("EQ1", "C1"), ("EQ1", "C2"))


@pytest.fixture
async def served(
    ledger: Ledger, clock: FakeClock
) -> AsyncIterator[tuple[CecUplink, PlatformQueries]]:
    await ledger.append(identity_record())
    await ledger.append(status_record(status=1))
    await ledger.append(status_record(status=3, offset_s=5))
    await ledger.append(record("bms_process", bms_body()))
    uplink = CecUplink(
        make_settings("http://127.0.0.1:9/", connectors=CONNECTORS),
        ledger,
        clock=clock,
        serve=SERVE,
    )
    assert uplink.queries is not None
    uplink.queries.start()
    client = PlatformQueries(
        f"http://127.0.0.1:{uplink.queries.port}/evcs/v1/", PLATFORM, "inboundopsecret1", INBOUND
    )
    try:
        yield uplink, client
    finally:
        uplink.queries.stop()


async def ask(client: PlatformQueries, interface: str, data: object) -> object:
    return await asyncio.to_thread(client.query, interface, data)


async def test_token_station_info_status_and_bms(
    served: tuple[CecUplink, PlatformQueries],
) -> None:
    uplink, client = served
    info = await ask(client, "query_stations_info", {"PageNo": 1, "PageSize": 10})
    assert info.ret == 0 and info.reply["ItemSize"] == 1  # type: ignore[attr-defined]
    station = info.reply["StationInfos"][0]  # type: ignore[attr-defined]
    assert station["StationID"] == STATION and validate(station, STATION_INFO) is None
    for name in ("query_station_status", "query_stations_status"):
        status = await ask(client, name, {"StationIDs": [STATION, "OTHER"]})
        assert status.ret == 0, status  # type: ignore[attr-defined]
        (only,) = status.reply["StationStatusInfos"]  # type: ignore[attr-defined]
        assert [c["Status"] for c in only["ConnectorStatusInfos"]] == [3]  # newest, C1 only
    bms = await ask(client, "query_bms_info", {"ConnectorID": "C1"})
    assert bms.reply["BmsInfo"]["TemptureH"] == 31  # type: ignore[attr-defined]
    quiet = await ask(client, "query_bms_info", {"ConnectorID": "C2"})
    assert quiet.reply == {"ConnectorID": "C2", "Status": 1}  # type: ignore[attr-defined]
    assert uplink.queries is not None and uplink.queries.answered == {0: 6}


async def test_bad_input_is_answered_per_the_spec(
    served: tuple[CecUplink, PlatformQueries],
) -> None:
    uplink, client = served
    no_token = await asyncio.to_thread(
        client.post, "query_stations_info", client.sealed({"PageNo": 1})
    )
    assert no_token.ret == 4002
    token = (await asyncio.to_thread(client.fetch_token)).reply["AccessToken"]  # type: ignore[index]
    wrong_key = replace(client, secrets=CecSecrets(INBOUND.data_secret, INBOUND.data_iv, "x" * 16))
    bad_sig = await asyncio.to_thread(
        client.post, "query_bms_info", wrong_key.sealed({"ConnectorID": "C1"}), token
    )
    assert bad_sig.ret == 4001
    stranger = replace(client, operator_id="MA0000000")
    assert (await asyncio.to_thread(stranger.fetch_token)).ret == 4003
    wrong_secret = replace(client, operator_secret="nope")
    assert (await asyncio.to_thread(wrong_secret.fetch_token)).ret == 4003
    garbage = await asyncio.to_thread(client.post, "query_bms_info", b"[[[" * 100, token)
    assert garbage.ret == 4003
    unknown = await asyncio.to_thread(client.query, "query_bms_info", {"ConnectorID": "C9"})
    assert unknown.ret == 4004 and "C9" in unknown.msg
    again = client.sealed({"ConnectorID": "C1"}, stamp_seq=("20250101000000", "0001"))
    first = await asyncio.to_thread(client.post, "query_bms_info", again, token)
    replayed = await asyncio.to_thread(client.post, "query_bms_info", again, token)
    assert first.ret == replayed.ret == 0  # a repeated Seq is logged, not refused (spec §9)
    assert (await asyncio.to_thread(client.post, "query_nothing", b"{}", token)).status == 404
    big = b"x" * (10 * 1024 * 1024)
    url = client.base_url + "query_bms_info"
    huge = await asyncio.to_thread(httpx.post, url, content=big, timeout=10)
    assert huge.status_code == 413
    fine = await ask(client, "query_bms_info", {"ConnectorID": "C1"})
    assert fine.ret == 0  # type: ignore[attr-defined]
    assert uplink.queries is not None and uplink.queries.answered[4003] == 3


OUTBOUND = {
    "operator_secret": "OPSECRET12345678",
    "data_secret": "DATASECRET123456",
    "data_iv": "DATAIV1234567890",
    "sig_secret": "SIGSECRET1234567",
}


def test_inbound_secrets_are_all_or_none() -> None:
    problems: list[str] = []
    parsed = parse_secrets(OUTBOUND, problems)
    assert problems == [] and parsed.inbound() is None
    parse_secrets({**OUTBOUND, "inbound_sig_secret": "short"}, problems)
    assert "cec.inbound_sig_secret: must be 16 ASCII characters, found 5 bytes" in problems
    assert "cec.inbound_data_secret: required, a non-empty string" in problems
    full = {**OUTBOUND, **{f"inbound_{k}": v.lower() for k, v in OUTBOUND.items()}}
    problems = []
    inbound = parse_secrets(full, problems).inbound()
    assert problems == [] and inbound is not None and inbound.sig_secret == "sigsecret1234567"


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ('serve_listen = "nope"', "uplinks.cec.serve_listen"),
        ('serve_listen = "127.0.0.1:99999"', "port outside 1..65535"),
        ('serve_client_ca_file = "/ca.pem"', "mutual TLS needs serve_cert_file"),
        ('serve_cert_file = "/c.pem"', "serve_cert_file and serve_key_file must be given together"),
        ('serve_base_path = "evcs"', "uplinks.cec.serve_base_path"),
    ],
)
def test_broken_serve_keys(lines: str, needle: str) -> None:
    text = GOOD.replace(
        'platform_operator_id = "MA5GOV001"\n', f'platform_operator_id = "MA5GOV001"\n{lines}\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="evgw.toml")
    assert any(needle in p for p in info.value.problems), info.value.problems


def test_serve_settings_from_the_config(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(
        GOOD.replace(
            'platform_operator_id = "MA5GOV001"\n',
            'platform_operator_id = "MA5GOV001"\nserve_listen = "0.0.0.0:8803"\n',
        )
    )
    section = config.uplinks.cec
    assert section is not None
    full = {**OUTBOUND, **{f"inbound_{k}": v.lower() for k, v in OUTBOUND.items()}}
    serve = serve_settings(config, section, parse_secrets(full, []))
    assert serve is not None and (serve.host, serve.port) == ("0.0.0.0", 8803)
    assert serve.platform_operator_id == "MA5GOV001"
    assert serve_settings(config, section, parse_secrets(OUTBOUND, [])) is None
    assert "no inbound_* secrets" in caplog.text


async def test_mutual_tls_and_a_port_in_use(
    ledger: Ledger, clock: FakeClock, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await ledger.append(identity_record())
    tls = replace(SERVE, cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca)
    uplink = CecUplink(
        make_settings("http://127.0.0.1:9/", connectors=CONNECTORS), ledger, clock=clock, serve=tls
    )
    uplink._start_queries()
    assert uplink.queries is not None
    try:
        url = f"https://127.0.0.1:{uplink.queries.port}/evcs/v1/"
        with_cert = ssl.create_default_context(cafile=str(pki.ca))
        with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        client = PlatformQueries(url, PLATFORM, "inboundopsecret1", INBOUND, verify=with_cert)
        info = await asyncio.to_thread(client.query, "query_stations_info", {})
        assert info.ret == 0 and info.reply["ItemSize"] == 1
        anonymous = replace(client, verify=ssl.create_default_context(cafile=str(pki.ca)))
        anonymous.token = None
        with pytest.raises(httpx.HTTPError):
            await asyncio.to_thread(anonymous.fetch_token)
        taken = replace(SERVE, port=uplink.queries.port)
        second = CecUplink(
            make_settings("http://127.0.0.1:9/", connectors=CONNECTORS),
            ledger,
            clock=clock,
            serve=taken,
        )
        second._start_queries()
        assert second.queries is None and "cannot serve T/CEC queries" in caplog.text
    finally:
        uplink.queries.stop()
    assert "Traceback" not in caplog.text


async def test_alarms_events_statistics_and_frequency(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    await ledger.append(alarm_record(code=101))  # raised, still raised
    await ledger.append(alarm_record(code=3, with_bms=False))
    await ledger.append(alarm_record(code=3, status="cleared", with_bms=False))
    await ledger.append(event_record(7001))
    await ledger.append(event_record(None))  # no T/CEC code: not the platform's
    day = StationStatsBody(
        period="day",
        period_start_ts="2024-12-31T16:00:00.000Z",
        period_end_ts="2025-01-01T16:00:00.000Z",
        connectors=(
            ConnectorStatsBody(connector_id="C1", equipment_id="EQ1", energy_kwh=30.25, sessions=2),
        ),
    )
    await ledger.append(record("station_stats", day, connector=None, offset_s=5 * 3600 + 60))
    cadence = tmp_path / "cec-cadence.json"
    settings = make_settings("http://127.0.0.1:9/", connectors=CONNECTORS, cadence_file=cadence)
    uplink = CecUplink(settings, ledger, clock=clock, serve=SERVE)
    assert uplink.queries is not None
    uplink.queries.start()
    client = PlatformQueries(
        f"http://127.0.0.1:{uplink.queries.port}/evcs/v1/", PLATFORM, "inboundopsecret1", INBOUND
    )
    try:
        head = {"StationID": STATION, "OperatorID": OPERATOR_ID}
        alarms = await ask(client, "query_alarm_info", {**head, "EquipmentID": "EQ1"})
        assert [a["AlarmCode"] for a in alarms.reply["AlarmInfos"]] == [101]
        window = {**head, "StartTime": "2025-01-01 10:00:00", "EndTime": "2025-01-01 12:00:00"}
        events = await ask(client, "query_event_info", window)
        assert [e["EventCode"] for e in events.reply["EventInfos"]] == [7001]
        early = {**window, "EndTime": "2025-01-01 10:30:00"}
        assert (await ask(client, "query_event_info", early)).reply == {"EventInfos": []}
        days = {"StationID": STATION, "StartTime": "2025-01-01", "EndTime": "2025-01-01"}
        stats = (await ask(client, "query_station_stats", days)).reply["StationStats"]
        assert stats["StationElectricity"] == Decimal("30.3")
        (eq,) = stats["EquipmentStatsInfos"]
        assert [c["ConnectorElectricity"] for c in eq["ConnectorStatsInfos"]] == [
            Decimal("30.3"), Decimal("0.0")
        ]  # fmt: skip
        charge = (await ask(client, "query_station_charge_stats", days)).reply["StationStats"]
        assert charge["StationChargeElectricity"] == Decimal("30.3")
        out = (await ask(client, "query_station_discharge_stats", days)).reply["StationStats"]
        assert out["StationDischargeElectricity"] == Decimal("0.0")
        bad = await ask(client, "query_event_info", {**head, "StartTime": "yesterday"})
        assert bad.ret == 4004 and "StartTime" in bad.msg
        wide = {**days, "EndTime": "2025-06-01"}
        assert (await ask(client, "query_station_stats", wide)).ret == 4004
        assert (await ask(client, "query_frequency", {"ParaFrequency": 30})).reply == {"Status": 0}
        assert (await ask(client, "query_frequency", {"ParaFrequency": 1})).reply == {"Status": 1}
        assert (await ask(client, "query_frequency", {"ParaFrequency": "x"})).ret == 4004
    finally:
        uplink.queries.stop()
    assert uplink.periodic.interval_s == 30.0
    restarted = CecUplink(settings, ledger, clock=clock)
    assert restarted.periodic.interval_s == 30.0  # kept across a restart
    changed = [
        decode_body("event", r.body)
        for r in await ledger.find("event")
        if r.body["event"] == "push_frequency_changed"
    ]
    assert len(changed) == 1 and changed[0].details["interval_s"] == 30


async def test_business_policy_from_the_configured_tariff(ledger: Ledger, clock: FakeClock) -> None:
    config = parse_config(
        GOOD.replace(
            'periods = [{ start = "00:00", type = "flat", elec_price = 0.62, service_price = 0.8 }]',
            'periods = [{ start = "00:00", type = "valley", elec_price = 0.31, service_price = 0.8 },'
            ' { start = "08:00", type = "peak", elec_price = 1.0215, service_price = 0.8 }]',
        )
    )
    serve = replace(SERVE, tariff_of=tariff_of(config))
    uplink = CecUplink(
        make_settings("http://127.0.0.1:9/", connectors=(("E1", "C1"),)),
        ledger,
        clock=clock,
        serve=serve,
    )
    assert uplink.queries is not None
    uplink.queries.start()
    client = PlatformQueries(
        f"http://127.0.0.1:{uplink.queries.port}/evcs/v1/", PLATFORM, "inboundopsecret1", INBOUND
    )
    try:
        seq = OPERATOR_ID + "A" * 18
        answer = await ask(
            client, "query_equip_business_policy", {"EquipBizSeq": seq, "ConnectorID": "C1"}
        )
        assert answer.reply == {
            "EquipBizSeq": seq, "ConnectorID": "C1", "SuccStat": 0, "FailReason": 0, "SumPeriod": 2,
            "PolicyInfos": [
                {"StartTime": "000000", "ElecPrice": Decimal("0.3100"), "SevicePrice": Decimal("0.8000")},
                {"StartTime": "080000", "ElecPrice": Decimal("1.0215"), "SevicePrice": Decimal("0.8000")},
            ],
        }  # fmt: skip
        short = await ask(
            client, "query_equip_business_policy", {"EquipBizSeq": "x", "ConnectorID": "C1"}
        )
        assert short.ret == 4004 and "EquipBizSeq" in short.msg
    finally:
        uplink.queries.stop()
