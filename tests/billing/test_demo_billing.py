"""The demo's billing audit (#13, done-when): the simulated operator bills every order over
MQTT, the first of each five with 0.80 kWh too many; the report shows money and the billed
line per order, and the T/CEC receiver got alarm 9008 with both figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_operator_bills_and_one_in_five_is_wrong(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--duration", "75", "--quiet",
         "--state-dir", str(tmp_path / "state"), "--report-json", str(report_path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    billed = [o for o in report["orders"] if o["billed"] != "no billed figure yet"]
    assert len(billed) >= 2, report["orders"]
    first, *rest = billed
    assert first["billed"].endswith(
        "differs: 9008 billed energy differs from the metered order beyond tolerance"
    )
    assert all(o["billed"].endswith(": agrees") for o in rest)
    assert all("yuan (elec" in o["money"] for o in report["orders"])
    [note] = report["platforms"]["cec_audit_notes"]
    assert note.startswith("9008 raised: ") and first["session_id"] in note
    assert "(diff 0.80" in note  # 0.80 or 0.800: the metered energy has 2 or 3 decimals
    assert (
        "billed: metered" in result.stdout
        and "T/CEC receiver got the billing audit: 9008" in result.stdout
    )
