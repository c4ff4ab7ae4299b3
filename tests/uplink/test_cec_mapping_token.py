"""Wire formats of the T/CEC mapping and the token manager's rules."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from decimal import Decimal

import msgspec
import pytest

from agent.records.envelope import Record, StoredRecord
from agent.uplink.cec.codec import encode_business
from agent.uplink.cec.mapping import (
    MappingContext,
    cst_datetime,
    dec,
    notification_for,
    start_charge_seq,
)
from agent.uplink.cec.rules import validate
from agent.uplink.cec.token import TokenManager, TokenUnavailable
from sim.platform_schemas import SCHEMAS
from tests.uplink.conftest import (
    OPERATOR_ID,
    FakeClock,
    alarm_record,
    bms_body,
    event_record,
    identity_record,
    order_record,
    record,
    status_record,
)

CTX = MappingContext(operator_id=OPERATOR_ID, equipment_owner_id=OPERATOR_ID, station_name="站")


def stored(rec: Record, seq: int = 1) -> StoredRecord:
    fields = {f: getattr(rec, f) for f in rec.__struct_fields__}
    return StoredRecord(**fields, seq=seq, id=f"gw:{seq}", prev="0" * 64, hash="1" * 64)


def test_value_formats() -> None:
    assert (
        str(dec(12.5, 2)) == "12.50"
        and str(dec(0.125, 2)) == "0.13"
        and str(dec(114.0579, 6)) == "114.057900"
    )
    assert cst_datetime("2024-12-31T16:30:05.999Z") == "2025-01-01 00:30:05"
    assert start_charge_seq(OPERATOR_ID, "ABCDEFGHIJ12345678") == OPERATOR_ID + "ABCDEFGHIJ12345678"
    seq = start_charge_seq(OPERATOR_ID, "session-1")
    assert len(seq) == 27 and seq == start_charge_seq(OPERATOR_ID, "session-1")


def test_every_mapped_object_passes_the_receiver_schema() -> None:
    for rec in (identity_record(), status_record(), alarm_record(), order_record(), event_record()):
        note = notification_for(stored(rec), CTX)
        assert note is not None
        problem = validate(
            json.loads(encode_business(note.data), parse_float=Decimal), SCHEMAS[note.interface]
        )
        assert problem is None, (note.interface, problem)


def test_spellings_and_shapes() -> None:
    order = notification_for(stored(order_record()), CTX)
    assert order is not None and {"TotalSeviceMoney", "SumPeriod", "StopReason"} <= set(order.data)
    assert b'"TotalPower":30.13' in encode_business(order.data)
    alarm = notification_for(stored(alarm_record()), CTX)
    assert alarm is not None
    bms = alarm.data["AlarmInfos"][0]["BmsInfo"]
    assert bms["TatalVoltage"] == Decimal("398.5") and bms["TotalCurrent"] == Decimal("99.0")
    assert bms["VoltageH"] == Decimal("3.46") and bms["BMSCode"] == "LSVAU2180N2183294"
    # no per-cell voltages (BMV) in this sample: VoltageL is unknown, never VoltageH copied
    assert bms["VoltageL"] == 0 and bms["UnknownFields"] == ["VoltageL"]
    status = notification_for(stored(status_record()), CTX)
    assert (
        status is not None and status.data["ConnectorStatusInfo"]["CurrentA"] == 100
    )  # rounded int
    assert status.lane == "C1" and status.record_id == "gw:1"
    station = notification_for(stored(identity_record()), CTX)
    assert station is not None and station.data["StationInfo"]["OpratorType"] == 1
    assert notification_for(stored(event_record(None)), CTX) is None
    internal = Record(
        kind="alarm",
        ts="2025-01-01T00:00:00.000Z",
        station_id="ST0001",
        body={
            "code": "LEDGER_RECOVERED",
            "type": "ledger",
            "level": "critical",
            "status": "raised",
        },
    )
    assert notification_for(stored(internal), CTX) is None


async def test_token_single_flight_and_backoff() -> None:
    clock = FakeClock()
    calls: list[float] = []
    fail = False

    async def fetch() -> tuple[str, float]:
        calls.append(clock())
        await asyncio.sleep(0)
        if fail:
            raise RuntimeError("platform down")
        return f"t{len(calls)}", 7200.0

    tokens = TokenManager(fetch, clock, failure_backoff_s=(5.0, 10.0))
    assert await asyncio.gather(tokens.get(), tokens.get(), tokens.get()) == ["t1", "t1", "t1"]
    assert len(calls) == 1
    fail = True
    clock.advance(7200 - 700)  # inside the refresh margin, still valid: the old token is used
    assert await tokens.get() == "t1" and len(calls) == 2
    clock.advance(1000)  # expired and query_token failing
    with pytest.raises(TokenUnavailable, match="query_token failed: platform down"):
        await tokens.get()
    with pytest.raises(TokenUnavailable, match="next attempt in 10 s"):
        await tokens.get()  # backing off: no new call
    assert len(calls) == 3
    fail = False
    clock.advance(10)
    assert await tokens.get() == "t4"
    tokens.invalidate("t3")  # not the cached one: kept
    assert await tokens.get() == "t4"
    tokens.invalidate("t4")
    assert await tokens.get() == "t5"


def test_refresh_margin_from_the_config() -> None:
    """`token_refresh_margin_s` sets how early a token is renewed, within a tenth and a half
    of the token's lifetime."""
    from agent.uplink.cec.token import Token

    long_lived = Token("t", issued_at=0.0, lifetime_s=7200.0)
    assert not long_lived.needs_refresh(7200 - 800, margin_s=300)  # 10 % of 7200 = 720 s
    assert long_lived.needs_refresh(7200 - 700, margin_s=300)
    assert long_lived.needs_refresh(7200 - 1700, margin_s=1800)
    short = Token("t", issued_at=0.0, lifetime_s=600.0)
    assert not short.needs_refresh(299, margin_s=3600)  # never more than half the lifetime
    assert short.needs_refresh(301, margin_s=3600)


def test_late_joined_session_invents_nothing() -> None:
    """The gateway joined after BRM/BCP: the limits and version are unknown. The wire object
    stays complete (all BmsInfo members are required) with neutral values, every one of them
    named in UnknownFields, and the receiver's schema still accepts it."""
    body = msgspec.structs.replace(
        bms_body(),
        max_allowed_charge_current_a=None,
        max_allowed_cell_voltage_v=None,
        max_allowed_temp_c=None,
        bms_protocol_version=None,
        rated_capacity_ah=None,
        min_cell_voltage_v=3.31,
    )
    note = notification_for(stored(record("bms_process", body)), CTX)
    assert note is not None
    info = note.data["BmsInfo"]
    assert info["UnknownFields"] == [
        "BMSVer", "MaxChargeCurrent", "MaxChargeCellVoltage", "MaxTemp", "RatedCapacity",
    ]  # fmt: skip
    assert (info["MaxChargeCurrent"], info["MaxTemp"], info["RatedCapacity"]) == (0, 0, 0)
    assert info["BMSVer"] == "unknown" and info["VoltageL"] == Decimal("3.31")
    wire = json.loads(encode_business(note.data), parse_float=Decimal)
    assert validate(wire, SCHEMAS[note.interface]) is None
    quiet = notification_for(
        stored(record("bms_process", body)), dataclasses.replace(CTX, unknown_fields_member=False)
    )
    assert quiet is not None and "UnknownFields" not in quiet.data["BmsInfo"]
    assert quiet.data["BmsInfo"]["MaxTemp"] == 0  # the neutral value stays
    known = notification_for(stored(record("bms_process", bms_body())), CTX)
    assert known is not None and known.data["BmsInfo"]["MaxChargeCurrent"] == Decimal("250.0")
