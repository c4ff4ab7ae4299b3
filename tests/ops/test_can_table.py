"""`evgw can decode --format table` on the real capture: cyclic messages collapsed with count
and range, every line under 160 characters, the digest as a table, currents positive."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


def test_table_collapses_cyclic_messages(
    capture_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["can", "decode", str(capture_path), "--format", "table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) < 160
    assert len(lines) < 80  # 1,249 GB/T messages, collapsed
    (bcl,) = [line for line in lines if "  BCL  " in line]
    assert "×548 over 27.3 s" in bcl and "current_demand_a=20…35.8" in bcl
    # the CRM before and after recognition are separate lines (a change of state)
    crm = [line for line in lines if "  CRM  " in line]
    assert [("NOT_RECOGNISED" in c, "=RECOGNISED" in c) for c in crm] == [
        (True, False),
        (False, True),
    ]
    assert "stop_manual=ACTIVE" in out and "(other 11 bits NORMAL)" in out
    # charging currents are positive, as `evgw replay` writes them
    assert "max_charge_current_a=250.2" in out and "=-" not in out
    digest = {line.split()[0]: line for line in lines if line.startswith("  ") and "=" not in line}
    assert "VIN L1NSPGH98NA196202, LFP, 152.0 Ah, 364.8 V" in digest["vehicle"]
    assert digest["stop"].split(None, 1)[1] == "charger (BST stop_by_charger, CST stop_manual)"
    assert digest["errors"].split()[1] == "—" and "None" not in out
    assert "charging current up to 35.8 A" in digest["current"]
    assert "decode anomalies     implausible_year 1" in out
