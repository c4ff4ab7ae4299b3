"""Config apply: a complete ``evgw.toml`` text for the running service, applied part by part,
kept only when the service works with it.

One apply (``evgw config apply FILE``, the MQTT command ``config.apply``; both arrive as the
status socket's ``config`` verb):

1. the text is validated in full like ``evgw config check`` (every problem at once), the
   secrets the new config needs are read from the secrets file as it is (the text never
   carries secrets); keys only a restart applies (the other ``[gateway]`` keys, ``[ledger]``,
   ``[metrics]``) refuse the apply — each refusal is a ``config_refused`` event;
2. the text is written to a temporary file beside the config file and synced (a folder the
   service cannot write refuses the apply before anything changes);
3. the running parts the diff concerns are switched (:mod:`agent.service.parts`), the others
   keep running untouched;
4. within ``timeout_s`` (``gateway.apply_timeout_s`` of the running config unless the request
   names one) every bus, meter and uplink that worked before must work again; then the
   temporary file replaces the config file atomically (rename, folder synced) and the
   replaced file is kept as ``evgw.toml.1`` (older ones shift to ``.2`` … up to
   ``gateway.configs_kept``): ``config_applied``. Otherwise the previous config is switched
   back by the same partial path, the file on disk is left as it was: ``config_rolled_back``
   with the reason.

The file is replaced only once the new config proved itself, so a crash in the window comes
back on the previous file. Applies (and SIGHUP reloads) run one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Protocol

import msgspec

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.config.schema import Config
from agent.config.secrets import Secrets, load_secrets
from agent.ops.config_diff import Plan
from agent.service.parts import health, plan_for, switch
from agent.service.supervisor import Supervisor
from agent.service.systemd_notify import Notifier
from agent.service.wiring import Runtime, lifecycle_event
from agent.version import VERSION

log = logging.getLogger("evgw.apply")

MAX_CONFIG_BYTES: Final = 32_768
"""The longest config text an apply takes (the example config is 9 kB); with its JSON
escaping it stays within the status socket's line limit."""
MAX_REQUEST_BYTES: Final = 65_000
HEALTH_POLL_S: Final = 0.1
MAX_LISTED: Final = 50
"""At most this many changes or problems in a reply or event (the count says how many)."""


class ApplyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``config`` verb's request: ``{"op": "apply", "toml": "...", ...}``."""

    op: str
    toml: Annotated[str, msgspec.Meta(max_length=MAX_CONFIG_BYTES)]
    timeout_s: Annotated[float, msgspec.Meta(ge=1, le=600)] | None = None
    requested_by: Annotated[str, msgspec.Meta(max_length=80)] = "evgw config apply"


def decode_request(request: dict[str, Any]) -> ApplyRequest:
    """The request, or ValueError saying what is wrong with it."""
    try:
        decoded = msgspec.convert(request, ApplyRequest)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad config request: {exc}") from None
    if decoded.op != "apply":
        raise ValueError(f"unknown op {decoded.op[:32]!r}: apply")
    if len(decoded.toml.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ValueError(f"the config is longer than {MAX_CONFIG_BYTES} bytes")
    return decoded


class Running(Protocol):
    """What an apply needs of the service (:class:`agent.service.runner.Service`)."""

    config_path: Path
    config: Config | None
    config_bytes: bytes
    secrets: Secrets | None
    runtime: Runtime | None
    supervisor: Supervisor
    notifier: Notifier
    apply_lock: asyncio.Lock


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class Staged:
    """The new text in a synced temporary file beside the config file."""

    path: Path
    temp: Path

    @classmethod
    def write(cls, path: Path, data: bytes) -> Staged:
        for stale in path.parent.glob(f".{path.name}.apply-*"):  # left by a crash
            with contextlib.suppress(OSError):
                stale.unlink()
        temp = path.with_name(f".{path.name}.apply-{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as file:
            with contextlib.suppress(OSError):  # keep the running file's permissions
                os.fchmod(fd, path.stat().st_mode & 0o777)
            file.write(data)
            file.flush()
            os.fsync(fd)
        return cls(path, temp)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()

    def commit(self, keep: int) -> str | None:
        """Keep the replaced file as ``<name>.1`` (shifting older ones, at most ``keep``),
        rename the new one over it, sync the folder. Returns the kept copy's name."""
        kept = None
        if keep > 0 and self.path.exists():
            history = [self.path.with_name(f"{self.path.name}.{n}") for n in range(1, keep + 1)]
            with contextlib.suppress(FileNotFoundError):
                history[-1].unlink()
            for older, newer in zip(reversed(history[:-1]), reversed(history[1:]), strict=True):
                with contextlib.suppress(FileNotFoundError):
                    older.rename(newer)
            try:
                os.link(self.path, history[0])  # the file stays in place until the rename
            except OSError:  # a file system without hard links
                shutil.copy2(self.path, history[0])
            kept = history[0].name
        self.temp.rename(self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return kept


def _listed(items: list[str]) -> list[str]:
    return items[:MAX_LISTED] + (
        [f"… {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else []
    )


async def _record(running: Running, event: str, message: str, **details: Any) -> None:
    assert running.runtime is not None and running.config is not None
    await running.runtime.ledger.append(lifecycle_event(running.config, event, message, **details))


async def _refuse(running: Running, digest: str, by: str, problems: list[str]) -> dict[str, Any]:
    log.warning("config apply refused (%s): %s", by, "; ".join(problems[:5]))
    await _record(
        running,
        "config_refused",
        "config apply refused",
        sha256=digest,
        requested_by=by,
        problems=_listed(problems),
    )
    return {"ok": False, "outcome": "refused", "sha256": digest, "problems": _listed(problems)}


async def _wait_working(
    runtime: Runtime, before: set[str], timeout_s: float
) -> dict[str, str | None]:
    """Until every part in ``before`` that still exists works; what does not at the end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        now = health(runtime)
        failing = {part: why for part, why in now.items() if part in before and why is not None}
        if not failing or loop.time() >= deadline:
            return failing
        await asyncio.sleep(HEALTH_POLL_S)


async def apply_config(running: Running, request: ApplyRequest) -> dict[str, Any]:
    """One apply (module docstring); the reply for the caller."""
    async with running.apply_lock:
        return await _apply(running, request)


@dataclass(slots=True)
class _Candidate:
    """A valid new config, its plan and its staged file."""

    data: bytes
    digest: str
    by: str
    config: Config
    secrets: Secrets
    steps: Plan
    reply: dict[str, Any]
    staged: Staged


async def _prepare(running: Running, request: ApplyRequest) -> _Candidate | dict[str, Any]:
    """The candidate, or the reply refusing it (or saying it is the running config)."""
    assert running.config is not None
    data = request.toml.encode("utf-8", "surrogatepass")
    digest, by = sha256(data), request.requested_by
    try:
        new = parse_config(data, source="config")
        secrets = load_secrets(new)
    except ConfigError as exc:
        return await _refuse(running, digest, by, exc.problems)
    assert running.secrets is not None
    changes, steps = plan_for(running.config, new, running.secrets, secrets)
    if steps.restart:
        keys = ", ".join(steps.restart)
        only = "only a restart of the service applies this: edit the file on the gateway and "
        return await _refuse(running, digest, by, [f"{keys}: {only}restart it"])
    if data == running.config_bytes:
        return {"ok": True, "outcome": "unchanged", "sha256": digest, "changes": [], "parts": []}
    try:
        staged = Staged.write(running.config_path, data)
    except OSError as exc:
        why = f"cannot write beside {running.config_path}: {exc}"
        return await _refuse(running, digest, by, [why])
    reply = {
        "sha256": digest,
        "previous_sha256": sha256(running.config_bytes),
        "changes": _listed([str(c) for c in changes]),
        "parts": steps.parts(),
    }
    return _Candidate(data, digest, by, new, secrets, steps, reply, staged)


async def _apply(running: Running, request: ApplyRequest) -> dict[str, Any]:
    prepared = await _prepare(running, request)
    if isinstance(prepared, dict):
        return prepared
    c = prepared
    old, runtime = running.config, running.runtime
    assert old is not None and runtime is not None
    timeout_s = request.timeout_s or old.gateway.apply_timeout_s
    started = time.monotonic()
    before = {part for part, why in health(runtime).items() if why is None}
    running.notifier.reloading()
    try:
        await switch(runtime, running.supervisor, c.config, c.secrets, c.steps)
    except Exception as exc:  # a driver or uplink that cannot be built from it
        log.exception("switching to config %s failed", c.digest[:12])
        return await _roll_back(running, c, f"switching failed: {type(exc).__name__}: {exc}")
    failing = await _wait_working(runtime, before, timeout_s)
    kept = None
    if not failing:
        try:
            kept = c.staged.commit(old.gateway.configs_kept)
        except OSError as exc:
            failing = {"config file": f"cannot replace {running.config_path}: {exc}"}
    if failing:
        why = "; ".join(f"{part}: {why}" for part, why in failing.items())
        return await _roll_back(running, c, f"not working {timeout_s:g} s after the apply: {why}")
    running.config, running.secrets, running.config_bytes = c.config, c.secrets, c.data
    running.notifier.ready("config applied")
    took_s = round(time.monotonic() - started, 3)
    parts = ", ".join(c.steps.parts()) or "no running part"
    log.info("config %s applied (%s): %s", c.digest[:12], c.by, parts)
    details = {**c.reply, "kept": kept, "requested_by": c.by, "took_s": took_s}
    await _record(running, "config_applied", "config applied", **details)
    return {"ok": True, "outcome": "applied", **details}


async def _roll_back(running: Running, c: _Candidate, reason: str) -> dict[str, Any]:
    """Switch the previous config back by the same partial path; the file stays as it was."""
    old, old_secrets, runtime = running.config, running.secrets, running.runtime
    assert old is not None and old_secrets is not None and runtime is not None
    c.staged.discard()
    _changes, back = plan_for(c.config, old, c.secrets, old_secrets)
    try:
        await switch(runtime, running.supervisor, old, old_secrets, back)
    except Exception as exc:  # then only a restart brings the previous config back whole
        log.exception("switching back to the previous config failed")
        reason += f"; switching back failed too ({type(exc).__name__}: {exc}): restart the service"
    running.notifier.ready("config rolled back")
    log.error("config %s rolled back: %s", c.digest[:12], reason)
    details = {**c.reply, "reason": reason, "requested_by": c.by}
    await _record(running, "config_rolled_back", "config apply rolled back", **details)
    return {"ok": False, "outcome": "rolled_back", **details}


async def reload_parts(running: Running, config: Config, secrets: Secrets, text: bytes) -> None:
    """SIGHUP: the file on disk, switched part by part like an apply, without the wait and
    the rollback (the technician changed the file and asked for it); keys only a restart
    applies are logged and wait for it."""
    old, old_secrets, runtime = running.config, running.secrets, running.runtime
    assert old is not None and old_secrets is not None and runtime is not None
    _changes, steps = plan_for(old, config, old_secrets, secrets)
    if steps.restart:
        log.warning("%s: take effect at the next restart", ", ".join(steps.restart))
    try:
        await switch(runtime, running.supervisor, config, secrets, steps)
    except Exception:  # a driver or uplink that cannot be built: back to the running config
        log.exception("reload failed while switching; switching back to the running config")
        _changes, back = plan_for(config, old, secrets, old_secrets)
        await switch(runtime, running.supervisor, old, old_secrets, back)
        return
    running.config, running.secrets, running.config_bytes = config, secrets, text
    parts = steps.parts()
    log.info(
        "configuration reloaded from %s: %s",
        running.config_path,
        ", ".join(parts) or "no running part",
    )
    await runtime.ledger.append(
        lifecycle_event(
            config,
            "config_reloaded",
            "configuration reloaded",
            version=VERSION,
            parts=parts,
            sha256=sha256(text),
        )
    )


async def handle_request(running: Running, request: dict[str, Any]) -> dict[str, Any]:
    """The status socket's ``config`` verb."""
    try:
        decoded = decode_request(request)
    except ValueError as exc:
        return {"ok": False, "outcome": "refused", "problems": [str(exc)]}
    return await apply_config(running, decoded)
