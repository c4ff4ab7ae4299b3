"""The files a config names (CA, client certificates and keys, the command key): each must
exist and be readable, checked for every enabled uplink at once.

Parsing a config never touches these files (the shipped example names paths that exist only
on a commissioned gateway); ``evgw config check`` and ``evgw check`` call
:func:`referenced_file_problems` and report its problems with the config's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from agent.config.schema import Config
from agent.uplink.registry import enabled_uplinks

FILE_KEYS: Final = ("ca_file", "cert_file", "key_file", "command_pubkey_file")
"""Keys of an ``[uplinks.*]`` section that name a file the uplink reads (and each value of
``command_keys``, the platform's key per command role)."""


def section_files(name: str, section: object) -> list[tuple[str, Path]]:
    """``(key path, file)`` for every file one ``[uplinks.<name>]`` section names."""
    found = [
        (f"uplinks.{name}.{key}", Path(value))
        for key in FILE_KEYS
        if (value := getattr(section, key, None))
    ]
    for role, value in (getattr(section, "command_keys", None) or {}).items():
        found.append((f"uplinks.{name}.command_keys.{role}", Path(value)))
    return found


def referenced_files(config: Config) -> list[tuple[str, Path]]:
    """``(key path, file)`` for every file an enabled uplink's section names."""
    return [
        item
        for plugin, section in enabled_uplinks(config)
        for item in section_files(plugin.name, section)
    ]


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read by this process, or None when it can."""
    if not path.exists():
        return f"{path} does not exist"
    if path.is_dir():
        return f"{path} is a directory, expected a file"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user (uid {os.getuid()}; the service runs as evgw)"
    return None


def referenced_file_problems(config: Config) -> list[str]:
    """Every named file that is missing or unreadable, with its key path."""
    problems = []
    for key, path in referenced_files(config):
        problem = file_problem(path)
        if problem:
            problems.append(f"{key}: {problem}")
    return problems
