"""The wheel carries the three packages, the console script and the shipped data files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_contents(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("evgw-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "agent/cli.py",
        "agent/config.py",
        "agent/resources/evgw.example.toml",
        "agent/resources/secrets.example.toml",
        "agent/resources/demo.toml",
        "drivers/__init__.py",
        "sim/__init__.py",
    ):
        assert expected in names, expected
    for profile in (REPO / "config" / "meters").glob("*.toml"):
        assert f"agent/resources/meters/{profile.name}" in names, profile.name
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "evgw = agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
