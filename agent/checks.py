"""``evgw check``: the checks a technician runs after wiring a station.

Each check returns one or more :class:`CheckResult` lines (OK / WARN / FAIL) with a concrete
hint for anything that is not OK. Checks never raise: an unexpected exception becomes a FAIL
line that names it. The device and uplink checks live next to their drivers' APIs in
:mod:`agent.checks_devices`; this module holds the local ones (config, files, disk, clock).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.config import ConfigError, check_private_file, load_secrets, secrets_path
from agent.config_schema import Config


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    level: Level
    detail: str
    hint: str = ""


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Level.OK, detail)


def warn(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Level.WARN, detail, hint)


def fail(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Level.FAIL, detail, hint)


def guarded(name: str, check: Callable[[], Iterable[CheckResult]]) -> list[CheckResult]:
    """Run one check; an unexpected exception becomes a FAIL line instead of a traceback."""
    try:
        return list(check())
    except Exception as exc:
        return [
            fail(
                name,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this with the output of `evgw check --log-level debug`",
            )
        ]


def check_secrets(config: Config) -> list[CheckResult]:
    path, from_credentials = secrets_path(config)
    try:
        secrets = load_secrets(config)
    except ConfigError as exc:
        return [
            fail(
                "secrets",
                "; ".join(exc.problems),
                "secrets.toml must belong to the service user with mode 600 and hold the "
                "[mqtt]/[cec] values the uplinks need (evgw config example --secrets)",
            )
        ]
    if secrets.source == "(none)":
        return [ok("secrets", "no uplink needs secrets")]
    origin = "systemd credential" if from_credentials else "file"
    return [ok("secrets", f"{origin} {path} (fingerprint {secrets.fingerprint()})")]


def check_key(config: Config) -> list[CheckResult]:
    path = Path(config.ledger.key_path)
    if not path.exists():
        return [
            fail(
                "gateway key",
                f"{path} does not exist",
                f"create it: evgw keys generate --key {path}; chown evgw:evgw {path}",
            )
        ]
    problems = check_private_file(path, "gateway key")
    if problems:
        return [
            fail("gateway key", "; ".join(problems), f"chown evgw:evgw {path}; chmod 600 {path}")
        ]
    return [ok("gateway key", f"{path} (private)")]


def check_disk(
    config: Config, warn_free_mb: float = 1024, fail_free_mb: float = 100
) -> list[CheckResult]:
    folder = Path(config.ledger.path).parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_mb = usage.free / 1e6
    cap_mb = config.ledger.size_cap_mb
    detail = f"{free_mb:,.0f} MB free on the filesystem of {folder} (ledger cap {cap_mb:,.0f} MB)"
    if free_mb < fail_free_mb:
        return [
            fail(
                "disk", detail, "free space: the ledger needs room to keep records through outages"
            )
        ]
    if free_mb < min(warn_free_mb, config.ledger.size_cap_mb):
        return [
            warn(
                "disk",
                detail,
                "less free space than the ledger cap: lower ledger.size_cap_mb or free space",
            )
        ]
    if not folder.exists():
        return [
            warn(
                "disk",
                f"{detail}; {folder} does not exist yet",
                "it is created by systemd (StateDirectory=evgw) or by the installer",
            )
        ]
    if not os.access(folder, os.W_OK):
        mode = stat.S_IMODE(folder.stat().st_mode)
        return [
            fail("disk", f"{folder} is not writable (mode {mode:04o})", f"chown evgw:evgw {folder}")
        ]
    return [ok("disk", detail)]


class _Timex(ctypes.Structure):
    # struct timex is ~208 bytes on 64-bit Linux; modes = 0 makes adjtimex read-only
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 252)]


TIME_ERROR = 5


def clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex): True synchronised, False not, None unknown."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR


def check_clock() -> list[CheckResult]:
    synced = clock_synchronised()
    if synced is None:
        return [
            warn(
                "clock",
                "cannot tell whether the clock is synchronised",
                "check with timedatectl; records carry UTC times the platforms compare",
            )
        ]
    if not synced:
        return [
            fail(
                "clock",
                "the system clock is not synchronised (NTP)",
                "enable time sync (timedatectl set-ntp true); check the NTP servers are reachable",
            )
        ]
    return [ok("clock", "synchronised (NTP)")]


def local_checks(config: Config) -> list[CheckResult]:
    results: list[CheckResult] = []
    results += guarded("secrets", lambda: check_secrets(config))
    results += guarded("gateway key", lambda: check_key(config))
    results += guarded("disk", lambda: check_disk(config))
    results += guarded("clock", check_clock)
    return results


def render(results: list[CheckResult]) -> str:
    width = max((len(r.name) for r in results), default=4)
    lines = []
    for r in results:
        lines.append(f"{r.level.value:<4}  {r.name:<{width}}  {r.detail}")
        if r.hint and r.level is not Level.OK:
            lines.append(f"{'':<4}  {'':<{width}}  → {r.hint}")
    return "\n".join(lines)
