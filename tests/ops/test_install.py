"""scripts/install.sh into a staging root: what it installs, that the unit verifies, uninstall."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

INSTALL = REPO / "scripts" / "install.sh"


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args, "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the installer chowns files: needs root")
def test_install_into_staging_root_then_uninstall(tmp_path: Path) -> None:
    if shutil.which("systemd-sysusers") is None or shutil.which("systemd-analyze") is None:
        pytest.skip("systemd tools are not installed")
    root = tmp_path / "root"
    release_key = tmp_path / "release.pub"
    release_key.write_text("-----BEGIN PUBLIC KEY-----\ntest\n-----END PUBLIC KEY-----\n")
    result = run_install("--root", str(root), "--release-key", str(release_key))
    assert result.returncode == 0, result.stdout + result.stderr

    # the releases layout: releases/VERSION, `current` linking to it, evgw on the PATH
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    current = root / "opt/evgw/current"
    assert os.readlink(current) == f"releases/{version}"
    assert (root / "opt/evgw/releases" / version / "bin/python").exists()
    on_path = root / "usr/local/bin/evgw"
    assert on_path.is_symlink() and on_path.resolve() == (current / "bin/evgw").resolve()
    assert (root / "etc/evgw/release.pub").read_text() == release_key.read_text()
    evgw = on_path
    version_out = subprocess.run([str(evgw), "--version"], capture_output=True, text=True)
    assert version_out.stdout.strip() == f"evgw {version}", version_out.stderr
    passwd = (root / "etc/passwd").read_text()
    evgw_user = next(line for line in passwd.splitlines() if line.startswith("evgw:"))
    uid, gid = int(evgw_user.split(":")[2]), int(evgw_user.split(":")[3])
    assert "dialout" in (root / "etc/group").read_text()
    unit = root / "etc/systemd/system/evgw.service"
    assert unit.read_text() == (REPO / "systemd/evgw.service").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/evgw.service").is_symlink()
    assert (root / "usr/lib/sysusers.d/evgw.conf").exists()
    # the root updater of releases the MQTT `update` command downloads
    for name in ("evgw-update.path", "evgw-update.service"):
        assert (root / "etc/systemd/system" / name).read_text() == (
            REPO / "systemd" / name
        ).read_text()
    assert (root / "etc/systemd/system/paths.target.wants/evgw-update.path").is_symlink()

    config = root / "etc/evgw/evgw.toml"
    secrets = root / "etc/evgw/secrets.toml"
    key = root / "var/lib/evgw/gateway.key"
    assert config.read_text() == (REPO / "config/evgw.example.toml").read_text()
    for private in (secrets, key):
        st = private.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (uid, gid), private
    assert stat.S_IMODE((root / "var/lib/evgw").stat().st_mode) == 0o700
    # config apply: the service replaces its own file in a sticky folder, never release.pub
    etc = (root / "etc/evgw").stat()
    assert stat.S_IMODE(etc.st_mode) == 0o1770 and (etc.st_uid, etc.st_gid) == (0, gid)
    assert (config.stat().st_uid, config.stat().st_gid) == (uid, gid)
    assert (root / "etc/evgw/release.pub").stat().st_uid == 0

    # the installed program works from its own venv, shipped data included (profiles, example)
    check = subprocess.run(
        [str(evgw), "config", "check", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    profiles = subprocess.run([str(evgw), "meter", "profiles"], capture_output=True, text=True)
    assert profiles.returncode == 0 and "djsf1352" in profiles.stdout, profiles.stderr

    # systemd-analyze verify on the installed unit, its paths resolved inside the staging root
    units = tmp_path / "units"
    units.mkdir()
    for name in ("evgw.service", "evgw-update.path", "evgw-update.service"):
        text = (root / "etc/systemd/system" / name).read_text()
        (units / name).write_text(text.replace("/opt/evgw/", f"{root}/opt/evgw/"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(u) for u in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr

    # a second install keeps the technician's config and the key
    config.write_text(config.read_text().replace("Futian Example Station", "Edited Station"))
    key_before = key.read_bytes()
    again = run_install("--root", str(root))
    assert again.returncode == 0, again.stderr
    assert "Edited Station" in config.read_text() and key.read_bytes() == key_before

    gone = run_install("--uninstall", "--root", str(root))
    assert gone.returncode == 0, gone.stderr
    assert not (root / "opt/evgw").exists() and not unit.exists()
    assert not on_path.is_symlink()
    assert not (root / "etc/systemd/system/evgw-update.path").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/evgw.service").exists()
    assert config.exists() and key.exists(), "uninstall keeps configuration and data"


def test_install_rejects_unknown_option() -> None:
    result = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "unknown option: --bogus" in result.stderr
