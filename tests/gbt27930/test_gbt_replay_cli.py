"""Replay of every log format python-can reads, and the `evgw can decode` command."""

from __future__ import annotations

import json
from pathlib import Path

import can
import pytest

from agent.cli import main
from drivers.gbt27930.events import ChargingSample
from drivers.gbt27930.replay import read_frames, replay_file
from drivers.gbt27930.report import session_record
from sim.charging import SimOptions, generate
from sim.charging_output import write_candump
from tests.gbt27930.gbt_helpers import constant_timestamp_copy


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".trc", ".csv", ".log.gz"])
def test_every_format_gives_the_same_session(
    capture_path: Path, tmp_path: Path, suffix: str
) -> None:
    target = tmp_path / f"copy{suffix}"
    if suffix == ".log.gz":
        import gzip

        target.write_bytes(gzip.compress(capture_path.read_bytes()))
    else:
        with can.Logger(str(target)) as writer:
            for f in read_frames(capture_path):
                writer(
                    can.Message(
                        timestamp=f.ts,
                        arbitration_id=f.can_id,
                        data=f.data,
                        is_extended_id=f.is_extended,
                        channel=0,
                    )
                )
    result = replay_file(target)
    (closed,) = result.sessions
    s = session_record(closed.summary)
    assert s["vehicle"]["vin"] == "L1NSPGH98NA196202"
    assert s["end_reason"] == "normal" and s["energy_kwh"] == 0.1
    assert result.pipeline.counts.messages["BCS"] == 110
    # .asc keeps times relative to its start; every format keeps the spacing
    assert result.first_ts is not None
    assert abs(s["start_ts"] - result.first_ts - 6.240138) < 1e-3


def test_cli_jsonl(capture_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["can", "decode", str(capture_path), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1249 - 0 + 112 - 0  # single-frame messages + reassembled transfers
    first = lines[0]
    assert first == {
        "ts": 1703560127.487397,
        "name": "CHM",
        "pgn": 0x2600,
        "src": 0x56,
        "dst": 0xF4,
        "fields": {
            "charger_protocol_version_minor": 1,
            "charger_protocol_version_major": 1,
            "charger_protocol_version": "1.1",
            "raw": "010100",
        },
    }
    bcl = next(x for x in lines if x["name"] == "BCL")
    assert bcl["fields"]["current_demand_a"] == -20.0
    assert bcl["fields"]["charge_mode"] == "CONSTANT_CURRENT"


def test_cli_summary(capture_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["can", "decode", str(capture_path), "--format", "summary"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (s,) = doc["sessions"]
    assert s["protocol_version"] == "1.1" and s["vehicle"]["battery_type"] == "LFP"
    assert s["stop_reason"]["initiator"] == "charger" and s["charge_minutes"] == 0
    assert doc["frames"]["foreign"] == 43 and doc["foreign_ids"]["0070F4B5"] == 42
    assert doc["anomalies"]["decode"] == {"implausible_year": 1} and doc["bad_log_lines"] == 0


def test_cli_table(capture_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["can", "decode", str(capture_path)]) == 0
    out = capsys.readouterr().out
    assert "C→B  CST     " in out and "stop_manual=ACTIVE" in out
    assert "VIN L1NSPGH98NA196202, LFP, 152.0 Ah, 364.8 V" in out


def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["can", "decode", str(tmp_path / "missing.log")]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert main(["can", "decode", str(other)]) == 2
    assert "unknown log format" in capsys.readouterr().err
    broken = tmp_path / "broken.log"
    broken.write_text("(1.0) can0 1826F456#010100\nthis is not a frame\n(x) can0 12#00\n")
    assert main(["can", "decode", str(broken), "--format", "summary"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bad_log_lines"] == 2 and doc["frames"]["total"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["can", "decode", str(broken), "--nope"])
    assert exc.value.code == 2


def test_simulated_candump_log_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = generate(options=SimOptions(soc_speedup=300))
    path = write_candump(session, tmp_path / "sim.log")
    assert main(["can", "decode", str(path), "--format", "summary"]) == 0
    (s,) = json.loads(capsys.readouterr().out)["sessions"]
    assert s["vehicle"]["vin"] == session.expected.vin
    assert s["energy_kwh"] == session.expected.energy_kwh


def test_constant_timestamps_sample_per_message_cycle(
    capture_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exporter that stamps the whole file once: samples follow the message cycles (one per
    BSM/BCS cycle), the session says so, and no duration of 0 s is reported."""
    flat = constant_timestamp_copy(capture_path, tmp_path / "flat.log")
    assert {f.ts for f in read_frames(flat)} == {1703560121.0}
    result = replay_file(flat)
    samples = [e for e in result.events if isinstance(e, ChargingSample)]
    assert len(samples) > 1 and all(e.timestamps_constant for e in samples)
    assert abs(len(samples) - result.pipeline.counts.messages["BSM"]) <= 5
    assert {e.soc_pct for e in samples[1:]} == {77}
    (closed,) = result.sessions
    s = session_record(closed.summary)
    assert s["timestamps_constant"] is True and s["duration_s"] is None
    assert s["end_reason"] == "normal" and s["energy_kwh"] == 0.1

    real = session_record(replay_file(capture_path).sessions[0].summary)
    assert real["timestamps_constant"] is False and real["duration_s"] == pytest.approx(
        46.786, abs=1e-3
    )

    assert main(["can", "decode", str(flat), "--format", "summary"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["sessions"]
    assert doc["duration_s"] is None and doc["timestamps_constant"] is True
    assert main(["can", "decode", str(flat)]) == 0
    out = capsys.readouterr().out
    assert "end normal, duration unknown (timestamps constant)" in out and " 0.0 s" not in out
