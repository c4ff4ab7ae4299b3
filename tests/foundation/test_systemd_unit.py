"""The systemd unit verifies and its security exposure stays at or below 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "evgw.service"
MAX_EXPOSURE = 2.0


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return tool


def staged_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's evgw, so `verify` can resolve it."""
    evgw = Path(sys.executable).with_name("evgw")
    assert evgw.exists(), f"{evgw} missing: install the package first (make test does)"
    text = UNIT.read_text().replace("/opt/evgw/current/bin/evgw", str(evgw))
    unit = tmp_path / "evgw.service"
    unit.write_text(text)
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze(), "verify", str(staged_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "evgw.service" in line and "Failed to" not in line.split("evgw.service", 1)[0]
    ]
    assert result.returncode == 0 and not problems, result.stderr


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(staged_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for evgw\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    exposure = float(match.group(1))
    print(f"\nsystemd-analyze security exposure of evgw.service: {exposure}")
    assert exposure <= MAX_EXPOSURE


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=evgw",
        "SupplementaryGroups=dialout",
        "StateDirectory=evgw",
        "ConfigurationDirectory=evgw",
        "RuntimeDirectory=evgw",
        "LoadCredential=secrets.toml:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_CAN AF_NETLINK",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "TimeoutStopSec=10s",
    ):
        assert setting in text, setting
    devices = re.findall(r"^DeviceAllow=(\S+)", text, re.M)
    assert devices and all(d.startswith("char-tty") or d == "char-pts" for d in devices), devices
