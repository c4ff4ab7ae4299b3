"""`evgw diag` against a running gateway (real broker, T/CEC receiver, simulated station):
every part is in the archive, and no value of the secrets file appears anywhere in it."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import EVGW, Rig, build_rig, ledger_records, wait_until

MQTT_SECRETS = '\n[mqtt]\nusername = "diag-user-0042"\npassword = "pw-Zq8!diag-secret"\n'


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = build_rig(tmp_path / "rig", 1)
    secrets = rig.directory / "secrets.toml"
    secrets.write_text(secrets.read_text() + MQTT_SECRETS)
    # a careless comment in the config must not leak either
    password = tomllib.loads(MQTT_SECRETS)["mqtt"]["password"]
    rig.config.write_text(rig.config.read_text() + f"\n# old broker password: {password}\n")
    try:
        yield rig
    finally:
        rig.close()


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_diag_archive_is_complete_and_has_no_secret(rig: Rig, tmp_path: Path) -> None:
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    wait_until(
        lambda: (
            {"connector_status", "meter_sample"}
            <= {r["kind"] for r in ledger_records(rig.ledger_path)}
        ),
        60,
        "status and meter records",
    )
    out = tmp_path / "diag.tar.gz"
    result = subprocess.run(
        [*EVGW, "diag", "--config", str(rig.config), "--out", str(out), "--records", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o077 == 0
    files = members(out.read_bytes())
    for name in (
        "version.txt",
        "config.toml",
        "check.txt",
        "status.json",
        "counters.json",
        "ledger-stats.json",
        "records/connector_status.jsonl",
        "records/meter_sample.jsonl",
        "journal.txt",
        "README.txt",
    ):
        assert name in files, (name, sorted(files))
    status = json.loads(files["status.json"])
    assert status["gateway_id"] == "e2e-gw" and status["connectors"]
    counters = json.loads(files["counters.json"])
    assert counters["meters"] and counters["can_buses"]
    samples = files["records/meter_sample.jsonl"].splitlines()
    assert 1 <= len(samples) <= 3 and all(json.loads(s)["kind"] == "meter_sample" for s in samples)
    assert b"OK    config" in files["check.txt"]

    # the proof: no value of the secrets file, anywhere in the archive
    secrets = tomllib.loads((rig.directory / "secrets.toml").read_text())
    values = [v for table in secrets.values() for v in table.values()]
    assert len(values) == 6
    for name, data in files.items():
        for value in values:
            assert value.encode() not in data, f"{name} carries a secret"
    assert b"# old broker password: ***" in files["config.toml"]

    # the same archive on stdout (what the MQTT diag command reads)
    piped = subprocess.run(
        [*EVGW, "diag", "--config", str(rig.config), "--out", "-"], capture_output=True, timeout=120
    )
    assert piped.returncode == 0 and "status.json" in members(piped.stdout)


def test_diag_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*EVGW, "diag", "--config", str(tmp_path / "absent.toml")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "file not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([*EVGW, "diag", "--records", "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "--records -1: expected 0..1000" in result.stderr
