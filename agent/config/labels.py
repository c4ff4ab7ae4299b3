"""Config problems that point into an array (``meters[2].unit_id``) also name the entry by its
id (``meter "M3"``), so a technician finds it without counting blocks in the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from agent.config.errors import ConfigError
from agent.config.toml_input import MAX_TOML_BYTES, parse_toml

_ENTRY: Final = re.compile(r"^(meters|can_buses|equipment)\[(\d+)\](?:\.connectors\[(\d+)\])?")
_ID_KEY: Final = {"meters": "meter_id", "can_buses": "connector_id", "equipment": "equipment_id"}
_WHAT: Final = {"meters": "meter", "can_buses": "CAN bus of connector", "equipment": "equipment"}


def _label(data: dict[str, Any], table: str, index: int, sub: str | None) -> str | None:
    entries = data.get(table)
    if not isinstance(entries, list) or index >= len(entries):
        return None
    entry = entries[index]
    if sub is not None and isinstance(entry, dict):
        connectors = entry.get("connectors")
        if isinstance(connectors, list) and int(sub) < len(connectors):
            connector = connectors[int(sub)]
            value = connector.get("connector_id") if isinstance(connector, dict) else None
            return None if not isinstance(value, str) else f'connector "{value}"'
        return None
    value = entry.get(_ID_KEY[table]) if isinstance(entry, dict) else None
    return f'{_WHAT[table]} "{value}"' if isinstance(value, str) else None


def label_problems(problems: list[str], data: dict[str, Any]) -> list[str]:
    """Each problem about an array entry with ``(meter "M3")`` appended."""
    labelled = []
    for problem in problems:
        match = _ENTRY.match(problem)
        label = match and _label(data, match[1], int(match[2]), match[3])
        labelled.append(f"{problem} ({label})" if label else problem)
    return labelled


def labelled(exc: ConfigError, path: Path) -> list[str]:
    """The problems of a failed load of ``path``, entries named by id where the file says."""
    try:
        raw = path.read_bytes()[: MAX_TOML_BYTES + 1]
        data = parse_toml(raw, str(path))
    except (OSError, ConfigError):
        return list(exc.problems)
    return label_problems(list(exc.problems), data)
