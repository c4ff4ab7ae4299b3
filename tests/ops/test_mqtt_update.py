"""The MQTT `update` command against a running gateway: it only downloads (HTTP on loopback),
checks the signed SHA-256 and queues the artefact for the root updater; wrong hashes,
truncated downloads, other hosts and lower roles are refused; `evgw update apply-pending`
files a badly signed artefact under failed/ with the reason."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger import GatewayKey
from agent.ops.release import pack, signature_path
from tests.e2e.helpers import STATION_ID, TOPIC_PREFIX, Rig, build_rig
from tests.ops.platform import CommandClient, PlatformKey
from tests.ops.test_release import wheels

ADMIN, READ = PlatformKey(), PlatformKey()
RELEASE_KEY = GatewayKey.generate()


class Files(http.server.BaseHTTPRequestHandler):
    folder: Path

    def do_GET(self) -> None:
        path = self.folder / self.path.lstrip("/").removeprefix("short/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # /short/…: the connection drops halfway, as a flaky site link would
        self.wfile.write(data[: len(data) // 2] if self.path.startswith("/short/") else data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Rig, str, Path]]:
    artefact, _ = pack(wheels(tmp_path / "wheels"), RELEASE_KEY, tmp_path / "dist")
    handler = type("Handler", (Files,), {"folder": artefact.parent})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rig = build_rig(tmp_path / "rig", 1)
    admin = ADMIN.save_public(rig.directory / "admin.pub")
    read = READ.save_public(rig.directory / "read.pub")
    keys = f'command_keys = {{admin = "{admin}", read = "{read}"}}\n'
    rig.config.write_text(
        rig.config.read_text().replace("[uplinks.mqtt]\n", f"[uplinks.mqtt]\n{keys}", 1)
    )
    monkeypatch.setenv("EVGW_CONFIG", str(rig.config))
    try:
        rig.agent.start()
        rig.agent.wait_ready(rig.connectors)
        yield rig, f"http://127.0.0.1:{server.server_port}", artefact
    finally:
        rig.close()
        server.shutdown()


def test_update_command_downloads_and_queues(site: tuple[Rig, str, Path], tmp_path: Path) -> None:
    rig, base, artefact = site
    client = CommandClient(rig.broker.port, f"{TOPIC_PREFIX}/{STATION_ID}")
    sha = hashlib.sha256(artefact.read_bytes()).hexdigest()
    sig = signature_path(artefact).read_text().strip()
    queue = rig.directory / "updates"
    n = 0

    def ask(key: PlatformKey, args: dict[str, str]) -> dict:
        nonlocal n
        n += 1
        return client.ask("update", key.command(STATION_ID, "update", f"u{n}", args), f"u{n}")

    try:
        url = f"{base}/{artefact.name}"
        lower = ask(READ, {"url": url, "sha256": sha, "sig": sig})
        assert lower["ok"] is False and "update needs the admin role" in lower["error"]
        wrong = ask(ADMIN, {"url": url, "sha256": "0" * 64, "sig": sig})
        assert wrong["ok"] is False and f"SHA-256 {sha} differs" in wrong["error"]
        short = ask(ADMIN, {"url": f"{base}/short/{artefact.name}", "sha256": sha, "sig": sig})
        assert short["ok"] is False and "truncated" in short["error"]
        elsewhere = ask(
            ADMIN, {"url": f"http://192.0.2.1/{artefact.name}", "sha256": sha, "sig": sig}
        )
        assert elsewhere["ok"] is False and "must be https://" in elsewhere["error"]
        assert not list(queue.glob("*.tar")), "nothing is queued by a refused download"
        good = ask(ADMIN, {"url": url, "sha256": sha, "sig": sig})
        assert good["ok"] is True, good
        assert good["result"] == {
            "queued": artefact.name,
            "size": artefact.stat().st_size,
            "sha256": sha,
        }
    finally:
        client.close()
    queued = queue / artefact.name
    assert queued.read_bytes() == artefact.read_bytes()
    assert (queue / f"{artefact.name}.sig").read_text().strip() == sig
    assert not list(queue.glob(".*.part"))

    # the root updater checks the signature against the installed release key
    root = tmp_path / "root"
    (root / "etc/evgw").mkdir(parents=True)
    (root / "etc/evgw/release.pub").write_text(GatewayKey.generate().public_pem)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "update",
            "apply-pending",
            "--root",
            str(root),
            "--config",
            str(rig.config),
            "--systemctl",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "bad signature" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert (queue / "failed" / artefact.name).exists() and not queued.exists()
    assert "bad signature" in (queue / "failed" / f"{artefact.name}.outcome").read_text()
    assert rig.agent.proc is not None and rig.agent.proc.poll() is None  # untouched
