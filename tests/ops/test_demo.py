"""`evgw demo` end to end: the real service on the simulated station, report and state kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
    assert kinds["event"] == 2  # gateway started, gateway stopped
    assert kinds["connector_status"] >= 6  # three connectors, idle then occupied/charging
    assert kinds["meter_sample"] >= 4
    # both DC sessions were running when the demo stopped: each left an order, closed at stop
    dc_orders = [o for o in report["orders"] if o["connector_id"].startswith("DEMODC")]
    assert {o["connector_id"] for o in dc_orders} == {"DEMODC0101", "DEMODC0102"}
    for order in dc_orders:
        assert order["ocmf_signed"] is True
        assert order["vin"].startswith("LSIMDEMO")
        assert order["energy_kwh"] > 0
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
