"""Signed updates with rollback, end to end: install.sh lays out a staging root, releases are
built in the test (wheels with bumped versions, one that exits at start), and a systemd
stand-in driven by the test restarts the real service through the `current` link."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.ledger import GatewayKey
from agent.ops.release import pack
from tests.conftest import REPO
from tests.e2e.helpers import Rig, build_rig, ledger_records, wait_until
from tests.ops.fake_systemctl import alive

pytestmark = [
    pytest.mark.timeout(900),  # two installs and two updates with health windows
    pytest.mark.xdist_group("releases"),  # one worker builds the module's releases once
]

FAKE = Path(__file__).with_name("fake_systemctl.py")
BASE_VERSION = "0.1.0"


def pip(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def build_wheel(source: Path, version: str, out: Path, *, exits_at_start: bool = False) -> None:
    project = source / "pyproject.toml"
    text = project.read_text()
    project.write_text(text.replace(f'version = "{BASE_VERSION}"', f'version = "{version}"', 1))
    run = source / "agent/commands/run.py"
    original = run.read_text()
    if exits_at_start:
        marker = "def _run(args: argparse.Namespace) -> int:\n"
        assert marker in original
        run.write_text(original.replace(marker, marker + "    return 3\n", 1))
    try:
        pip("wheel", "--no-deps", "-w", str(out), str(source))
    finally:
        project.write_text(text)
        run.write_text(original)


def index_copy(destination: Path) -> Path:
    """The files as git's index has them: a consistent source while others edit the tree."""
    subprocess.run(
        ["git", "checkout-index", "-a", "-f", f"--prefix={destination}/"], cwd=REPO, check=True
    )
    return destination


@dataclass
class Releases:
    base_wheel: Path
    good: Path
    crash: Path
    key_pub: Path


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    work = tmp_path_factory.mktemp("releases")
    source = index_copy(work / "src")
    deps = work / "deps"
    pip("wheel", "-w", str(deps), str(source))  # evgw and every locked dependency
    (base_wheel,) = deps.glob("evgw-*.whl")
    base = work / "base"
    base.mkdir()
    base_wheel = Path(shutil.move(base_wheel, base / base_wheel.name))
    key = GatewayKey.generate()
    pub = work / "release.pub"
    pub.write_text(key.public_pem)
    artefacts = {}
    for version, crash in (("0.1.1", False), ("0.1.2", True)):
        folder = work / f"wheels-{version}"
        shutil.copytree(deps, folder)
        build_wheel(source, version, folder, exits_at_start=crash)
        artefacts[version], _ = pack(folder, key, work)
    return Releases(base_wheel, artefacts["0.1.1"], artefacts["0.1.2"], pub)


def evgw(*args: str, program: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([program, *args], capture_output=True, text=True, timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@dataclass
class Site:
    root: Path
    rig: Rig
    state: Path

    @property
    def evgw(self) -> str:
        """The `evgw` on the staged root's PATH (the current release's)."""
        return str(self.root / "usr/local/bin/evgw")

    def systemctl(self, action: str) -> None:
        done = subprocess.run([sys.executable, str(FAKE), str(self.state), action, "evgw.service"])
        assert done.returncode == 0

    def pid(self) -> int:
        return int((self.state / "evgw.pid").read_text())

    def update(self, artefact: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return evgw(
            "update",
            "apply",
            str(artefact),
            *("--root", str(self.root), "--config", str(self.rig.config)),
            *("--systemctl", f"{sys.executable} {FAKE} {self.state}"),
            *("--start-timeout-s", "30", "--health-s", "4", *extra),
            program=self.evgw,
        )

    def status(self) -> dict:
        done = evgw(
            "update",
            "status",
            "--root",
            str(self.root),
            "--config",
            str(self.rig.config),
            "--json",
            program=self.evgw,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def site(tmp_path: Path, releases: Releases) -> Iterator[Site]:
    if os.geteuid() != 0 or shutil.which("systemd-sysusers") is None:
        pytest.skip("install.sh into a staging root needs root and systemd-sysusers")
    root = tmp_path / "root"
    installed = subprocess.run(
        [
            "bash",
            str(REPO / "scripts/install.sh"),
            "--root",
            str(root),
            "--python",
            sys.executable,
            "--source",
            str(releases.base_wheel),
            "--release-key",
            str(releases.key_pub),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    rig = build_rig(tmp_path / "rig", 1)
    state = tmp_path / "systemd"
    state.mkdir()
    (state / "env.json").write_text(
        json.dumps({"root": str(root), "config": str(rig.config), "runtime": str(rig.directory)})
    )
    site = Site(root, rig, state)
    try:
        site.systemctl("start")
        yield site
    finally:
        site.systemctl("stop")
        rig.close()


def events(site: Site) -> list[str]:
    return [
        r["body"]["event"] for r in ledger_records(site.rig.ledger_path) if r["kind"] == "event"
    ]


def test_update_applied_then_a_crashing_release_rolled_back(site: Site, releases: Releases) -> None:
    wait_until(lambda: site.status()["running"] == BASE_VERSION, 60, "the base release to run")
    first_pid = site.pid()

    done = site.update(releases.good)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "evgw 0.1.1 is running and healthy" in done.stdout
    status = site.status()
    assert (status["current"], status["previous"], status["running"]) == (
        "0.1.1",
        BASE_VERSION,
        "0.1.1",
    )
    assert site.pid() != first_pid and alive(site.pid())
    shown = evgw(
        "status", "--config", str(site.rig.config), "--root", str(site.root), program=site.evgw
    )
    assert "release 0.1.1 (previous 0.1.0; evgw update status)" in shown.stdout, shown.stderr
    assert {"update_verified", "update_installed", "update_switched"} <= set(events(site))
    # the verdict of its first minute is written while it runs: the service records it
    wait_until(lambda: "update_healthy" in events(site), 30, "update_healthy in the ledger")

    # a release that exits at start: rolled back to 0.1.1, which runs again
    done = site.update(releases.crash)
    assert done.returncode == 1
    assert "0.1.2 rolled back to 0.1.1 (running again)" in done.stderr
    assert "did not reach READY" in done.stderr
    status = site.status()
    assert (status["current"], status["previous"]) == ("0.1.1", BASE_VERSION)
    wait_until(lambda: site.status()["running"] == "0.1.1", 30, "0.1.1 to run again")
    assert alive(site.pid())
    steps = [s["step"] for s in status["steps"]]
    assert steps[-2:] == ["update_switched", "update_rolled_back"]
    assert "update_rolled_back" in events(site)  # appended while the service was stopped
    journal = [s["step"] for s in status["steps"]]
    recorded = [e for e in events(site) if e.startswith("update_")]
    assert sorted(recorded) == sorted(journal)  # every step exactly once


def test_bad_artefacts_are_refused_and_the_service_untouched(
    site: Site, releases: Releases, tmp_path: Path
) -> None:
    wait_until(lambda: site.status()["running"] == BASE_VERSION, 60, "the base release to run")
    pid = site.pid()
    tampered = tmp_path / releases.good.name
    data = bytearray(releases.good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    shutil.copy(releases.good.with_name(releases.good.name + ".sig"), tmp_path)
    truncated = tmp_path / "short" / releases.good.name
    truncated.parent.mkdir()
    truncated.write_bytes(releases.good.read_bytes()[:50_000])
    shutil.copy(releases.good.with_name(releases.good.name + ".sig"), truncated.parent)
    for artefact in (tampered, truncated):
        done = site.update(artefact)
        assert done.returncode == 1 and "bad signature" in done.stderr, done.stderr
    other_key = tmp_path / "other.pub"
    other_key.write_text(GatewayKey.generate().public_pem)
    done = site.update(releases.good, "--release-key", str(other_key))
    assert done.returncode == 1 and "not signed by the release key" in done.stderr
    done = site.update(tmp_path / "absent.tar")
    assert done.returncode == 1 and "does not exist" in done.stderr
    assert site.pid() == pid and alive(pid)
    status = site.status()
    assert status["current"] == BASE_VERSION and status["releases"] == [BASE_VERSION]
    assert [s["step"] for s in status["steps"]] == ["update_refused"] * 4
