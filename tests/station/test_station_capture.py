"""The real GB/T 27930 capture through the station model: statuses, battery records, the order."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from agent.cli import main
from agent.ledger import GatewayKey, Ledger
from agent.station.replay import replay_file
from tests.conftest import capture_path  # noqa: F401  (fixture)
from tests.gbt27930.gbt_helpers import constant_timestamp_copy
from tests.station.station_fixtures import DC, check_bodies, make_config, of, ts

SESSION = f"{DC}-20231226030847487"
SESSION_START = 1703560127.487397  # the first CHM
CHARGING_START = 1703560145.456621  # CRO(0xAA)
STOP = 1703560172.857156  # the CST (manual stop)
LAST_FRAME_OF_SESSION = 1703560174.273717


def test_connector_status_sequence(capture_path: Path) -> None:  # noqa: F811
    records = replay_file(capture_path, make_config(), DC)
    check_bodies(records)
    statuses = of(records, "connector_status", DC)
    assert [(r.body["status"], r.body["phase"]) for r in statuses] == [
        (1, None),  # bus alive (foreign frames), nobody plugged in
        (2, "handshake"),
        (3, "charging"),
        (2, "stopping"),
        (1, None),  # the tracker closed the session
    ]
    assert ts(statuses[1]) == pytest.approx(SESSION_START, abs=1e-3)
    assert ts(statuses[2]) == pytest.approx(CHARGING_START, abs=1e-3)
    assert ts(statuses[3]) == pytest.approx(STOP, abs=1e-3)
    assert ts(statuses[4]) == pytest.approx(LAST_FRAME_OF_SESSION, abs=1e-3)
    assert [r.body["session_id"] for r in statuses] == [None, SESSION, SESSION, SESSION, None]
    assert statuses[3].body["soc_pct"] == 77
    # the first record of the run is the facility registration
    assert records[0].kind == "identity"
    assert records[0].body["equipments"][0]["connectors"][0]["connector_id"] == DC


@pytest.mark.parametrize("interval_s", [15.0, 5.0])
def test_bms_process_at_configured_interval(capture_path: Path, interval_s: float) -> None:  # noqa: F811
    cfg = make_config(extra=f"[sampling]\nbms_process_interval_s = {interval_s}\n")
    samples = of(replay_file(capture_path, cfg, DC), "bms_process", DC)
    times = [ts(r) for r in samples]
    # the first complete sample (BCS + BSM) comes right after charging starts
    assert times[0] - CHARGING_START == pytest.approx(1.03, abs=0.05)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # battery samples arrive about once a second: each record is the first sample past the interval
    assert all(interval_s <= g < interval_s + 1.1 for g in gaps), gaps
    assert times[-1] < STOP
    expected = 1 + int((STOP - times[0]) // interval_s)
    assert len(samples) in (expected - 1, expected)
    first = samples[0].body
    assert first == {
        "session_id": SESSION,
        "connector_status": 3,
        "demand_voltage_v": 426.1,
        "demand_current_a": 20.0,
        "measured_voltage_v": 378.0,
        "measured_current_a": 0.0,
        "soc_pct": 77,
        "max_cell_voltage_v": 3.32,
        "max_cell_voltage_no": 31,
        "min_cell_voltage_v": None,
        "max_temp_c": 4,
        "max_temp_probe_no": 7,
        "min_temp_c": 3,
        "min_temp_probe_no": 16,
        "charger_output_voltage_v": 378.1,
        "charger_output_current_a": 0.0,
        "max_allowed_charge_current_a": 250.2,
        "max_allowed_cell_voltage_v": 3.7,
        "max_allowed_temp_c": 65,
        "bms_protocol_version": "V1.1",
        "battery_type": 3,
        "rated_capacity_ah": 152.0,
        "vin": "L1NSPGH98NA196202",
        "bms_code": "L1NSPGH98NA196202",
        "elapsed_minutes": 0,
        "remaining_minutes": 0,
        "session_start_ts": "2023-12-26T03:08:47.487Z",
    }


def test_one_order_field_by_field_and_no_alarm(capture_path: Path) -> None:  # noqa: F811
    records = replay_file(capture_path, make_config(), DC)
    assert of(records, "alarm") == []
    orders = of(records, "charge_order", DC)
    assert len(orders) == 1
    o = orders[0].body
    assert orders[0].equipment_id == "SZFT0001DC01"
    assert o["session_id"] == SESSION
    assert o["start_ts"] == "2023-12-26T03:08:47.487Z"
    assert o["end_ts"] == "2023-12-26T03:09:34.274Z"
    assert o["duration_s"] == 47
    # no meter in the capture: energy from the charger's CSD, the CCS integral alongside
    assert o["meter_energy_start_kwh"] is None
    assert o["meter_energy_end_kwh"] is None
    assert o["meter_id"] is None
    assert o["energy_kwh"] == 0.1
    assert o["energy_source"] == "charger"
    assert o["charger_energy_kwh"] == 0.1
    assert o["ccs_energy_kwh"] == pytest.approx(0.059, abs=0.002)
    assert o["soc_start_pct"] == 77
    assert o["soc_end_pct"] == 77
    assert o["vin"] == "L1NSPGH98NA196202"
    assert o["peak_power_kw"] == pytest.approx(384.9 * 35.8 / 1000, abs=0.3)
    assert o["stop_reason"] == 0  # CST "manual stop": the user stopped
    assert o["stop_bits"] == {
        "cst.stop_manual": 1,
        "cst_raw": 0xF0F00004,  # bytes 04 00 F0 F0
        "bst.stop_by_charger": 1,
        "bst_raw": 0x40,
    }
    assert o["interrupted"] is False
    assert o["end_reason"] == "normal"
    assert o["ocmf"] is None  # nothing to sign without a meter
    assert o["vehicle"] == {
        "bms_protocol_version": "1.1",
        "battery_type": 3,
        "rated_capacity_ah": 152.0,
        "rated_voltage_v": 364.8,
        "nominal_energy_kwh": 55.4,
        "battery_manufacturer": None,
        "pack_serial": 1,
        "pack_charge_count": 149,
        "max_charge_voltage_v": 426.1,
        "max_charge_current_a": 250.2,
        "max_cell_voltage_v": 3.7,
        "max_temp_c": 65,
    }


async def test_capture_records_into_the_real_ledger(capture_path: Path, tmp_path: Path) -> None:  # noqa: F811
    records = replay_file(capture_path, make_config(), DC)
    ledger = await Ledger.open(tmp_path / "l.db", gateway_id="gw-test", key=GatewayKey.generate())
    try:
        for r in records:
            ledger.append_nowait(r)
        assert await ledger.flush() == len(records)
        [order] = await ledger.find("charge_order", session_id=SESSION)
        assert order.body["stop_reason"] == 0
        assert len(await ledger.find("bms_process", session_id=SESSION)) == 2
    finally:
        await ledger.close()


def test_capture_with_one_timestamp_is_sampled_per_message_cycle(
    capture_path: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real capture rewritten to one timestamp (an exporter that stamps a whole file once):
    a battery sample per message cycle instead of one for the whole session, no CCS integral
    of zero passed off as measured, the order and `evgw replay` say so."""
    flat = constant_timestamp_copy(capture_path, tmp_path / "flat.log")
    records = replay_file(flat, make_config(), DC)
    check_bodies(records)
    samples = of(records, "bms_process", DC)
    assert len(samples) > 50  # one per BCS/BSM cycle (time-gating gave 2: start and SOC step)
    assert {r.body["soc_pct"] for r in samples} == {77}
    [order] = of(records, "charge_order", DC)
    o = order.body
    assert o["duration_s"] is None  # no duration to give, not 0 s
    assert "timestamps_constant" not in o["stop_bits"]  # said by the null duration instead
    assert {r.body["elapsed_minutes"] for r in samples} == {None}
    assert o["ccs_energy_kwh"] is None  # no time to integrate over, not 0 kWh
    assert (o["energy_kwh"], o["energy_source"]) == (0.1, "charger")
    assert o["stop_reason"] == 0 and o["end_reason"] == "normal"

    real = of(replay_file(capture_path, make_config(), DC), "charge_order", DC)[0].body
    assert "timestamps_constant" not in real["stop_bits"] and real["ccs_energy_kwh"] > 0
    assert real["duration_s"] == 47

    assert main(["replay", "--can", str(flat)]) == 0
    err = capsys.readouterr().err
    assert "timestamps_constant" in err and "durations are unknown" in err
    assert main(["replay", "--can", str(capture_path)]) == 0
    assert "timestamps_constant" not in capsys.readouterr().err
