"""``evgw update apply``: a signed release installed beside the running one, switched to
atomically, restarted through systemd, and rolled back when it is not healthy.

Steps, each one line of the journal (:mod:`agent.ops.layout`) and, once the service is
stopped, one ``event`` record in the ledger (:mod:`agent.ops.update_ledger`):

``update_verified``      signature, manifest and every wheel hash checked
``update_refused``       not applied (bad signature, damaged, already running, install failed,
                         the new release cannot read this ledger); the service is untouched
``update_installed``     a new environment ``releases/<version>`` from the artefact's wheels only
``update_switched``      ``current`` → the new release, ``previous`` → the old one
``update_healthy``       READY and a healthy first minute (:mod:`agent.ops.health`)
``update_rolled_back``   ``current`` → the old release again, restarted, with the reason
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.config.schema import Config
from agent.errors import UserError
from agent.ledger import PublicKey
from agent.ops import health
from agent.ops.layout import Layout
from agent.ops.release import Release, ReleaseError, verify
from agent.ops.update_ledger import flush_steps, running_version
from agent.service.status_socket import socket_path

UNIT: Final = "evgw.service"
INSTALL_TIMEOUT_S: Final = 900.0


class UpdateFailed(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


@dataclass(frozen=True, slots=True)
class UpdateSettings:
    layout: Layout
    config: Config
    release_key: PublicKey
    systemctl: tuple[str, ...] = ("systemctl",)
    """The program that stops and starts the unit (``<program> stop|start evgw.service``)."""
    start_timeout_s: float = 60.0
    health_s: float = 60.0
    python: str = sys.executable


def _run(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str | None:
    """None when ``args`` succeeded, else the last line it printed."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{args[0]}: {exc}"
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"{args[0]} exited with {done.returncode}"


def _service(s: UpdateSettings, action: str) -> None:
    problem = _run([*s.systemctl, action, UNIT], 120)
    if problem:
        raise UpdateFailed(f"{' '.join(s.systemctl)} {action} {UNIT} failed: {problem}")


def install(s: UpdateSettings, release: Release) -> Path:
    """A new environment with the artefact's wheels and nothing else (no index)."""
    target = s.layout.release(release.version)
    if target.exists():
        shutil.rmtree(target)  # an earlier attempt that was never switched to
    s.layout.releases.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory(prefix="evgw-wheels-") as wheels:
        for name, data in release.wheels.items():
            Path(wheels, name).write_bytes(data)
        problem = _run([s.python, "-m", "venv", str(target)], 300) or _run(
            [
                str(target / "bin" / "python"),
                *("-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir"),
                *("--disable-pip-version-check", "--find-links", wheels),
                f"evgw=={release.version}",
            ],
            INSTALL_TIMEOUT_S,
            env,
        )
    if problem:
        shutil.rmtree(target, ignore_errors=True)
        raise UpdateFailed(f"installing {release.version} failed: {problem}")
    return target


def _reads_ledger(s: UpdateSettings, target: Path) -> None:
    """The new release must read this ledger (its format is forward-compatible)."""
    ledger = Path(s.config.ledger.path)
    if not ledger.is_file():
        return
    problem = _run([str(target / "bin" / "evgw"), "ledger", "stats", "--ledger", str(ledger)], 120)
    if problem:
        shutil.rmtree(target, ignore_errors=True)
        raise UpdateFailed(f"the new release cannot read the ledger {ledger}: {problem}")


def _refused(s: UpdateSettings, reason: str) -> UpdateFailed:
    s.layout.record("update_refused", message=f"update refused: {reason}", reason=reason)
    return UpdateFailed(f"update refused: {reason}")


def prepare(s: UpdateSettings, artefact: Path, signature: Path | None) -> Release:
    """Verify and install; the running service is not touched."""
    try:
        release = verify(artefact, s.release_key, signature)
    except ReleaseError as exc:
        raise _refused(s, str(exc)) from None
    running = s.layout.version_of(s.layout.current)
    if release.version == running:
        raise _refused(s, f"{release.version} is already the current release")
    s.layout.record("update_verified", version=release.version, artefact=artefact.name)
    try:
        target = install(s, release)
        _reads_ledger(s, target)
    except UpdateFailed as exc:
        raise _refused(s, str(exc)) from None
    s.layout.record("update_installed", version=release.version, path=str(target))
    return release


def _healthy(
    s: UpdateSettings, version: str, before: health.Baseline, restarted: float
) -> str | None:
    """None when ``version`` reached READY and had a healthy first minute, else why not."""
    status = socket_path(s.config.gateway.runtime_dir)
    if health.wait_ready(status, restarted, s.start_timeout_s) is None:
        return f"{version} did not reach READY within {s.start_timeout_s:.0f} s"
    running = running_version(s.config)
    if running != version:
        return f"the service that answers runs {running}, not {version}"
    return health.watch(status, before, s.health_s)


def _restart_into(s: UpdateSettings, version: str) -> float:
    _service(s, "stop")
    s.layout.point(s.layout.current, version)
    flush_steps(s.config, s.layout)
    restarted = time.monotonic()
    _service(s, "start")
    return restarted


def apply(s: UpdateSettings, artefact: Path, signature: Path | None = None) -> str:
    """Apply the update; returns the new version, or raises :class:`UpdateFailed` after a
    refusal or a rollback."""
    layout = s.layout
    old = layout.version_of(layout.current)
    old_previous = layout.version_of(layout.previous)
    release = prepare(s, artefact, signature)
    new = release.version
    before = health.Baseline.of(health.ask(socket_path(s.config.gateway.runtime_dir)))
    layout.record("update_switched", version=new, previous=old)
    if old is not None:
        layout.point(layout.previous, old)
    try:
        restarted = _restart_into(s, new)
        reason = _healthy(s, new, before, restarted)
    except UpdateFailed as exc:  # the unit did not stop or start: go back all the same
        reason = str(exc)
    if reason is None:
        layout.record("update_healthy", version=new, previous=old)
        return new
    if old is None:
        raise UpdateFailed(f"{new} is not healthy ({reason}) and there is no release to go back to")
    layout.record("update_rolled_back", version=new, to=old, reason=reason)
    _restart_into(s, old)
    if old_previous is not None:
        layout.point(layout.previous, old_previous)
    back = health.wait_ready(
        socket_path(s.config.gateway.runtime_dir), time.monotonic() - 1, s.start_timeout_s
    )
    after = "running again" if back is not None else "NOT answering either: see journalctl -u evgw"
    raise UpdateFailed(f"{new} rolled back to {old} ({after}): {reason}")


def apply_pending(s: UpdateSettings) -> list[tuple[str, str]]:
    """Apply each artefact the MQTT ``update`` command queued in ``<state_dir>/updates``,
    oldest first; each ends in ``done/`` or ``failed/`` (with the outcome beside it)."""
    folder = Path(s.config.gateway.state_dir) / "updates"
    queued = sorted(folder.glob("evgw-*.tar"), key=lambda p: p.stat().st_mtime)
    outcomes = []
    for artefact in queued:
        try:
            outcome, where = f"applied {apply(s, artefact)}", "done"
        except UpdateFailed as exc:
            outcome, where = str(exc), "failed"
        target = folder / where
        target.mkdir(exist_ok=True)
        for path in (artefact, artefact.with_name(artefact.name + ".sig")):
            if path.exists():
                os.replace(path, target / path.name)
        (target / f"{artefact.name}.outcome").write_text(outcome + "\n")
        outcomes.append((artefact.name, outcome))
    return outcomes
