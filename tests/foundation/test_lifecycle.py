"""`evgw run` as a real process under a fake systemd: READY, WATCHDOG, reload, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from tests.foundation.test_config import BASE, CEC, GOOD_SECRETS

EVGW = [sys.executable, "-m", "agent.cli"]


class FakeSystemd:
    """The datagram socket systemd would listen on for sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, needle: str, timeout_s: float = 15.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(message)
            if needle in message:
                return message
        raise AssertionError(f"no {needle!r} from the service; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.close()


def with_ledger(text: str, directory: Path) -> str:
    """The config text with its ledger and a fresh private gateway key in ``directory``."""
    key = directory / "gateway.key"
    if not key.exists():
        GatewayKey.generate().save(key)
    return text + f'\n[ledger]\npath = "{directory}/ledger.db"\nkey_path = "{key}"\n'


async def ledger_events(directory: Path) -> list[str]:
    """The lifecycle events the service left in its ledger."""
    ledger = await Ledger.open(
        directory / "ledger.db", gateway_id=None, key=GatewayKey.load(directory / "gateway.key")
    )
    try:
        return [r.body["event"] for r in await ledger.find("event")]
    finally:
        await ledger.close()


def start_service(config: Path, env_extra: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env["RUNTIME_DIRECTORY"] = str(config.parent)  # as systemd's RuntimeDirectory= would
    env.update(env_extra)
    return subprocess.Popen(
        [*EVGW, "run", "--config", str(config), "--log-level", "debug"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )


def wait_for_log(log: Path, needle: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged; log so far:\n{log.read_text(errors='replace')}")


def test_lifecycle_ready_watchdog_reload_stop(tmp_path: Path, systemd: FakeSystemd) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(GOOD_SECRETS)
    secrets.chmod(0o600)
    good = with_ledger(
        BASE.replace("SECRETS", str(secrets)).replace("[[can_buses]]", CEC, 1), tmp_path
    )
    config = tmp_path / "evgw.toml"
    config.write_text(good)
    log = tmp_path / "stderr.log"
    proc = start_service(
        config, {"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "200000"}, log
    )
    try:
        ready = systemd.wait_for("READY=1")
        assert "STATUS=station S1: 2 connectors, 2 meters, 1 CAN buses, uplinks: cec" in ready
        systemd.wait_for("WATCHDOG=1")
        systemd.wait_for("WATCHDOG=1")  # pinged repeatedly, from the loop

        # `evgw status` asks the running service over its socket
        status = subprocess.run(
            [*EVGW, "status", "--socket", str(tmp_path / "status.sock")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("gateway gw-1  station S1  up ")
        assert "station S1: 2 connectors, 2 meters, 1 CAN buses, uplinks: cec" in status.stdout
        as_json = subprocess.run(
            [*EVGW, "status", "--json", "--socket", str(tmp_path / "status.sock")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert as_json.returncode == 0, as_json.stderr
        snapshot = json.loads(as_json.stdout)
        assert snapshot["gateway_id"] == "gw-1"
        assert [c["connector"] for c in snapshot["connectors"]] == ["C1", "C2"]
        assert snapshot["can_buses"]["C1"]["state"] in ("open", "down")
        assert set(snapshot["meters"]) == {"m1", "m2"}

        # a broken config on SIGHUP: rejected, logged, the service keeps running
        config.write_text(good.replace("unit_id = 2\n", "unit_id = 999\n"))
        proc.send_signal(signal.SIGHUP)
        text = wait_for_log(log, "reload rejected")
        assert "meters[1].unit_id: expected `int` <= 247, found 999" in text
        systemd.wait_for("WATCHDOG=1")
        assert proc.poll() is None

        # a good config on SIGHUP: reloaded
        config.write_text(
            good.replace('name = "Station"', 'name = "Station renamed"').replace(
                '[[can_buses]]\nconnector_id = "C1"', '[[can_buses]]\nconnector_id = "C2"'
            )
        )
        proc.send_signal(signal.SIGHUP)
        systemd.wait_for("RELOADING=1")
        assert "READY=1" in systemd.wait_for("READY=1")
        wait_for_log(log, "configuration reloaded")

        # SIGTERM: STOPPING=1 then exit 0 within 10 s
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING=1")
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        text = log.read_text()
        assert "stopped" in text
        assert not (tmp_path / "status.sock").exists(), "the socket is removed at exit"
        events = asyncio.run(ledger_events(tmp_path))
        assert events == ["gateway_started", "config_reloaded", "gateway_stopped"]
        assert "Traceback" not in text
        assert "secrets loaded from" in text and "fingerprint" in text
        for secret in (
            "OPSECRET12345678",
            "DATASECRET123456",
            "DATAIV1234567890",
            "SIGSECRET1234567",
        ):
            assert secret not in text, "a secret reached the log"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_exits_2_before_ready(tmp_path: Path, systemd: FakeSystemd) -> None:
    config = tmp_path / "evgw.toml"
    config.write_text(BASE.replace("unit_id = 1\n", "unit_id = 0\n"))
    log = tmp_path / "stderr.log"
    proc = start_service(config, {"NOTIFY_SOCKET": str(systemd.path)}, log)
    assert proc.wait(timeout=30) == 2
    text = log.read_text()
    assert "meters[0].unit_id: expected `int` >= 1, found 0" in text
    assert "Traceback" not in text
    systemd.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        systemd.sock.recv(4096)  # never said READY


def test_journald_format(tmp_path: Path) -> None:
    """With JOURNAL_STREAM naming stderr: syslog priority prefixes, no timestamps."""
    config = tmp_path / "evgw.toml"
    config.write_text(with_ledger(BASE.replace("SECRETS", str(tmp_path / "none.toml")), tmp_path))
    log = tmp_path / "stderr.log"
    log.touch()
    st = log.stat()
    proc = start_service(config, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, log)
    try:
        wait_for_log(log, "started: gateway gw-1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in log.read_text().splitlines() if line]
    assert lines, "nothing logged"
    assert all(line[0] == "<" and line[2] == ">" for line in lines), lines
    assert any(
        line.startswith("<6>evgw.service: started: gateway gw-1, station S1") for line in lines
    )
    assert not any(line[3:7].isdigit() for line in lines), "journald lines carry no timestamp"
