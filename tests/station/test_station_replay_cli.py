"""``evgw replay``: JSON Lines on stdout, a summary on stderr, clear errors."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agent.cli import main
from agent.records.bodies import decode_body
from tests.conftest import capture_path  # noqa: F401  (fixture)
from tests.station.station_fixtures import BASE, DC


def test_replay_prints_every_record_as_json_lines(
    capture_path: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = tmp_path / "evgw.toml"
    cfg.write_text(BASE)
    assert main(["replay", "--can", str(capture_path), "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    lines = [msgspec.json.decode(line) for line in captured.out.splitlines()]
    kinds = [r["kind"] for r in lines if r["connector_id"] in (DC, None)]
    assert kinds == [
        "identity",
        "connector_status",
        "connector_status",
        "connector_status",
        "bms_process",
        "bms_process",
        "connector_status",
        "connector_status",
        "charge_order",
    ]
    for r in lines:
        decode_body(r["kind"], r["body"])
        assert r["station_id"] == "SZ-FT-0001"
    assert lines[-1]["connector_id"] == DC
    assert lines[-1]["body"]["stop_reason"] == 0
    assert "1 charge_order" in captured.err


def test_replay_without_config_uses_a_default_station(
    capture_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "--can", str(capture_path), "--connector", "GUN1"]) == 0
    last = msgspec.json.decode(capsys.readouterr().out.splitlines()[-1])
    assert (last["kind"], last["connector_id"]) == ("charge_order", "GUN1")


def test_replay_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--can", str(tmp_path / "missing.log")]) == 2
    assert "missing.log: no such file" in capsys.readouterr().err
    wrong = tmp_path / "capture.txt"
    wrong.write_text("x")
    assert main(["replay", "--can", str(wrong)]) == 2
    assert "unknown log format" in capsys.readouterr().err
    cfg = tmp_path / "evgw.toml"
    cfg.write_text(BASE)
    log = tmp_path / "ok.log"
    log.write_text("(1703560121.247259) can0 0070F4B5#0000B5\n")
    assert main(["replay", "--can", str(log), "--config", str(cfg), "--connector", "X"]) == 2
    assert "no connector 'X'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--can", str(log), "--bogus"])
    assert exc.value.code == 2
