"""``evgw check``: the checks a technician runs after wiring a station.

Each check returns one or more :class:`CheckResult` lines (OK / WARN / FAIL) with a concrete
hint for anything that is not OK. Checks never raise: an unexpected exception becomes a FAIL
line that names it. The device and uplink checks live next to their drivers' APIs in
:mod:`agent.commission.devices`; this module holds the local ones (config, files, disk, clock).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from agent.commission.results import CheckResult, fail, guarded, ok, warn
from agent.config.errors import ConfigError
from agent.config.load import config_warnings
from agent.config.schema import Config
from agent.config.secrets import check_private_file, load_secrets, secrets_path
from agent.service.clock import clock_synchronised


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
    results: list[CheckResult] = [
        warn("config", w, "see docs/OPERATIONS.md, Platforms") for w in config_warnings(config)
    ]
    results += guarded("secrets", lambda: check_secrets(config))
    results += guarded("gateway key", lambda: check_key(config))
    results += guarded("disk", lambda: check_disk(config))
    results += guarded("clock", check_clock)
    return results
