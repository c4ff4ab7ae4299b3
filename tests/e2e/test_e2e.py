"""End to end: the real ``evgw run`` process on a simulated station, to both platforms.

Two DC connectors (slcan over socat pty pairs, Modbus TCP meters following the sessions'
power curves) play two sessions each: one honest, one stopped by a fault (an insulation
fault the BMS stops for, an emergency stop at the charger). The agent forwards to the T/CEC
receiver and a real mosquitto; then it is stopped with SIGTERM and everything is compared:
the ledger export verifies with the public key, each platform got every record it takes
exactly once, the orders agree with what was played and the faults' alarms were raised
and cleared.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.charging import Fault, FaultKind, VehicleProfile
from sim.station import PlayedSession, SessionPlan
from tests.e2e.helpers import (
    GATEWAY_ID,
    Rig,
    broker_copy_verifies,
    cec_accepted,
    cec_expected_ids,
    delivered_everywhere,
    export_and_verify,
    ledger_records,
    orders,
    wait_for_broker,
    wait_until,
)

#: T/CEC StopReason of each way a session ends here (docs/STATION.md, StopReason derivation)
STOP_REASON = {(): 0, ("insulation",): 2, ("emergency_stop",): 3}
#: the alarm code each fault raises (docs/STATION.md, GB/T bits with a code)
ALARM_CODE = {"insulation": 121, "emergency_stop": 2}
ENERGY_AUDIT_CODES = {9001, 9002, 9003}
METER_RESOLUTION_KWH = 0.01


def plan(vin: str, *faults: FaultKind, idle_before_s: float = 1.0) -> SessionPlan:
    return SessionPlan(
        VehicleProfile(vin=vin, max_current_a=120.0, soc_start_pct=40.0),
        faults=tuple(Fault(kind, at_s=3.0) for kind in faults),
        charge_s=5.0,
        idle_before_s=idle_before_s,
    )


def check_order(order: dict, truth: PlayedSession) -> None:
    body = order["body"]
    assert order["connector_id"] == truth.connector_id
    assert body["vin"] == truth.vin
    assert body["stop_reason"] == STOP_REASON[truth.faults], (truth.faults, body["stop_bits"])
    assert body["interrupted"] is False and body["end_reason"] == "normal"
    assert body["soc_start_pct"] == truth.expected.soc_start_pct
    # the order's energy is the meter delta over the session, as the meter counted it
    assert body["energy_source"] == "meter"
    assert abs(body["meter_energy_start_kwh"] - truth.meter_start_kwh) <= METER_RESOLUTION_KWH
    assert abs(body["meter_energy_end_kwh"] - truth.meter_end_kwh) <= METER_RESOLUTION_KWH
    assert abs(body["energy_kwh"] - truth.meter_delta_kwh) <= 2 * METER_RESOLUTION_KWH
    assert truth.meter_delta_kwh > 0.02  # it really charged
    assert body["ocmf"].startswith("OCMF|")


def test_station_end_to_end(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(2)
    c1, c2 = rig.connectors
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    rig.station.play(
        {
            c1: [plan("LE2E0100000000001"), plan("LE2E0100000000002", FaultKind.INSULATION)],
            c2: [plan("LE2E0200000000001", FaultKind.EMERGENCY_STOP), plan("LE2E0200000000002")],
        }
    )
    rig.station.wait(timeout_s=90)
    played = {p.vin: p for p in rig.station.played}
    assert len(played) == 4
    wait_until(lambda: len(orders(ledger_records(rig.ledger_path))) >= 4, 40, "four orders")
    wait_until(lambda: delivered_everywhere(rig), 30, "both uplinks to catch up")
    assert rig.agent.terminate() == 0, "SIGTERM must stop the service cleanly"

    # the regulator's path: export, public key from `evgw keys show`, verify
    records = export_and_verify(rig)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    ids = [r["id"] for r in records]
    assert ids == [f"{GATEWAY_ID}:{r['seq']}" for r in records]
    events = [r["body"]["event"] for r in records if r["kind"] == "event"]
    assert events[0] == "gateway_started" and events[-1] == "gateway_stopped"

    # MQTT: every record exactly once (a clean run resends nothing), and the broker's copy
    # alone rebuilds a chain that verifies with the gateway's key
    wait_for_broker(rig, records)
    assert rig.consumer.bad_messages == []
    assert rig.consumer.received_ids() == set(ids)
    assert rig.consumer.copies() == len(ids)
    broker_copy_verifies(rig, records[-1]["seq"])

    # T/CEC: every record of a kind the platform takes, exactly once, nothing else
    accepted = cec_accepted(rig)
    assert {a["record_id"] for a in accepted} == cec_expected_ids(records)
    assert [a for a in accepted if a["copies"] != 1] == []
    assert all(r["ret"] == 0 for r in rig.platform.receiver.requests())

    # the orders are the simulators' truth
    by_vin = {o["body"]["vin"]: o for o in orders(records)}
    assert len(orders(records)) == 4 and set(by_vin) == set(played)
    cec_orders = {
        a["record_id"]: a["data"]
        for a in accepted
        if a["interface"] == "notification_charge_order_info"
    }
    for vin, truth in played.items():
        order = by_vin[vin]
        check_order(order, truth)
        pushed = cec_orders[order["id"]]
        assert pushed["ConnectorID"] == truth.connector_id
        assert pushed["StopReason"] == order["body"]["stop_reason"]
        assert abs(float(pushed["TotalPower"]) - order["body"]["energy_kwh"]) <= 0.005

    # each fault raised its alarm, which cleared when the session ended; no audit alarm
    alarms = [r for r in records if r["kind"] == "alarm"]
    assert not [a for a in alarms if a["body"]["code"] in ENERGY_AUDIT_CODES]
    cec_alarms = [
        a["data"]["AlarmInfos"][0] for a in accepted if a["interface"] == "notification_alarmInfo"
    ]
    for truth in played.values():
        for fault in truth.faults:
            code = ALARM_CODE[fault]
            edges = [
                a["body"]["status"]
                for a in alarms
                if a["connector_id"] == truth.connector_id and a["body"]["code"] == code
            ]
            assert edges == ["raised", "cleared"], (fault, edges)
            pushed = [
                a["AlarmStatus"]
                for a in cec_alarms
                if a["ConnectorID"] == truth.connector_id and a["AlarmCode"] == code
            ]
            assert pushed == [1, 0], (fault, pushed)

    # the gateway only listened
    for cid in rig.connectors:
        adapter = rig.station.adapter(cid)
        assert adapter.opened_listen_only and adapter.transmit_requests == []
