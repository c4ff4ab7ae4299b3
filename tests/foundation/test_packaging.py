"""The wheel carries the three packages, the console script and the shipped data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def tracked_copy(destination: Path) -> Path:
    """The files git tracks, copied (links as links): a build from the work tree would reuse
    a stale ``build/`` folder and could pass with files the source no longer has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return destination


def test_wheel_contents(tmp_path: Path) -> None:
    source = tracked_copy(tmp_path / "src")
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
            str(source),
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
        "agent/config/load.py",
        "agent/uplink/mqtt/plugin.py",
        "agent/config/resources/evgw.example.toml",
        "agent/config/resources/secrets.example.toml",
        "agent/config/resources/demo.toml",
        "drivers/__init__.py",
        "sim/__init__.py",
    ):
        assert expected in names, expected
    for driver in ("modbus", "dlt645", "inputs"):
        profiles = sorted((REPO / "drivers" / driver / "profiles").glob("*.toml"))
        assert profiles, driver
        for profile in profiles:
            assert f"drivers/{driver}/profiles/{profile.name}" in names, profile.name
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "evgw = agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
