"""The T/CEC uplink against the real test receiver: tokens, retries, parking, exactly-once."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path

import pytest

from agent.ledger import Ledger
from agent.records.bodies import decode_body
from agent.uplink.cec.mapping import ALL_INTERFACES
from agent.uplink.cec.uplink import CecSettings, CecUplink
from sim.platform import PlatformServer
from tests.uplink.conftest import (
    OPERATOR_ID,
    OPERATOR_SECRET,
    SECRETS,
    STATION,
    FakeClock,
    Pki,
    alarm_record,
    event_record,
    identity_record,
    meter_record,
    order_record,
    platform_settings,
    status_record,
)


def make_settings(base_url: str, **overrides: object) -> CecSettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "operator_id": OPERATOR_ID,
        "platform_operator_id": "MA5DA0053",
        "operator_secret": OPERATOR_SECRET,
        "data_secret": SECRETS.data_secret,
        "data_iv": SECRETS.data_iv,
        "sig_secret": SECRETS.sig_secret,
        "station_id": STATION,
        "station_name": "福田测试站",
        "retry_initial_s": 0.01,
        "retry_cap_s": 0.05,
        "token_retry_s": (0.0,),
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return CecSettings(**values)  # type: ignore[arg-type]


class Naps:
    """Injected sleep: records the back-off delays and yields once, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make_uplink(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock, **overrides: object
) -> tuple[CecUplink, Naps]:
    naps = Naps()
    uplink = CecUplink(
        make_settings(platform.base_url, **overrides),
        ledger,
        clock=clock,
        sleep=naps,
        rng=random.Random(7),
    )
    return uplink, naps


async def drain(uplink: CecUplink) -> None:
    while await uplink.drain_once():
        pass


async def test_every_kind_reaches_its_interface(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    records = [
        identity_record(),
        status_record(),
        alarm_record(),
        order_record(),
        event_record(),
        meter_record(),
        event_record(None),
    ]
    for rec in records:
        await ledger.append(rec)
    uplink, naps = make_uplink(platform, ledger, clock)
    async with uplink:
        await drain(uplink)
    got = {row["interface"]: row for row in platform.receiver.accepted()}
    assert set(got) == {
        "notification_stationInfo", "notification_stationStatus", "notification_alarmInfo",
        "notification_charge_order_info", "notification_eventInfo",
    }  # fmt: skip
    assert got["notification_alarmInfo"]["data"]["AlarmInfos"][0]["BmsInfo"]["TemptureH"] == 31
    assert got["notification_charge_order_info"]["data"]["TotalSeviceMoney"] == Decimal("15.50")
    assert naps.delays == []
    assert (uplink.stats.acked, uplink.stats.parked, uplink.stats.backlog) == (7, 0, 0)
    assert await ledger.cursor("cec") == 7
    assert uplink.tokens.fetches == 1


async def test_token_refreshed_before_expiry_and_after_revocation(
    tmp_path: Path, ledger: Ledger, clock: FakeClock
) -> None:
    server = PlatformServer(platform_settings(tmp_path, token_lifetime_s=7200.0), clock).start()
    try:
        uplink, _ = make_uplink(server, ledger, clock)
        async with uplink:
            await ledger.append(status_record())
            await drain(uplink)
            first = uplink.tokens.token
            assert first is not None and first.lifetime_s == 7200.0
            clock.advance(7200 - 721)  # inside max(60 s, 10 %) of the end: still used
            await ledger.append(status_record(offset_s=1))
            await drain(uplink)
            assert uplink.tokens.fetches == 1
            clock.advance(2)  # now within the refresh margin: a new token before expiry
            await ledger.append(status_record(offset_s=2))
            await drain(uplink)
            assert uplink.tokens.fetches == 2 and uplink.tokens.token != first
            server.receiver.revoke_tokens()  # the platform forgets it: 4002, refresh, resend once
            await ledger.append(status_record(offset_s=3))
            await drain(uplink)
            assert uplink.tokens.fetches == 3
            assert [r["ret"] for r in server.receiver.requests("notification_stationStatus")] == [
                0,
                0,
                0,
                4002,
                0,
            ]
            clock.advance(8000)  # expired while idle: fetched again before sending
            await ledger.append(status_record(offset_s=4))
            await drain(uplink)
            assert uplink.tokens.fetches == 4
        assert len(server.receiver.accepted()) == 5
    finally:
        server.stop()


async def test_second_4002_alarms_backs_off_and_keeps_the_record(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, naps = make_uplink(platform, ledger, clock)
    await ledger.append(status_record())
    platform.receiver.inject("ret", 4002, count=2, interface="notification_stationStatus")
    async with uplink:
        await drain(uplink)
    assert len(naps.delays) == 1 and uplink.tokens.fetches == 3
    assert "token refused again" in (uplink.stats.last_error or "")
    assert len(platform.receiver.accepted()) == 1 and uplink.stats.parked == 0


async def test_busy_and_server_errors_are_retried(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, naps = make_uplink(platform, ledger, clock)
    await ledger.append(alarm_record())
    r = platform.receiver
    r.inject("ret", -1, count=2, interface="notification_alarmInfo")
    r.inject("ret", 500, count=1, interface="notification_alarmInfo")
    r.inject("http", 500, count=1, interface="notification_alarmInfo")
    r.inject("wrong_sig", count=1, interface="notification_alarmInfo")
    async with uplink:
        await drain(uplink)
    assert len(naps.delays) == 5 and all(0 <= d <= 0.05 for d in naps.delays)
    assert uplink.stats.retries == 5
    assert len(r.accepted("notification_alarmInfo")) == 1
    assert (
        r.accepted()[0]["copies"] == 2
    )  # the wrongly signed answer hid a success: resent, deduped


async def test_4004_and_others_park_the_record_with_an_event_without_blocking(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    """4004 (and codes outside the table) park the record; 4003 parks the platform instead
    (tests/uplink/test_cec_parking.py)."""
    uplink, _ = make_uplink(platform, ledger, clock)
    bad = await ledger.append(
        alarm_record(code=99)
    )  # not a Shenzhen alarm code: the platform says 4004
    refused = await ledger.append(event_record())
    good = await ledger.append(status_record())
    platform.receiver.inject("ret", 4010, count=1, interface="notification_eventInfo")
    async with uplink:
        await drain(uplink)
        await drain(uplink)  # the parking alarms are records too (internal: not for T/CEC)
    assert uplink.stats.parked == 2
    assert [row["record_id"] for row in platform.receiver.accepted()] == [good.id]
    events = [decode_body("event", r.body) for r in await ledger.find("event")]
    parked = [e for e in events if e.event == "uplink_record_parked"]
    assert sorted(e.details["seq"] for e in parked) == [bad.seq, refused.seq]
    assert any("4004" in e.message and "AlarmCode" in e.message for e in parked)
    assert await ledger.backlog("cec") == 0


async def test_dropped_connections_and_slow_answers(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, naps = make_uplink(platform, ledger, clock, timeout_s=0.3)
    await ledger.append(order_record())
    platform.receiver.inject("drop", count=2, interface="notification_charge_order_info")
    platform.receiver.inject("delay", 1.0, count=1, interface="notification_charge_order_info")
    async with uplink:
        await drain(uplink)
    assert len(naps.delays) == 3
    assert "transport error" in (uplink.stats.last_error or "")
    rows = platform.receiver.accepted("notification_charge_order_info")
    assert len(rows) == 1 and rows[0]["data"]["StartChargeSeq"].startswith(OPERATOR_ID)


async def test_bad_credentials_keep_data_queued(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, naps = make_uplink(platform, ledger, clock, operator_secret="wrongsecret00000")
    await ledger.append(status_record())
    async with uplink:
        task = asyncio.create_task(uplink.drain_once())
        while len(naps.delays) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "Ret 4003" in (uplink.stats.last_error or "") and "OperatorSecret" in (
        uplink.stats.last_error or ""
    )
    assert await ledger.cursor("cec") == 0 and platform.receiver.accepted() == []


async def test_every_record_exactly_once_through_faults(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    rng = random.Random(3)
    sent = []
    for i in range(300):
        connector = f"C{i % 3 + 1}"
        rec = status_record(
            status=rng.choice([1, 2, 3]), connector=connector, offset_s=i, energy=i / 10
        )
        sent.append(await ledger.append(rec))
    r = platform.receiver
    for action, value in (
        ("drop", 0),
        ("ret", -1),
        ("ret", 500),
        ("http", 502),
        ("ret", 4002),
        ("delay", 0.05),
        ("wrong_sig", 0),
    ):
        r.inject(action, value, count=4)
    uplink, _ = make_uplink(platform, ledger, clock, batch_size=64, lanes_in_parallel=3)
    async with uplink:
        await drain(uplink)
    rows = r.accepted()
    assert sorted(row["record_id"] for row in rows) == sorted(s.id for s in sent)
    assert r.stats.duplicates >= 1  # a lost answer made the gateway resend: the receiver deduped it
    for connector in ("C1", "C2", "C3"):  # arrival order per connector is ledger order
        ids = [
            int(row["record_id"].split(":")[1])
            for row in rows
            if row["data"]["ConnectorStatusInfo"]["ConnectorID"] == connector
        ]
        assert ids == sorted(ids) and len(ids) == 100
    assert (uplink.stats.acked, uplink.stats.backlog) == (300, 0)


async def test_charge_status_push_and_daily_reconciliation(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, _ = make_uplink(platform, ledger, clock)
    await ledger.append(status_record(status=3, connector="C1"))
    await ledger.append(status_record(status=1, connector="C2"))
    await ledger.append(order_record("SESSION-1", end_offset_s=3600))
    async with uplink:
        await drain(uplink)
        assert await uplink.push_charge_status() == 1
        pushed = platform.receiver.accepted("notification_equip_charge_status")
        assert (
            pushed[0]["data"]["ConnectorID"] == "C1"
            and pushed[0]["data"]["StartChargeSeqStat"] == 2
        )
        clock.advance(86400)  # next day: reconcile yesterday's order
        assert await uplink.push_charge_status() == 0  # the sample is stale now
        assert await uplink.reconcile_orders()
    check = platform.receiver.accepted("check_charge_orders")[0]["data"]
    assert check["OrderCount"] == 1 and check["ChargeOrders"][0]["TotalPower"] == Decimal("30.13")
    assert check["StartTime"] == "2025-01-01 00:00:00" and check["EndTime"] == "2025-01-01 23:59:59"
    assert uplink.counters.reconciliations == 1


async def test_run_until_cancelled(platform: PlatformServer, ledger: Ledger) -> None:
    uplink = CecUplink(make_settings(platform.base_url, poll_s=0.05), ledger)
    task = asyncio.create_task(uplink.run())
    await ledger.append(status_record())
    for _ in range(200):
        if await ledger.cursor("cec") == 1:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await ledger.cursor("cec") == 1 and uplink.stats.connected


async def test_mutual_tls(tmp_path: Path, ledger: Ledger, clock: FakeClock, pki: Pki) -> None:
    tls = {"tls_cert": pki.server_cert, "tls_key": pki.server_key, "tls_client_ca": pki.ca}
    server = PlatformServer(platform_settings(tmp_path, **tls), clock).start()
    try:
        assert server.base_url.startswith("https://127.0.0.1:")
        await ledger.append(status_record())
        no_cert, naps = make_uplink(server, ledger, clock, ca_file=pki.ca)
        async with no_cert:
            task = asyncio.create_task(no_cert.drain_once())
            while not naps.delays:
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert "transport error" in (no_cert.stats.last_error or "")
        uplink, _ = make_uplink(
            server,
            ledger,
            clock,
            ca_file=pki.ca,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
        )
        async with uplink:
            await drain(uplink)
        assert len(server.receiver.accepted()) == 1
    finally:
        server.stop()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="operator_id must be 9 characters"):
        make_settings("http://x/", operator_id="short")
    with pytest.raises(ValueError, match="unknown interfaces"):
        make_settings("http://x/", interfaces=ALL_INTERFACES | {"notification_nope"})
    quirky = make_settings("http://x/", key_as_iv=True)
    assert quirky.secrets().data_iv == SECRETS.data_secret
