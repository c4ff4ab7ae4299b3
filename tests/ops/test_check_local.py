"""`evgw check` on good and broken local setups: the hint for every non-OK line is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.commands.check import run_checks
from agent.commission.results import Level
from tests.foundation.test_config import BASE, CEC, GOOD_SECRETS


def write_setup(tmp_path: Path, *, key_mode: int = 0o600, secrets_mode: int = 0o600) -> Path:
    key = tmp_path / "gateway.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key.write_bytes(pem)
    key.chmod(key_mode)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(GOOD_SECRETS)
    secrets.chmod(secrets_mode)
    text = BASE.replace("SECRETS", str(secrets)).replace("[[can_buses]]", CEC, 1)
    text += f'\n[ledger]\npath = "{tmp_path}/ledger.db"\nkey_path = "{key}"\nsize_cap_mb = 16\n'
    config = tmp_path / "evgw.toml"
    config.write_text(text)
    return config


def by_name(results: list) -> dict:
    return {r.name: r for r in results}


def test_good_local_setup(tmp_path: Path) -> None:
    results = by_name(run_checks(write_setup(tmp_path)))
    assert results["config"].level is Level.OK
    assert results["secrets"].level is Level.OK and "fingerprint" in results["secrets"].detail
    assert results["gateway key"].level is Level.OK
    assert results["disk"].level is Level.OK and "ledger cap 16 MB" in results["disk"].detail
    assert results["clock"].level in (Level.OK, Level.FAIL, Level.WARN)  # depends on this machine


def test_world_readable_key_fails_with_chmod_hint(tmp_path: Path) -> None:
    results = by_name(run_checks(write_setup(tmp_path, key_mode=0o644)))
    key = results["gateway key"]
    assert key.level is Level.FAIL
    assert "readable or writable by others (mode 0644)" in key.detail
    assert f"chmod 600 {tmp_path / 'gateway.key'}" in key.hint


def test_missing_key_hints_generate(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    (tmp_path / "gateway.key").unlink()
    key = by_name(run_checks(config))["gateway key"]
    assert key.level is Level.FAIL
    assert f"evgw keys generate --key {tmp_path / 'gateway.key'}" in key.hint


def test_group_readable_secrets_fail(tmp_path: Path) -> None:
    secrets = by_name(run_checks(write_setup(tmp_path, secrets_mode=0o640)))["secrets"]
    assert secrets.level is Level.FAIL
    assert "chmod 600" in secrets.detail and "mode 600" in secrets.hint


def test_broken_config_lists_each_problem(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    config.write_text(
        config.read_text()
        .replace("unit_id = 2\n", "unit_id = 0\n")
        .replace('name = "Station"', 'nme = "Station"')
    )
    results = run_checks(config)
    failed = [r for r in results if r.level is Level.FAIL]
    assert failed and all(r.name == "config" for r in failed)
    skipped = {r.name: r.detail for r in results if r.level is Level.SKIP}
    assert skipped == dict.fromkeys(
        ("local files", "devices", "uplinks"), "not tried: the config is not valid"
    )
    details = " | ".join(r.detail for r in results)
    assert 'meters[1].unit_id: expected `int` >= 1, found 0 (meter "m2")' in details
    assert "station.nme: unknown key (did you mean `name`?)" in details


def test_check_command_exit_status(tmp_path: Path) -> None:
    config = write_setup(tmp_path, key_mode=0o644)
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "--local-only", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CREDENTIALS_DIRECTORY": ""},
    )
    assert result.returncode == 1
    assert "FAIL  gateway key" in result.stdout
    assert "→ chown evgw:evgw" in result.stdout
    assert "Traceback" not in result.stderr


def test_local_only_names_what_it_skipped(tmp_path: Path) -> None:
    results = run_checks(write_setup(tmp_path))
    skipped = {r.name: r.detail for r in results if r.level is Level.SKIP}
    assert skipped and all(reason == "not tried: --local-only" for reason in skipped.values())
    assert "meter m1" in skipped and "T/CEC platform" in skipped


def test_unreadable_secrets_skip_the_uplinks_with_the_reason(tmp_path: Path) -> None:
    config = write_setup(tmp_path, secrets_mode=0o644)
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "--config", str(config), "--listen-s", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CREDENTIALS_DIRECTORY": ""},
    )
    assert result.returncode == 1
    assert "FAIL  secrets" in result.stdout
    assert "not tried: the secrets could not be loaded" in result.stdout, result.stdout
    assert "skipped" in result.stdout.splitlines()[-1] and "Traceback" not in result.stderr


def test_missing_tls_file_is_named_and_the_uplink_skipped(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    ca = tmp_path / "absent-ca.pem"
    text = config.read_text().replace(
        "[[can_buses]]",
        f'[uplinks.mqtt]\nbrokers = ["127.0.0.1:1"]\nca_file = "{ca}"\n\n[[can_buses]]',
        1,
    )
    config.write_text(text)
    results = run_checks(config, devices=True, listen_s=0)
    mqtt = [r for r in results if r.name == "MQTT"]
    assert [r.level for r in mqtt] == [Level.FAIL, Level.SKIP], mqtt
    assert f"uplinks.mqtt.ca_file: {ca} does not exist" in mqtt[0].detail
    assert str(ca) in mqtt[0].hint
    cli = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        cli.returncode == 0 and f"warning: uplinks.mqtt.ca_file: {ca} does not exist" in cli.stderr
    )
