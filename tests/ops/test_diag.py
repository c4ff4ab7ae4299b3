"""`evgw diag` against a running gateway (real broker, T/CEC receiver, simulated station):
every part is in the archive, and no value of the secrets file appears anywhere in it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    EVGW,
    STATION_ID,
    TOPIC_PREFIX,
    Rig,
    build_rig,
    ledger_records,
    wait_until,
)
from tests.ops.conftest import Receiver
from tests.ops.platform import CommandClient, PlatformKey

MQTT_SECRETS = '\n[mqtt]\nusername = "diag-user-0042"\npassword = "pw-Zq8!diag-secret"\n'


PLATFORM = PlatformKey()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    rig = build_rig(tmp_path / "rig", 1)
    secrets = rig.directory / "secrets.toml"
    secrets.write_text(secrets.read_text() + MQTT_SECRETS)
    # a careless comment in the config must not leak either
    password = tomllib.loads(MQTT_SECRETS)["mqtt"]["password"]
    key = PLATFORM.save_public(rig.directory / "platform.pub")
    text = rig.config.read_text().replace(
        "[uplinks.mqtt]\n", f'[uplinks.mqtt]\ncommand_pubkey_file = "{key}"\n', 1
    )
    rig.config.write_text(text + f"\n# old broker password: {password}\n")
    monkeypatch.setenv("EVGW_CONFIG", str(rig.config))  # as the unit sets it for the service
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


def secret_values(rig: Rig) -> list[str]:
    secrets = tomllib.loads((rig.directory / "secrets.toml").read_text())
    values = [v for table in secrets.values() for v in table.values()]
    assert len(values) == 6
    return values


def assert_no_secret(files: dict[str, bytes], values: list[str]) -> None:
    for name, data in files.items():
        for value in values:
            assert value.encode() not in data, f"{name} carries a secret"


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
    assert_no_secret(files, secret_values(rig))
    assert b"# old broker password: ***" in files["config.toml"]

    # the same archive on stdout (what the MQTT diag command reads)
    piped = subprocess.run(
        [*EVGW, "diag", "--config", str(rig.config), "--out", "-"], capture_output=True, timeout=120
    )
    assert piped.returncode == 0 and "status.json" in members(piped.stdout)


def test_mqtt_diag_command_publishes_the_archive_in_bounded_parts(
    rig: Rig, receiver: Receiver
) -> None:
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    client = CommandClient(rig.broker.port, f"{TOPIC_PREFIX}/{STATION_ID}")
    try:
        args = {"chunk_bytes": 1024, "records": 2}
        first = client.ask("diag", PLATFORM.command(STATION_ID, "diag", "d-0", args), "d-0")
        assert first["ok"] is True, first
        result = first["result"]
        assert result["parts"] > 1 and len(base64.b64decode(result["data"])) == 1024
        # the parts of that archive in about eight replies (diag is rate-limited)
        chunk = max(1024, -(-result["size"] // 8))
        pieces = []
        for part in range(-(-result["size"] // chunk)):
            cid = f"d-{part + 1}"
            more = {"archive": result["archive"], "part": part, "chunk_bytes": chunk}
            reply = client.ask("diag", PLATFORM.command(STATION_ID, "diag", cid, more), cid)
            assert reply["ok"] is True, reply
            assert reply["result"]["parts"] == -(-result["size"] // chunk)
            pieces.append(base64.b64decode(reply["result"]["data"]))
        archive = b"".join(pieces)
        assert len(archive) == result["size"]
        assert hashlib.sha256(archive).hexdigest() == result["archive"]
        files = members(archive)
        assert "status.json" in files and "records/connector_status.jsonl" in files
        assert_no_secret(files, secret_values(rig))
        # or the whole archive PUT to a support URL
        up = {"archive": result["archive"], "upload_url": receiver.url()}
        reply = client.ask("diag", PLATFORM.command(STATION_ID, "diag", "d-up", up), "d-up")
        assert reply["ok"] is True, reply
        assert reply["result"]["sha256"] == result["archive"] and "token" not in str(reply)
        ((_path, headers, body),) = receiver.got
        assert body == archive and headers["X-Evgw-Station"] == STATION_ID
        # bad input: refused with the reason, the service untouched
        bad = {"archive": "0" * 64, "part": 0}
        reply = client.ask("diag", PLATFORM.command(STATION_ID, "diag", "d-x", bad), "d-x")
        assert reply["ok"] is False and "no archive" in reply["error"]
        huge = {"chunk_bytes": 10_000_000}
        reply = client.ask("diag", PLATFORM.command(STATION_ID, "diag", "d-y", huge), "d-y")
        assert reply["ok"] is False and "chunk_bytes 10000000 outside" in reply["error"]
        assert rig.agent.proc is not None and rig.agent.proc.poll() is None
    finally:
        client.close()


def test_diag_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*EVGW, "diag", "--config", str(tmp_path / "absent.toml")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "file not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([*EVGW, "diag", "--records", "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "--records -1: expected 0..1000" in result.stderr
