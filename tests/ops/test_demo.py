"""`evgw demo` end to end: the real service on the simulated station, report and state kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.commands.demo import render_live
from agent.demo.report import render_report


def test_demo_runs_and_reports(tmp_path: Path) -> None:
    state = tmp_path / "state"
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "demo",
            "--duration",
            "20",
            "--quiet",
            "--state-dir",
            str(state),
            "--report-json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "evgw demo report" in result.stdout and "chain: verified" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["chain_verified"] is True
    kinds = report["records_by_kind"]
    assert kinds["identity"] == 1
    # gateway started and stopped; the DL/T 645 meter's identity and counts, its cover opening;
    # the identity registers of the Modbus DC meter (DJSF1352-RN) and main meter (DTSU666)
    assert kinds["event"] == 7
    assert kinds["connector_status"] >= 6  # three connectors, idle then occupied/charging
    assert kinds["meter_sample"] >= 4
    # both DC sessions were running when the demo stopped: each left an order, closed at stop
    dc_orders = [o for o in report["orders"] if o["connector_id"].startswith("DEMODC")]
    assert {o["connector_id"] for o in dc_orders} == {"DEMODC0101", "DEMODC0102"}
    for order in report["orders"]:  # money per order and its billing-audit line
        assert order["money"].endswith("tariff std)") and " yuan (elec " in order["money"]
        assert order["billed"] == "no billed figure yet"  # written at the stop: not billed
    for order in dc_orders:
        assert order["ocmf_signed"] is True
        assert order["vin"].startswith("LSIMDEMO")
        assert order["energy_kwh"] > 0
    # gun B's meter cover was opened once during its session: the tamper alarm, the order flagged
    [tamper] = [a for a in report["site_alarms"] if a["code"] == 9101]
    assert tamper["connector_id"] == "DEMODC0102" and "meter_cover_open 0→1" in tamper["message"]
    assert "9101 on DEMODC0102: meter cover opened" in result.stdout
    # the embedded T/CEC receiver got the identity, statuses and orders, once each
    platforms = report["platforms"]
    assert platforms["cec_platform_accepted"]["notification_stationInfo"] == 1
    assert platforms["cec_platform_accepted"]["notification_stationStatus"] >= 6
    assert platforms["cec_platform_duplicates"] == 0
    uplinks = {u["uplink"]: u for u in report["ledger"]["uplinks"]}
    assert uplinks["cec"]["backlog"] == 0 and uplinks["cec"]["parked"] == 0
    assert uplinks["mqtt"]["backlog"] == 0  # mosquitto is installed by `make test`
    # --state-dir keeps what a technician would inspect
    assert (state / "ledger.db").exists() and (state / "gateway.key").exists()
    assert (state / "evgw.toml").exists()


def test_ctrl_c_drains_the_uplinks_and_the_report_has_no_none(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group, as a terminal sends it: the gateway stops and
    drains into the demo's broker, which the demo stops last."""
    report_path = tmp_path / "report.json"
    state = ["--state-dir", str(tmp_path / "state"), "--report-json", str(report_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", "--duration", "0", "--quiet", *state],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(14)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err and "None" not in out
    assert "cannot connect" not in err and "disconnected" not in err, err
    uplinks = {u["uplink"]: u for u in json.loads(report_path.read_text())["ledger"]["uplinks"]}
    assert uplinks["mqtt"]["backlog"] == 0 and uplinks["cec"]["backlog"] == 0
    assert "stop reason 4 connector disconnected or gateway stopped" in out


def test_live_view_and_report_give_meanings_never_none() -> None:
    snapshot = {
        "station_id": "S1",
        "connectors": [
            {"connector": "C1", "status": "charging", "phase": None, "alarms": [2, 9004]},
            {"connector": "C2", "status": "-", "soc_pct": None, "alarms": []},
        ],
        "ledger": {"last_seq": 5, "health": None},
        "uplinks": {"mqtt": {"acked": 5, "backlog": 0, "errors": 0, "last_error": None}},
    }
    view = render_live(snapshot, 3.0)
    assert "None" not in view and "2 emergency stop; 9004 meter energy register decreased" in view
    report = {
        "records": 1,
        "records_by_kind": {"alarm": 1},
        "chain_verified": True,
        "signed_upto_seq": 1,
        "chain_problems": [],
        "ledger": {"uplinks": []},
        "alarms_raised_by_code": {"4": 1},
        "orders": [
            {
                "connector_id": "C1",
                "session_id": "s1",
                "energy_kwh": 1.5,
                "charger_energy_kwh": None,
                "ccs_energy_kwh": None,
                "stop_reason": 2,
                "soc_start_pct": None,
                "soc_end_pct": 80,
                "audit": "ok",
                "ocmf_signed": True,
            }
        ],
    }
    text = render_report(report)
    assert "None" not in text and "4 insulation monitoring fault ×1" in text
    assert "stop reason 2 stopped by the vehicle (BMS)" in text and "charger —" in text
