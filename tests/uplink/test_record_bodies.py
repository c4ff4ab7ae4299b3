"""Record body schemas: round trips and clear errors on broken bodies."""

from __future__ import annotations

import pytest

from agent.records.bodies import (
    BODY_TYPES,
    KINDS,
    AlarmBody,
    BmsProcessBody,
    BodyError,
    ConnectorStatusBody,
    body_to_dict,
    decode_body,
)


def bms() -> BmsProcessBody:
    return BmsProcessBody(
        session_id="S1",
        demand_voltage_v=400.0,
        demand_current_a=100.0,
        measured_voltage_v=398.5,
        measured_current_a=99.0,
        soc_pct=55,
        max_cell_voltage_v=3.45,
        max_temp_c=31,
        min_temp_c=25,
        charger_output_voltage_v=399.0,
        charger_output_current_a=99.5,
        max_allowed_charge_current_a=250.0,
        max_allowed_cell_voltage_v=3.65,
        max_allowed_temp_c=55,
        bms_protocol_version="V1.1",
        rated_capacity_ah=150.0,
    )


def test_every_kind_has_a_schema() -> None:
    assert set(BODY_TYPES) == set(KINDS)


def test_round_trip_with_nested_snapshot() -> None:
    alarm = AlarmBody(code=101, type=2, level=3, status="raised", message="BMS timeout", bms=bms())
    assert decode_body("alarm", body_to_dict(alarm)) == alarm


def test_errors_name_kind_and_field() -> None:
    body = body_to_dict(ConnectorStatusBody(status=3))
    body["status"] = 7
    with pytest.raises(BodyError, match=r"connector_status body: .*\$\.status"):
        decode_body("connector_status", body)
    with pytest.raises(BodyError, match="unknown record kind 'nope'"):
        decode_body("nope", {})
    with pytest.raises(BodyError, match=r"bms_process body: .*soc_pct"):
        decode_body("bms_process", {k: v for k, v in body_to_dict(bms()).items() if k != "soc_pct"})
    with pytest.raises(BodyError, match="unknown field `colour`"):
        decode_body("event", {"event": "started", "colour": "red"})
