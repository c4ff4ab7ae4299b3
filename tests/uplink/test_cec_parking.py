"""Registration first, parking that ends, resends and alarm 27 — the T/CEC uplink against
the real receiver (#15 items 1, 2, 5)."""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

import msgspec
import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import decode_body
from agent.uplink.cec.config import CecSection
from agent.uplink.cec.peer import link_alarm_records
from agent.uplink.cec.uplink import CecUplink
from sim.platform import PlatformServer
from tests.foundation.test_config import BASE, CEC
from tests.uplink.conftest import (
    T0,
    FakeClock,
    alarm_record,
    event_record,
    identity_record,
    status_record,
)
from tests.uplink.test_cec_hostile import (
    EVGW,
    cec_status,
    prefill,
    service_config,
    start_service,
    wait_for,
)
from tests.uplink.test_cec_uplink import Naps, drain, make_settings, make_uplink

STATUS = "notification_stationStatus"
STATION_INFO = "notification_stationInfo"


async def events(ledger: Ledger, name: str) -> list[dict[str, object]]:
    found = [decode_body("event", r.body) for r in await ledger.find("event")]
    return [e.details | {"message": e.message} for e in found if e.event == name]


class HeldNaps(Naps):
    """Naps that hold a sleep of ``held_s`` until the test releases them."""

    def __init__(self, held_s: float) -> None:
        super().__init__()
        self.held_s = held_s
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        if seconds == self.held_s:
            self.holding.set()
            await self.release.wait()
        await super().__call__(seconds)


async def test_registration_goes_first_even_when_slow(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    """With 0.3 s of delay on the registration the receiver still gets station info first."""
    for rec in (status_record(), alarm_record(), identity_record()):
        await ledger.append(rec)
    await ledger.append(status_record(connector="C2"))
    platform.receiver.inject("delay", 0.3, count=1, interface=STATION_INFO)
    uplink, _ = make_uplink(platform, ledger, clock)
    async with uplink:
        await drain(uplink)
    order = [row["interface"] for row in platform.receiver.accepted()]
    assert order[0] == STATION_INFO and len(order) == 4
    assert uplink.registered


async def test_every_start_confirms_the_identity_before_anything_else(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    identity = await ledger.append(identity_record())
    first, _ = make_uplink(platform, ledger, clock)
    async with first:
        await drain(first)
    await ledger.append(status_record())
    platform.receiver.inject("delay", 0.3, count=1, interface=STATION_INFO)
    again, _ = make_uplink(platform, ledger, clock)  # a restart: registration unknown
    async with again:
        await drain(again)
    calls = [
        r["interface"] for r in platform.receiver.requests() if r["interface"] != "query_token"
    ]
    assert calls == [STATION_INFO, STATION_INFO, STATUS]
    assert platform.receiver.accepted(STATION_INFO)[0]["record_id"] == identity.id


async def test_a_refused_identity_holds_every_lane_and_is_tried_every_probe_interval(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.append(identity_record())
    status = await ledger.append(status_record())
    platform.receiver.inject("ret", 4004, count=2, interface=STATION_INFO)
    naps = HeldNaps(600.0)
    uplink = CecUplink(
        make_settings(platform.base_url, probe_interval_s=600.0), ledger, clock=clock, sleep=naps
    )
    async with uplink:
        task = asyncio.create_task(drain(uplink))
        await asyncio.wait_for(naps.holding.wait(), 10)
        assert platform.receiver.accepted() == []  # nothing sent past the refused identity
        assert not uplink.registered and uplink.status()["registered"] is False
        naps.release.set()
        await asyncio.wait_for(task, 10)  # the second attempt (after 600 s) is accepted
    assert naps.delays == [600.0]
    assert [r["interface"] for r in platform.receiver.accepted()] == [STATION_INFO, STATUS]
    assert platform.receiver.accepted()[1]["record_id"] == status.id
    assert len(await events(ledger, "uplink_record_parked")) == 1  # parked once, not per try


async def test_discarded_records_go_again_after_a_re_registration_then_park(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.append(identity_record())
    once = await ledger.append(status_record(connector="C1"))
    twice = await ledger.append(status_record(connector="C2"))
    r = platform.receiver
    r.inject("status1", count=1, interface=STATUS)  # C1 or C2, whichever comes first
    uplink, _ = make_uplink(platform, ledger, clock, lanes_in_parallel=1)
    async with uplink:
        await drain(uplink)
    assert {row["record_id"] for row in r.accepted(STATUS)} == {once.id, twice.id}
    assert len(r.requests(STATION_INFO)) == 2  # registered, then once more before the resend
    r.inject("status1", count=2, interface=STATUS)
    third = await ledger.append(status_record(connector="C3"))
    async with uplink:
        await drain(uplink)
        await drain(uplink)
    assert third.id not in {row["record_id"] for row in r.accepted(STATUS)}
    parked = await events(ledger, "uplink_record_parked")
    assert [p["seq"] for p in parked] == [third.seq]
    assert "again after re-registration" in str(parked[0]["reason"])
    assert uplink.counters.discarded == 3


async def test_4003_parks_the_platform_probes_and_resumes_in_order(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    sent = [
        await ledger.append(status_record(connector=f"C{n % 2 + 1}", offset_s=n)) for n in range(6)
    ]
    uplink, naps = make_uplink(platform, ledger, clock, probe_interval_s=600.0)
    async with uplink:
        await uplink.tokens.get()
        platform.receiver.inject("ret", 4003, count=3, interface=STATUS)
        await drain(uplink)
    rets = [row["ret"] for row in platform.receiver.requests(STATUS)]
    assert rets == [4003, 4003, 4003, 0, 0, 0, 0, 0, 0]  # no lane hammered the parked peer
    assert naps.delays.count(600.0) >= 1
    rows = platform.receiver.accepted(STATUS)
    assert sorted(row["record_id"] for row in rows) == sorted(s.id for s in sent)
    for connector in ("C1", "C2"):
        seqs = [
            int(row["record_id"].rsplit(":", 1)[1])
            for row in rows
            if row["data"]["ConnectorStatusInfo"]["ConnectorID"] == connector
        ]
        assert seqs == sorted(seqs)
    assert uplink.stats.parked == 0 and uplink.peer.is_open
    assert len(await events(ledger, "uplink_peer_parked")) == 1
    assert len(await events(ledger, "uplink_peer_resumed")) == 1


async def test_a_parked_record_is_listed_and_resent(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    refused = await ledger.append(status_record())
    platform.receiver.inject("ret", 4004, count=1, interface=STATUS)
    uplink, _ = make_uplink(platform, ledger, clock)
    async with uplink:
        await drain(uplink)
        assert uplink.status()["parked_now"] == 1
        listed = await uplink.parked_records()
        assert [row["seq"] for row in listed["parked"]] == [refused.seq]
        assert "4004" in listed["parked"][0]["reason"] and listed["parked"][0]["kind"] == (
            "connector_status"
        )
        with pytest.raises(ValueError, match="exactly one of"):
            await uplink.resend({"seq": refused.seq, "parked": True})
        with pytest.raises(ValueError, match="not in the ledger yet"):
            await uplink.resend({"seq": 10_000})
        answer = await uplink.resend({"seq": refused.seq, "requested_by": "test"})
        assert answer["queued"] == 1 and answer["released_from_parking"] == 1
        assert uplink.status()["parked_now"] == 0
        await uplink.resender.run_pending()
        assert (await uplink.parked_records())["count"] == 0
    assert [row["record_id"] for row in platform.receiver.accepted(STATUS)] == [refused.id]
    done = await events(ledger, "uplink_resend_done")
    assert done[0]["accepted"] == 1 and done[0]["accepted_seqs"] == [refused.seq]
    assert (await events(ledger, "uplink_resend_requested"))[0]["requested_by"] == "test"


class ClockNaps(Naps):
    """Naps that move the shared fake clock on by each delay."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await super().__call__(seconds)


async def alarms_27(ledger: Ledger) -> list[tuple[str | None, str]]:
    found = [(r.connector_id, decode_body("alarm", r.body)) for r in await ledger.find("alarm")]
    return [(c, b.status) for c, b in found if b.code == 27]


async def test_alarm_27_after_a_long_outage_and_cleared_after(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    settings = make_settings(
        platform.base_url,
        retry_initial_s=30.0,
        retry_cap_s=60.0,
        connectors=(("EQ1", "C1"), ("EQ1", "C2")),
    )
    uplink = CecUplink(settings, ledger, clock=clock, sleep=ClockNaps(clock), rng=random.Random(1))
    await ledger.append(event_record())
    platform.receiver.inject("ret", -1, count=20, interface="notification_eventInfo")
    async with uplink:
        await drain(uplink)
        await ledger.flush()
        assert await alarms_27(ledger) == [
            ("C1", "raised"),
            ("C2", "raised"),
            ("C1", "cleared"),
            ("C2", "cleared"),
        ]
        alarm = decode_body("alarm", (await ledger.find("alarm"))[0].body)
        assert alarm.type == 1 and alarm.level == 3 and "for 300 s" in alarm.message
        await drain(uplink)  # alarm 27 is a platform alarm: it goes to the platform too
    infos = platform.receiver.accepted("notification_alarmInfo")
    for connector in ("C1", "C2"):  # raised, then cleared, on every connector
        mine = [i["data"]["AlarmInfos"][0] for i in infos]
        statuses = [a["AlarmStatus"] for a in mine if a["ConnectorID"] == connector]
        assert statuses == [1, 0]
        assert all(a["AlarmCode"] == 27 for a in mine)


async def test_alarm_27_at_once_on_a_refused_signature(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, naps = make_uplink(platform, ledger, clock, connectors=(("EQ1", "C1"),))
    await ledger.append(status_record())
    platform.receiver.inject("ret", 4001, count=1, interface=STATUS)
    async with uplink:
        await drain(uplink)
        await ledger.flush()
    assert await alarms_27(ledger) == [("C1", "raised"), ("C1", "cleared")]
    raised = decode_body("alarm", (await ledger.find("alarm"))[0].body)
    assert "sig_secret" in raised.message and len(naps.delays) == 1


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("park_peer_on = [4003, 0]", "park_peer_on: [0] cannot park the platform"),
        ("park_peer_on = [4002]", "park_peer_on: [4002] cannot park the platform"),
        ("probe_interval_s = 0", "probe_interval_s"),
        ("link_alarm_after_s = 5", "link_alarm_after_s"),
        ("max_response_bytes = 100", "max_response_bytes"),
        ("reply_echoes_seq = 1", "reply_echoes_seq"),
        ("catch_up_days = 0", "catch_up_days"),
        ("catch_up_days = 61", "catch_up_days"),
    ],
)
def test_broken_values_of_the_new_keys(line: str, needle: str) -> None:
    text = BASE.replace("SECRETS", "/nonexistent").replace("[[can_buses]]", CEC, 1)
    text = text.replace(
        'platform_operator_id = "MA5GOV001"\n', f'platform_operator_id = "MA5GOV001"\n{line}\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.toml")
    assert any(needle in problem for problem in info.value.problems), info.value.problems


def test_defaults_of_the_new_keys() -> None:
    cec = msgspec.convert(
        {"base_url": "https://x/", "platform_operator_id": "MA5GOV001"}, CecSection
    )
    assert (cec.probe_interval_s, cec.park_peer_on, cec.link_alarm_after_s) == (
        600.0,
        [4003],
        300.0,
    )
    assert (cec.max_response_bytes, cec.reply_echoes_seq) == (1024 * 1024, False)
    assert cec.catch_up_days == 7
    settings = make_settings("https://x/")
    assert settings.park_peer_on == frozenset({4003}) and settings.probe_interval_s == 600.0


# --------------------------------------------------------------------------- evgw run


def evgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVGW, *args], capture_output=True, text=True, timeout=60)


async def test_evgw_uplink_parked_and_resend_through_the_running_service(
    tmp_path: Path, platform: PlatformServer
) -> None:
    """A record refused with 4004 is listed by `evgw uplink parked`; `evgw uplink resend
    --seq N` has the service send it again — through a platform that parks itself (4003)
    for two answers first — and the receiver gets it; every step is an event."""
    config = service_config(tmp_path, platform.base_url, "probe_interval_s = 1")
    (refused,) = await prefill(tmp_path, [status_record()])
    seq = int(refused.rsplit(":", 1)[1])
    platform.receiver.inject("ret", 4004, count=1, interface=STATUS)
    sock = str(tmp_path / "status.sock")
    log = tmp_path / "evgw.log"
    proc = start_service(config, log)
    try:
        wait_for(
            lambda: sock_ready(tmp_path) and cec_status(tmp_path)["parked_now"] == 1,
            30,
            "a parked record",
        )
        listed = evgw("uplink", "parked", "--uplink", "cec", "--socket", sock)
        assert listed.returncode == 0, listed.stderr
        assert "cec: 1 parked" in listed.stdout and f"seq {seq}  connector_status" in listed.stdout
        assert "Ret 4004" in listed.stdout
        wrong = evgw("uplink", "resend", "--uplink", "cec", "--seq", "999999", "--socket", sock)
        assert wrong.returncode == 2 and "not in the ledger yet" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        nobody = evgw("uplink", "parked", "--uplink", "mqtt", "--socket", sock)
        assert nobody.returncode == 2 and "'mqtt' is not running" in nobody.stderr
        platform.receiver.inject("ret", 4003, count=2, interface=STATUS)
        resent = evgw("uplink", "resend", "--uplink", "cec", "--seq", str(seq), "--socket", sock)
        assert resent.returncode == 0, resent.stderr
        assert "1 records queued" in resent.stdout and "1 released from parking" in resent.stdout
        wait_for(
            lambda: refused in {r["record_id"] for r in platform.receiver.accepted(STATUS)},
            30,
            "the resent record at the receiver",
        )
        row = wait_for(lambda: (r := cec_status(tmp_path))["peer"] == "open" and r, 10, "peer")
        assert row["parked_now"] == 0 and row["registered"] is True
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    assert "Traceback" not in log.read_text()
    names = await ledger_events(tmp_path)
    for name in (
        "uplink_record_parked",
        "uplink_resend_requested",
        "uplink_peer_parked",
        "uplink_peer_resumed",
        "uplink_resend_done",
    ):
        assert name in names, names
    rets = [r["ret"] for r in platform.receiver.requests(STATUS)]
    assert rets == [4004, 4003, 4003, 0]


def sock_ready(directory: Path) -> bool:
    return (directory / "status.sock").exists()


async def ledger_events(directory: Path) -> list[str]:
    ledger = await Ledger.open(
        directory / "ledger.db",
        gateway_id=None,
        key=GatewayKey.load(directory / "gateway.key"),
    )
    try:
        return [r.body["event"] for r in await ledger.find("event")]
    finally:
        await ledger.close()


async def test_alarm_27_raised_before_a_restart_is_cleared_after_it(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    """The gateway stopped during an outage with alarm 27 raised: the next run knows the
    alarm is up (from the ledger) and clears it at the first accepted request; a run after a
    cleared alarm raises and clears nothing."""
    for record in link_alarm_records("raised", "Ret -1", 300.0, "ST1", (("EQ1", "C1"),), T0):
        await ledger.append(record)
    await ledger.append(status_record())
    uplink, _ = make_uplink(platform, ledger, clock, connectors=(("EQ1", "C1"),))
    async with uplink:
        await drain(uplink)
        await ledger.flush()
    assert await alarms_27(ledger) == [("C1", "raised"), ("C1", "cleared")]
    again, _ = make_uplink(platform, ledger, clock, connectors=(("EQ1", "C1"),))
    async with again:
        await drain(again)
        await ledger.flush()
        assert not again.link.raised
    assert await alarms_27(ledger) == [("C1", "raised"), ("C1", "cleared")]
