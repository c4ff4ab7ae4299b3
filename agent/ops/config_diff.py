"""What differs between two configs, by key path, and which running parts it touches.

Arrays of tables are compared by their ids (``meters.dc-01.poll_interval_s``, not
``meters[0]``), so a reordered file is no change. :func:`affected` maps each change to the
part of the service it concerns, the plan a partial apply would follow: one meter line's
poller, one CAN bus listener, one uplink, the station model (identity records again), or a
restart (gateway and ledger settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from agent.config.schema import Config

ID_KEYS: Final = {
    "equipment": "equipment_id",
    "connectors": "connector_id",
    "meters": "meter_id",
    "can_buses": "connector_id",
    "input_modules": "module_id",
    "inputs": "input_id",
    "tariffs": "id",
}
"""The id of each array of tables."""
MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.old is MISSING:
            return f"{self.path}: added"
        if self.new is MISSING:
            return f"{self.path}: removed"
        return f"{self.path}: {self.old!r} → {self.new!r}"


def _keyed(name: str, items: list[Any]) -> dict[str, Any] | None:
    key = ID_KEYS.get(name)
    if key is None or not all(isinstance(i, dict) and key in i for i in items):
        return None
    return {str(i[key]): i for i in items}


def _walk(path: str, name: str, old: Any, new: Any, out: list[Change]) -> None:
    if isinstance(old, list) and isinstance(new, list):
        old_k, new_k = _keyed(name, old), _keyed(name, new)
        if old_k is not None and new_k is not None:
            old, new = old_k, new_k
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            child = f"{path}.{key}" if path else str(key)
            a, b = old.get(key, MISSING), new.get(key, MISSING)
            if a is MISSING or b is MISSING:
                if a != b:
                    out.append(Change(child, a, b))
            else:
                _walk(child, str(key), a, b, out)
        return
    if old != new:
        out.append(Change(path, old, new))


def diff(old: Config, new: Config) -> list[Change]:
    changes: list[Change] = []
    _walk("", "", msgspec.to_builtins(old), msgspec.to_builtins(new), changes)
    return changes


def _line(config: Config, meter_id: str) -> str | None:
    meter = next((m for m in config.meters if m.meter_id == meter_id), None)
    if meter is None:
        return None
    return meter.port if meter.transport == "rtu" else f"{meter.host}:{meter.tcp_port}"


def affected(old: Config, new: Config, changes: list[Change]) -> list[str]:
    """The running parts the changes concern, each once, in the order of the changes."""
    parts: dict[str, None] = {}
    for change in changes:
        head, _, rest = change.path.partition(".")
        item = rest.partition(".")[0]
        if head == "meters":
            lines = {_line(old, item), _line(new, item)} - {None}
            parts.update(dict.fromkeys(f"meter line {line}" for line in sorted(lines)))
        elif head == "can_buses":
            parts[f"CAN bus of {item}"] = None
        elif head == "uplinks":
            parts[f"uplink {item}"] = None
        elif head in ("gateway", "ledger", "metrics"):
            parts[f"restart ({head})"] = None
        else:
            parts["station model"] = None
    return list(parts)
