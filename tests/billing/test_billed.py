"""Billed against metered (#13 item 3): the comparison and its tolerances, the durable audit
in the ledger (it works for an order written before a restart), the missing-figure watch, and
the signed MQTT ``billed`` command through the running service's status socket, with bad
input refused with a reason and nothing written."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.load import parse_config
from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import ChargeOrderBody, body_to_dict
from agent.records.envelope import Record, StoredRecord, iso_ts
from agent.service import status_socket
from agent.service.billing import BillingDesk
from agent.service.status_socket import StatusServer
from agent.station.billed import (
    AuditState,
    BilledError,
    BilledFigure,
    Tolerance,
    amount,
    check_billed,
)
from agent.uplink.cec.mapping import start_charge_seq
from agent.uplink.mqtt.commands import CommandHandler
from tests.foundation.test_config import BASE, TARIFF
from tests.uplink.conftest import STATION
from tests.uplink.test_mqtt_commands import Platform
from tests.uplink.test_mqtt_uplink import settings as mqtt_settings

T_END = 1_764_700_000.0
TOL = Tolerance(Decimal("0.05"), Decimal("0.5"), Decimal("0.01"))


def order_record(
    session: str = "C1-20261202181320000", kwh: float = 30.125, yuan: str = "42.77"
) -> Record:
    body = ChargeOrderBody(
        session_id=session, start_ts=iso_ts(T_END - 3600), end_ts=iso_ts(T_END), energy_kwh=kwh,
        duration_s=3600, stop_reason=2, total_money_yuan=Decimal(yuan), elec_money_yuan=Decimal("18.67"),
        service_money_yuan=Decimal("24.10"), meter_energy_start_kwh=1000.0, meter_energy_end_kwh=1000.0 + kwh,
    )  # fmt: skip
    return Record(
        kind="charge_order", ts=iso_ts(T_END), station_id="S1", equipment_id="E1",
        connector_id="C1", body=body_to_dict(body),
    )  # fmt: skip


def stored(rec: Record, seq: int = 7) -> StoredRecord:
    fields = {f: getattr(rec, f) for f in rec.__struct_fields__}
    return StoredRecord(**fields, seq=seq, id=f"gw:{seq}", prev="0" * 64, hash="1" * 64)


def figure(kwh: str, yuan: str) -> BilledFigure:
    return BilledFigure(Decimal(kwh), Decimal(yuan), "c-1")


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [("30.125", 3, Decimal("30.125")), (30.125, 3, Decimal("30.125")), (12, 2, Decimal(12)),
     (" 0.10 ", 2, Decimal("0.10")), (0.1, 2, Decimal("0.1"))],
)  # fmt: skip
def test_amounts_are_exact(value: object, decimals: int, expected: Decimal) -> None:
    assert amount(value, "x", decimals, Decimal(1000)) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [("-1", "x: negative (-1)"), (-0.01, "x: negative"), ("1.234", "x: at most 2 decimals, found '1.234'"),
     ("NaN", "x: not a finite number"), ("Infinity", "not a finite number"), ("1e9", "is above 1000"),
     ("twelve", "x: not a decimal number: 'twelve'"), (True, "expected a decimal string or a number"),
     (None, "expected a decimal string or a number, found None"), ([1], "found [1]")],
)  # fmt: skip
def test_bad_amounts_are_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(BilledError, match=None) as info:
        amount(value, "x", 2, Decimal(1000))
    assert reason in str(info.value)


@given(st.one_of(st.text(max_size=40), st.floats(), st.integers(), st.none(), st.booleans()))
def test_amount_fuzz(value: object) -> None:
    """Anything a JSON command can carry is an exact amount within the limits or a
    BilledError, never another exception."""
    try:
        got = amount(value, "x", 2, Decimal(1000))
    except BilledError:
        return
    assert Decimal(0) <= got <= 1000
    exponent = got.as_tuple().exponent
    assert isinstance(exponent, int) and exponent >= -2


# --- the comparison ---------------------------------------------------------------------------


def alarms(records: list[Record]) -> list[tuple[int, str]]:
    return [(r.body["code"], r.body["status"]) for r in records if r.kind == "alarm"]


def test_agreement_is_an_event_and_no_alarm() -> None:
    records, result = check_billed(
        stored(order_record()), figure("30.13", "42.77"), TOL, AuditState(), T_END + 60
    )
    assert [r.kind for r in records] == ["event"] and result["agrees"] is True
    d = records[0].body["details"]
    assert (d["metered_kwh"], d["billed_kwh"], d["own_yuan"], d["billed_yuan"]) == (
        "30.125",
        "30.13",
        "42.77",
        "42.77",
    )
    assert (
        records[0].body["event"] == "billed_checked"
        and records[0].body["session_id"] == "C1-20261202181320000"
    )


def test_energy_tolerance_is_the_larger_allowance() -> None:
    """0.5 % of 30.125 kWh is 0.150625 kWh, more than 0.05 kWh: 0.15 off agrees, 0.16 not."""
    order = stored(order_record())
    ok, _ = check_billed(order, figure("30.275", "42.77"), TOL, AuditState(), T_END)
    assert alarms(ok) == []
    off, result = check_billed(order, figure("30.285", "42.77"), TOL, AuditState(), T_END)
    assert alarms(off) == [(9008, "raised")] and result["energy_tolerance_kwh"] == "0.150625"
    small = stored(order_record(kwh=2.0, yuan="2.84"))  # 0.5 % is 0.01 kWh: the 0.05 kWh floor
    assert alarms(check_billed(small, figure("2.05", "2.84"), TOL, AuditState(), T_END)[0]) == []
    assert alarms(check_billed(small, figure("2.051", "2.84"), TOL, AuditState(), T_END)[0]) == [
        (9008, "raised")
    ]


def test_money_tolerance_and_both_figures_in_the_alarm() -> None:
    order = stored(order_record())
    assert alarms(check_billed(order, figure("30.125", "42.78"), TOL, AuditState(), T_END)[0]) == []
    records, result = check_billed(order, figure("30.125", "42.79"), TOL, AuditState(), T_END)
    assert alarms(records) == [(9009, "raised")] and result["agrees"] is False
    (alarm,) = [r for r in records if r.kind == "alarm"]
    assert "own 42.77 yuan, billed 42.79 yuan (diff 0.02, tolerance 0.01)" in alarm.body["message"]
    assert alarm.body["type"] == "energy_audit" and alarm.connector_id == "C1"


def test_a_corrected_figure_clears_what_the_wrong_one_raised() -> None:
    order = stored(order_record())
    before = AuditState(energy=True, money=True, missing=True, billed=True)
    records, _ = check_billed(order, figure("30.125", "42.77"), TOL, before, T_END)
    assert alarms(records) == [(9008, "cleared"), (9009, "cleared"), (9010, "cleared")]
    again, _ = check_billed(order, figure("31", "50"), TOL, AuditState(energy=True), T_END)
    assert alarms(again) == [(9009, "raised")]  # 9008 stays raised: no second edge


# --- the desk: the ledger, a restart, the missing watch --------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def desk_config(tmp_path: Path, extra: str = "") -> Any:
    text = BASE.replace("SECRETS", str(tmp_path / "secrets.toml")) + TARIFF
    text = text.replace("[gateway]\n", f'[gateway]\nruntime_dir = "{tmp_path}"\n', 1)
    text = text.replace('station_id = "S1"', f'station_id = "{STATION}"', 1)
    return text + "\n[safety]\nbilled_deadline_s = 3600\n" + extra


async def open_ledger(tmp_path: Path, key: GatewayKey) -> Ledger:
    return await Ledger.open(
        tmp_path / "ledger.db", gateway_id="gw-1", key=key, commit_interval_s=0.01
    )


@pytest.fixture
def key() -> GatewayKey:
    return GatewayKey.generate()


async def kinds(ledger: Ledger, after: int) -> list[tuple[str, Any]]:
    return [
        (r.kind, r.body.get("event") or r.body.get("code"))
        for r in await ledger.read_after(after, 100)
    ]


async def test_billed_after_a_restart_and_by_start_charge_seq(
    tmp_path: Path, key: GatewayKey
) -> None:
    config = parse_config(desk_config(tmp_path))
    ledger = await open_ledger(tmp_path, key)
    await ledger.append(order_record())
    await ledger.close()
    ledger = await open_ledger(tmp_path, key)  # the order was written before this run
    try:
        desk = BillingDesk(config, ledger, Clock(T_END + 60))
        wrong = await desk.billed(
            {"session_id": "C1-20261202181320000", "billed_kwh": "31.5", "billed_yuan": "42.77"}
        )
        assert wrong["ok"] is True and wrong["result"]["energy_agrees"] is False
        seq = start_charge_seq("MA5DA0053", "C1-20261202181320000")
        fixed = await desk.billed(
            {"start_charge_seq": seq, "billed_kwh": 30.13, "billed_yuan": 42.77}
        )
        assert fixed["ok"] is True and fixed["result"]["agrees"] is True
        assert await kinds(ledger, 1) == [
            ("event", "billed_checked"), ("alarm", 9008), ("event", "billed_checked"), ("alarm", 9008),
        ]  # fmt: skip
        edges = [r.body["status"] for r in await ledger.find("alarm")]
        assert edges == ["raised", "cleared"]
    finally:
        await ledger.close()


@pytest.mark.parametrize(
    ("request_", "error"),
    [({"session_id": "nope", "billed_kwh": "1", "billed_yuan": "1"}, "no order for session 'nope' in the ledger"),
     ({"start_charge_seq": "MA5DA0053XXXXXXXXXXXXXXXXXX", "billed_kwh": "1", "billed_yuan": "1"}, "no order for StartChargeSeq"),
     ({"billed_kwh": "1", "billed_yuan": "1"}, "give exactly one of session_id and start_charge_seq"),
     ({"session_id": "C1-20261202181320000", "billed_kwh": "-1", "billed_yuan": "1"}, "billed_kwh: negative (-1)"),
     ({"session_id": "C1-20261202181320000", "billed_kwh": "1", "billed_yuan": "1.005"}, "billed_yuan: at most 2 decimals"),
     ({"session_id": "C1-20261202181320000", "billed_kwh": "1.0001", "billed_yuan": "1"}, "billed_kwh: at most 3 decimals"),
     ({"session_id": 5, "billed_kwh": "1", "billed_yuan": "1"}, "are strings")],
)  # fmt: skip
async def test_desk_refuses_with_a_reason_and_writes_nothing(
    tmp_path: Path, key: GatewayKey, request_: dict[str, Any], error: str
) -> None:
    ledger = await open_ledger(tmp_path, key)
    try:
        await ledger.append(order_record())
        desk = BillingDesk(parse_config(desk_config(tmp_path)), ledger, Clock(T_END))
        last = ledger.last_seq
        reply = await desk.billed(request_)
        assert reply["ok"] is False and error in reply["error"]
        assert ledger.last_seq == last
    finally:
        await ledger.close()


async def test_missing_figure_flagged_once_and_cleared_by_a_late_one(
    tmp_path: Path, key: GatewayKey
) -> None:
    ledger = await open_ledger(tmp_path, key)
    try:
        await ledger.append(order_record())
        await ledger.append(order_record("C1-20261202190000000"))
        clock = Clock(T_END + 3599)
        desk = BillingDesk(parse_config(desk_config(tmp_path)), ledger, clock)
        await desk.billed(
            {"session_id": "C1-20261202190000000", "billed_kwh": "30.125", "billed_yuan": "42.77"}
        )
        assert await desk.check_missing() == 0  # not yet past the hour
        clock.now = T_END + 3601
        assert await desk.check_missing() == 1  # only the one without a figure
        assert await desk.check_missing() == 0
        restarted = BillingDesk(parse_config(desk_config(tmp_path)), ledger, clock)
        assert await restarted.check_missing() == 0  # durable: the ledger knows it was flagged
        (missing,) = await ledger.find("alarm")
        assert (missing.body["code"], missing.body["status"]) == (9010, "raised")
        assert "no billed figure 1.0 h after the order ended" in missing.body["message"]
        late = await restarted.billed(
            {"session_id": "C1-20261202181320000", "billed_kwh": "30.125", "billed_yuan": "42.77"}
        )
        assert late["result"]["agrees"] is True
        assert [(a.body["code"], a.body["status"]) for a in await ledger.find("alarm")] == [
            (9010, "raised"),
            (9010, "cleared"),
        ]
    finally:
        await ledger.close()


# --- the MQTT command, through the status socket of a service --------------------------------


class NoPublish:
    from agent.uplink.base import UplinkStats

    stats = UplinkStats()

    async def publish_records(self, _records: Any) -> Any:
        raise AssertionError("billed publishes nothing")


@pytest.fixture
async def served(
    tmp_path: Path, key: GatewayKey, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CommandHandler, Platform, Ledger]]:
    """A ledger with one order, the billing desk behind a real status socket, and the MQTT
    command handler that reaches it (the service's config named by ``EVGW_CONFIG``)."""
    platform = Platform()
    config_path = tmp_path / "evgw.toml"
    config_path.write_text(desk_config(tmp_path), "utf-8")
    monkeypatch.setenv("EVGW_CONFIG", str(config_path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    ledger = await open_ledger(tmp_path, key)
    await ledger.append(order_record())
    desk = BillingDesk(parse_config(config_path.read_text()), ledger)
    status_socket.register_handler("billed", desk.billed)
    server = StatusServer(tmp_path / "status.sock", dict)
    await server.start()
    conf = mqtt_settings(1883, None, command_public_key_pem=platform.public_pem)
    handler = CommandHandler(conf, ledger, NoPublish(), time.time)  # type: ignore[arg-type]
    try:
        yield handler, platform, ledger
    finally:
        await server.close()
        await ledger.close()


async def send(handler: CommandHandler, payload: bytes) -> dict[str, Any]:
    reply = await handler.handle(f"{handler.settings.base_topic}/cmd/billed", payload)
    assert reply is not None
    return json.loads(reply.payload)


def billed_args(**over: Any) -> dict[str, Any]:
    return {
        "session_id": "C1-20261202181320000",
        "billed_kwh": "31.00",
        "billed_yuan": "42.77",
        **over,
    }


async def audit_records(ledger: Ledger) -> list[str]:
    found = await ledger.read_after(0, 1000)
    return [r.kind for r in found if r.kind == "alarm" or r.body.get("event") == "billed_checked"]


async def test_signed_billed_command_raises_9008(
    served: tuple[CommandHandler, Platform, Ledger],
) -> None:
    handler, platform, ledger = served
    reply = await send(handler, platform.command("billed", "b-1", billed_args()))
    assert reply["ok"] is True, reply
    assert reply["result"]["energy_agrees"] is False and reply["result"]["command_id"] == "b-1"
    (alarm,) = await ledger.find("alarm")
    assert (
        alarm.body["code"] == 9008
        and "metered 30.125 kWh, billed 31.00 kWh" in alarm.body["message"]
    )


async def test_bad_billed_commands_refused_and_nothing_written(
    served: tuple[CommandHandler, Platform, Ledger],
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    handler, platform, ledger = served
    stale = iso_ts(time.time() - 3600)
    cases = [
        (platform.command("billed", "x1", billed_args(), key=ec.generate_private_key(ec.SECP256R1())), "not signed by the platform's configured key"),
        (platform.command("billed", "x2", billed_args(), ts=stale), "from the gateway clock"),
        (platform.command("billed", "x3", billed_args(session_id="C9-1")), "no order for session 'C9-1' in the ledger"),
        (platform.command("billed", "x4", billed_args(billed_yuan="-3")), "billed_yuan: negative (-3)"),
        (platform.command("billed", "x5", billed_args(billed_yuan="42.771")), "billed_yuan: at most 2 decimals, found '42.771'"),
        (platform.command("billed", "x6", billed_args(billed_kwh=[1])), "bad arguments for billed"),
        (platform.command("billed", "x7", billed_args(extra=1)), "bad arguments for billed"),
        (json.dumps({"id": "x8", "ts": iso_ts(time.time()), "args": billed_args(), "sig": ""}).encode(), "not signed"),
    ]  # fmt: skip
    for payload, reason in cases:
        reply = await send(handler, payload)
        assert reply["ok"] is False and reason in reply["error"], (reason, reply)
    assert await audit_records(ledger) == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    args=st.dictionaries(
        st.sampled_from(["session_id", "start_charge_seq", "billed_kwh", "billed_yuan", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                  st.lists(st.integers(), max_size=2)),
        max_size=5,
    )
)  # fmt: skip
async def test_billed_args_fuzz(
    served: tuple[CommandHandler, Platform, Ledger], args: dict[str, Any]
) -> None:
    """Any signed args: a reply (accepted or refused with a reason), never an exception; an
    accepted one is an audit of the one order."""
    handler, platform, ledger = served
    before = len(await audit_records(ledger))
    reply = await send(handler, platform.command("billed", f"f-{time.monotonic_ns()}", args))
    if reply["ok"]:
        assert reply["result"]["session_id"] == "C1-20261202181320000"
        assert len(await audit_records(ledger)) > before
    else:
        assert reply["error"]
        assert len(await audit_records(ledger)) == before
