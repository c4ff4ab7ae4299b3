"""The secrets that go with ``evgw.toml``.

Secrets never live in the main file. :func:`load_secrets` reads ``secrets.toml`` from
systemd's ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``) or from ``gateway.secrets_file``,
which must be owned by the service user and unreadable by others.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.config.errors import ConfigError
from agent.config.resources import read_resource
from agent.config.schema import Config
from agent.config.section import Secret
from agent.config.toml_input import parse_toml
from agent.uplink.registry import PLUGINS, enabled_uplinks

SECRETS_CREDENTIAL = "secrets.toml"
EXAMPLE_FILE = "secrets.example.toml"


@dataclass(frozen=True, slots=True)
class Secrets:
    source: str
    by_uplink: dict[str, Any] = field(default_factory=dict)
    """Each enabled uplink's secrets object (what its plug-in's ``parse_secrets`` made)."""

    def uplink(self, name: str) -> Any:
        """The secrets of the enabled uplink ``name`` (None when it is not enabled)."""
        return self.by_uplink.get(name)

    def fingerprint(self) -> str:
        """First 8 hex digits of the SHA-256 of all secrets: safe to log, changes with any."""
        return hashlib.sha256("\0".join(self.values()).encode()).hexdigest()[:8]

    def values(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        found = [getattr(obj, f.name) for obj in self.by_uplink.values() for f in fields(obj)]
        return [str(v) for v in found if isinstance(v, Secret) and v]


def secrets_path(config: Config) -> tuple[Path, bool]:
    """Where the secrets come from, and whether systemd's credential store provides them."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / SECRETS_CREDENTIAL).is_file():
        return Path(creds) / SECRETS_CREDENTIAL, True
    return Path(config.gateway.secrets_file), False


def check_private_file(path: Path, what: str) -> list[str]:
    """Problems with a file that must be private to the service user (empty when fine)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return [f"{what} {path} does not exist"]
    except PermissionError:
        return [f"{what} {path}: permission denied; the service user must own it"]
    problems = []
    if st.st_uid != os.geteuid():
        problems.append(
            f"{what} {path} is owned by uid {st.st_uid}, not by the service user (uid "
            f"{os.geteuid()}); fix: chown evgw:evgw {path}"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        problems.append(
            f"{what} {path} is readable or writable by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); fix: chmod 600 {path}"
        )
    return problems


def _example_values_in(table_name: str, table: dict[str, Any]) -> list[str]:
    """Keys of ``[table_name]`` still holding the value of the shipped example file: a
    gateway must never run on secrets printed in every copy of evgw."""
    example = parse_toml(read_resource(EXAMPLE_FILE), EXAMPLE_FILE).get(table_name, {})
    return [
        f"{table_name}.{key}: still the value of the shipped example ({EXAMPLE_FILE}); "
        "put the secret the platform operator issued"
        for key, value in table.items()
        if key != "username" and isinstance(value, str) and value and example.get(key) == value
    ]


def load_secrets(config: Config) -> Secrets:
    """Read the secrets the enabled uplinks need; refuse an unprotected file."""
    path, from_credentials = secrets_path(config)
    enabled = enabled_uplinks(config)
    if not path.exists() and not any(p.secrets_required for p, _ in enabled):
        problems: list[str] = []
        by_uplink = {p.name: p.parse_secrets(None, problems) for p, _ in enabled}
        return Secrets(source="(none)", by_uplink=by_uplink)
    if not from_credentials:
        problems = check_private_file(path, "secrets file")
        if problems:
            raise ConfigError(str(path), problems)
    try:
        data = parse_toml(path.read_bytes(), str(path))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    problems = []
    known = [p.name for p in PLUGINS]
    for key in data:
        if key not in known:
            expected = " or ".join(f"[{name}]" for name in known)
            problems.append(f"{key}: unknown table (expected {expected})")
    by_uplink = {}
    for plugin, _section in enabled:
        table = data.get(plugin.name)
        if table is not None and not isinstance(table, dict):
            problems.append(f"{plugin.name}: expected a table [{plugin.name}]")
            table = None
        if table is None and plugin.secrets_required:
            problems.append(
                f"{plugin.name}: the [{plugin.name}] table is required when "
                f"uplinks.{plugin.name} is enabled"
            )
            continue
        by_uplink[plugin.name] = plugin.parse_secrets(table, problems)
        problems += _example_values_in(plugin.name, table or {})
    if problems:
        raise ConfigError(str(path), problems)
    return Secrets(source=str(path), by_uplink=by_uplink)
