"""``evgw diag``: one archive a support engineer can read, with no secret in it.

A gzipped tar of text files under ``evgw-diag-<gateway>-<time>/``:

``version.txt``
    evgw, Python and the operating system;
``config.toml``
    the config file as it is on disk;
``check.txt``
    the local checks of ``evgw check`` (config, secrets, key, disk, clock): the devices are
    not touched, the running service owns them;
``status.json``
    ``evgw status --json`` of the running service (or why it did not answer);
``counters.json``
    the CAN bus and meter rows of that status (frames, anomalies, polls, online);
``ledger-stats.json`` and ``records/<kind>.jsonl``
    the ledger's counts and the last records of each kind;
``journal.txt``
    the unit's recent journal lines, when ``journalctl`` exists;
``README.txt``
    this list, and what could not be gathered.

Every member passes through :class:`agent.ops.redact.Redactor` first.
"""

from __future__ import annotations

import collections
import io
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from agent.commission.local import local_checks
from agent.commission.results import ok, render
from agent.config.schema import Config
from agent.errors import UserError
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.stats import ledger_stats
from agent.ops.redact import Redactor, secret_values
from agent.service.status_socket import query_status, socket_path
from agent.version import VERSION

_DECODE: Final = msgspec.json.Decoder().decode
UNIT: Final = "evgw.service"
MAX_ARCHIVE_BYTES: Final = 16 * 1024 * 1024
"""An archive larger than this is refused (fewer records per kind will fit)."""


@dataclass(slots=True)
class Archive:
    """The members gathered so far, and what could not be gathered."""

    redactor: Redactor
    folder: str
    members: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def add(self, name: str, content: str | bytes) -> None:
        raw = content.encode("utf-8") if isinstance(content, str) else content
        self.members[name] = self.redactor.data(raw)

    def add_json(self, name: str, value: Any) -> None:
        self.add(name, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def tar_gz(self, mtime: float) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in self.members.items():
                info = tarfile.TarInfo(f"{self.folder}/{name}")
                info.size, info.mtime, info.mode = len(data), int(mtime), 0o600
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def _version() -> str:
    return (
        f"evgw {VERSION}\npython {sys.version.split()[0]} ({sys.executable})\n"
        f"system {platform.platform()} {platform.machine()}\n"
    )


def _status(archive: Archive, config: Config) -> None:
    path = socket_path(config.gateway.runtime_dir)
    try:
        snapshot = query_status(path)
    except (OSError, ValueError) as exc:
        archive.missing.append(f"status: the service did not answer on {path} ({exc})")
        return
    archive.add_json("status.json", snapshot)
    archive.add_json(
        "counters.json",
        {"can_buses": snapshot.get("can_buses", []), "meters": snapshot.get("meters", [])},
    )


def _ledger(archive: Archive, config: Config, per_kind: int) -> None:
    path = Path(config.ledger.path)
    try:
        conn = open_for_reading(path)
    except UserError as exc:
        archive.missing.append(f"ledger: {exc}")
        return
    try:
        stats = ledger_stats(conn, path)
        archive.add_json("ledger-stats.json", stats)
        last: dict[str, collections.deque[bytes]] = {
            kind: collections.deque(maxlen=per_kind) for kind in stats["kinds"]
        }
        for line in export_lines(conn):
            item = _DECODE(line)
            kind = item.get("kind") if isinstance(item, dict) else None
            if kind in last and "body" in item:
                last[kind].append(line)
        for kind, lines in last.items():
            archive.add(f"records/{kind}.jsonl", b"".join(line + b"\n" for line in lines))
    finally:
        conn.close()


def _journal(archive: Archive, lines: int) -> None:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        archive.missing.append("journal: journalctl is not installed")
        return
    try:
        result = subprocess.run(
            [journalctl, "-u", UNIT, "-n", str(lines), "--no-pager", "-o", "short-iso"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        archive.missing.append(f"journal: {exc}")
        return
    archive.add("journal.txt", result.stdout + result.stderr)


def build_archive(
    config: Config, config_path: Path, *, per_kind: int = 20, journal_lines: int = 500
) -> bytes:
    """The diagnostics archive of this gateway (gzipped tar bytes)."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    archive = Archive(
        Redactor(secret_values(config)), f"evgw-diag-{config.gateway.gateway_id}-{stamp}"
    )
    archive.add("version.txt", _version())
    try:
        archive.add("config.toml", config_path.read_bytes())
    except OSError as exc:
        archive.missing.append(f"config: {exc}")
    checks = [ok("config", f"{config_path} is valid"), *local_checks(config)]
    archive.add("check.txt", render(checks) + "\n")
    _status(archive, config)
    _ledger(archive, config, per_kind)
    _journal(archive, journal_lines)
    readme = __doc__ or ""
    if archive.missing:
        readme += "\nNot gathered:\n" + "".join(f"  - {m}\n" for m in archive.missing)
    archive.add("README.txt", readme)
    data = archive.tar_gz(now)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise UserError(
            f"the archive would be {len(data)} bytes (at most {MAX_ARCHIVE_BYTES}): "
            "ask for fewer records per kind",
            2,
        )
    return data
