"""Abnormal transactions (#13 item 4): each rule raises on the order that breaks it and passes
the one that does not (thresholds from ``[safety]``); through the station model, a raised rule
stands until the connector's next order passes it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.config.schema import SafetySection
from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import ChargeOrderBody, body_to_dict
from agent.records.envelope import Record, iso_ts
from agent.station.abnormal import AbnormalWatch, findings
from agent.station.model import StationModel
from agent.station.safety import SafetyMonitor
from agent.station.session import Session
from agent.station.writer import StationWriter
from tests.station.station_fixtures import AC, make_config, of
from tests.station.test_station_model import reading, run

SAFETY = SafetySection()
T0 = 1_700_000_000.0


def session(**over: Any) -> Session:
    s = Session(session_id="C1-1", start_ts=T0, safety=SafetyMonitor(SAFETY))
    for k, v in over.items():
        setattr(s, k, v)
    return s


def order(**over: Any) -> ChargeOrderBody:
    values: dict[str, Any] = {
        "session_id": "C1-1", "start_ts": iso_ts(T0), "end_ts": iso_ts(T0 + 1800),
        "energy_kwh": 20.0, "duration_s": 1800, "peak_power_kw": 60.0, "stop_reason": 2,
        "meter_id": "m1",
    }  # fmt: skip
    values.update(over)
    return ChargeOrderBody(**values)


def verdicts(s: Session, o: ChargeOrderBody, watch: AbnormalWatch | None = None) -> dict[int, bool]:
    return {f.code: f.abnormal for f in findings(watch or AbnormalWatch(), s, o, SAFETY)}


def test_a_normal_order_passes_every_rule() -> None:
    s = session(peak_bms_current_a=120.0, meter_ids=["m1"])
    assert verdicts(s, order()) == {9011: False, 9012: False, 9013: False, 9014: False, 9015: False}


@pytest.mark.parametrize(
    ("s_over", "o_over", "code", "abnormal"),
    [
        ({"peak_bms_current_a": 120.0}, {"energy_kwh": 0.0}, 9011, True),
        ({"peak_bms_current_a": 120.0}, {"energy_kwh": -0.2}, 9011, True),
        ({"peak_bms_current_a": 4.0}, {"energy_kwh": 0.0}, 9011, False),  # below 5 A
        ({"peak_bms_current_a": 120.0}, {"energy_kwh": 0.0, "energy_source": "charger"}, 9011, None),
        ({}, {"duration_s": 9, "energy_kwh": 0.2, "peak_power_kw": 120.0}, 9012, True),
        ({}, {"duration_s": 9, "energy_kwh": 0.05, "peak_power_kw": 120.0}, 9012, False),
        ({}, {"duration_s": 11, "energy_kwh": 0.5}, 9012, False),
        ({"meter_ids": ["m1", "m2"]}, {"meter_id": "m2"}, 9014, True),
        ({"meter_ids": ["m1"]}, {"meter_id": "m2"}, 9014, True),
        ({"meter_ids": ["m1"]}, {"meter_id": "m1"}, 9014, False),
        # 60 kW for 1800 s allows 30 kWh, +10 % + 0.5 kWh: 33.5
        ({}, {"energy_kwh": 33.4}, 9015, False),
        ({}, {"energy_kwh": 33.6}, 9015, True),
        ({}, {"energy_kwh": 33.6, "duration_s": None}, 9015, None),
        ({}, {"energy_kwh": 33.6, "duration_s": None}, 9012, None),
        ({"meter_ids": []}, {"meter_id": "m2"}, 9014, None),
    ],
)  # fmt: skip
def test_each_rule(
    s_over: dict[str, Any], o_over: dict[str, Any], code: int, abnormal: bool | None
) -> None:
    got = verdicts(session(**s_over), order(**o_over))
    if abnormal is None:  # the rule cannot judge: no verdict, neither raise nor clear
        assert code not in got
        return
    assert got[code] is abnormal
    assert [c for c, bad in got.items() if bad and c != code] == []


def test_two_orders_for_one_session() -> None:
    watch = AbnormalWatch()
    s = session()
    assert verdicts(s, order(), watch)[9013] is False
    assert verdicts(s, order(end_ts=iso_ts(T0 + 1900)), watch)[9013] is True
    assert verdicts(s, order(session_id="C1-2"), watch)[9013] is False
    late = order(end_ts=iso_ts(T0 + 1800 + 49 * 3600))  # past the 48 h window
    assert verdicts(s, late, watch)[9013] is False


def test_thresholds_come_from_the_config() -> None:
    strict = msgspec.structs.replace(SAFETY, short_session_s=60.0, energy_above_power_pct=0.0)
    s = session()
    got = {
        f.code: f.abnormal
        for f in findings(
            AbnormalWatch(), s, order(duration_s=30, energy_kwh=0.5, peak_power_kw=120.0), strict
        )
    }
    assert got[9012] is True  # 30 s is short under a 60 s threshold
    got = {f.code: f.abnormal for f in findings(AbnormalWatch(), s, order(energy_kwh=30.6), strict)}
    assert got[9015] is True


def ac_session(
    model: StationModel, t: float, energy: float, jump_kwh: float
) -> tuple[list[Any], float]:
    """An AC session of 300 s at 32 A on the model's clock from ``t``; the register also
    jumps by ``jump_kwh`` halfway (more than the power allows when large)."""
    events = [reading(t + i, energy, 0.0) for i in range(5)]
    for i in range(300):
        energy += 230.0 * 32 / 3.6e6 + (jump_kwh if i == 150 else 0.0)
        events.append(reading(t + 5 + i, energy, 32.0))
    events += [reading(t + 305 + i, energy, 0.0) for i in range(200)]
    return run(model, events), energy


def test_through_the_model_raised_then_cleared_by_the_next_order() -> None:
    model = StationModel(make_config(meters=True))
    out = model.startup([], T0)
    first, energy = ac_session(model, T0, 100.0, jump_kwh=2.0)
    second, _ = ac_session(model, T0 + 1000, energy, jump_kwh=0.0)
    out += first + second
    assert len(of(out, "charge_order", AC)) == 2
    edges = [
        (r.body["code"], r.body["status"]) for r in of(out, "alarm", AC) if r.body["code"] == 9015
    ]
    assert edges == [(9015, "raised"), (9015, "cleared")]
    raised = next(r for r in of(out, "alarm", AC) if r.body["code"] == 9015)
    assert raised.body["type"] == "energy_audit" and "at a peak of 7.4 kW" in raised.body["message"]


def test_the_orders_seen_survive_a_config_reload() -> None:
    config = make_config(meters=True)
    model = StationModel(config)
    model.startup([], T0)
    model.connectors[AC].orders_seen.written["X-1"] = T0
    model.reload(make_config(meters=True, extra="\n[safety]\nshort_session_s = 30\n"), T0 + 1)
    assert model.connectors[AC].orders_seen.written == {"X-1": T0}


async def test_the_orders_seen_survive_a_restart(tmp_path: Path) -> None:
    """The first run wrote an order for session X-1; after a restart a second order for X-1
    is still a duplicate (the writer hands the model the ledger's newest orders)."""
    key = GatewayKey.generate()
    ledger = await Ledger.open(tmp_path / "ledger.db", gateway_id="gw-test", key=key)
    first = Record(
        kind="charge_order",
        ts=iso_ts(T0 + 1800),
        station_id="S1",
        connector_id=AC,
        body=body_to_dict(order(session_id="X-1")),
    )
    await ledger.append(first)
    model = StationModel(make_config(meters=True))
    writer = StationWriter(model, ledger, queue=asyncio.Queue())
    await writer.start()
    await ledger.close()
    watch = model.connectors[AC].orders_seen
    assert watch.written == {"X-1": T0 + 1800}
    again = order(session_id="X-1", end_ts=iso_ts(T0 + 2000))
    assert verdicts(session(), again, watch)[9013] is True
