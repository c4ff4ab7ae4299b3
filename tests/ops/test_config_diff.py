"""`evgw config diff`: changes by key path with arrays keyed by id, and the parts they touch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.config.resources import read_resource

EXAMPLE = read_resource("evgw.example.toml")


def diff(tmp_path: Path, new_text: str) -> subprocess.CompletedProcess[str]:
    old, new = tmp_path / "running.toml", tmp_path / "new.toml"
    old.write_text(EXAMPLE)
    new.write_text(new_text)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "diff", str(new), "--against", str(old)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_same_config_exit_0(tmp_path: Path) -> None:
    done = diff(tmp_path, EXAMPLE + "\n# only a comment\n")
    assert done.returncode == 0 and "the same as" in done.stdout


def test_one_meter_poll_interval_touches_only_its_line(tmp_path: Path) -> None:
    first = EXAMPLE.index('meter_id = "dc1a"')
    at = EXAMPLE.index("poll_interval_s = 5", first)
    changed = EXAMPLE[:at] + "poll_interval_s = 7" + EXAMPLE[at + len("poll_interval_s = 5") :]
    done = diff(tmp_path, changed)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": 1 changes")
    assert lines[1].strip() == "meters.dc1a.poll_interval_s: 5.0 → 7.0"
    assert lines[-1] == "touches: meter line /dev/ttyUSB0"


def test_reordered_meters_are_no_change_and_bad_files_exit_2(tmp_path: Path) -> None:
    blocks = EXAMPLE.split("\n[[meters]]\n")  # not the commented-out example entries
    head, meters = blocks[0], blocks[1:]
    last = meters[-1]
    tail_at = last.index("\n[", 1) if "\n[" in last else len(last)
    meters[-1], rest = last[:tail_at] + "\n", last[tail_at:]
    reordered = head + "".join("\n[[meters]]\n" + m for m in reversed(meters)) + rest
    assert reordered != EXAMPLE
    assert diff(tmp_path, reordered).returncode == 0
    bad = diff(tmp_path, "[gateway\n")
    assert (
        bad.returncode == 2 and "TOML syntax error" in bad.stderr and "Traceback" not in bad.stderr
    )
