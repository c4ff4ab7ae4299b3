"""What differs between two configs, by key path, and which running parts it touches.

Arrays of tables are compared by their ids (``meters.dc-01.poll_interval_s``, not
``meters[0]``), so a reordered file is no change. :func:`affected` maps each change to the
part of the service it concerns — the :class:`Plan` a config apply follows: one meter line's
pollers, one CAN bus listener, one uplink, the station model (identity records again; every
uplink too, as they name the station and its connectors), a service setting taken over as it
is, or a restart (the other gateway, ledger and metrics settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from agent.config.schema import Config
from agent.uplink.registry import enabled_uplinks

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


def line_key(transport: str, port: str | None, host: str | None, tcp_port: int) -> str:
    """A meter or input module's line as the plan names it: the serial port, or host:port."""
    return str(port) if transport == "rtu" else f"{host}:{tcp_port}"


def _meter_line(config: Config, meter_id: str) -> str | None:
    meter = next((m for m in config.meters if m.meter_id == meter_id), None)
    if meter is None:
        return None
    return line_key(meter.transport, meter.port, meter.host, meter.tcp_port)


def _module_line(config: Config, module_id: str | None) -> str | None:
    module = next((m for m in config.input_modules if m.module_id == module_id), None)
    if module is None:
        return None
    return line_key(module.transport, module.port, module.host, module.tcp_port)


def _input_module(config: Config, input_id: str) -> str | None:
    return next((i.module for i in config.inputs if i.input_id == input_id), None)


LIVE_SERVICE_KEYS: Final = ("gateway.log_level", "gateway.apply_timeout_s", "gateway.configs_kept")
"""``[gateway]`` keys a running service takes over as they are; the other keys of
``[gateway]``, ``[ledger]`` and ``[metrics]`` only take effect at a restart."""
IDENTITY_HEADS: Final = ("station", "equipment", "tariffs")
"""What every uplink reads besides its own section (station names, connectors, tariffs)."""


@dataclass(slots=True)
class Plan:
    """The running parts a change of config concerns, each named once, in the order found."""

    station: bool = False
    """The station model's own settings changed (identity, connectors, tariffs, sampling …)."""
    buses: dict[str, None] = field(default_factory=dict)
    """Connector ids whose CAN bus listener is rebuilt (added, changed or removed)."""
    lines: dict[str, None] = field(default_factory=dict)
    """Meter lines (serial port or host:port) whose pollers are rebuilt."""
    uplinks: dict[str, None] = field(default_factory=dict)
    service: dict[str, None] = field(default_factory=dict)
    """Keys of :data:`LIVE_SERVICE_KEYS` that changed."""
    restart: dict[str, None] = field(default_factory=dict)
    """Key paths that only a restart of the service applies."""

    def parts(self) -> list[str]:
        names = ["station model"] if self.station else []
        names += [f"CAN bus of {cid}" for cid in self.buses]
        names += [f"meter line {line}" for line in self.lines]
        names += [f"uplink {name}" for name in self.uplinks]
        names += [f"service setting {key}" for key in self.service]
        names += [f"restart ({path})" for path in self.restart]
        return names

    @property
    def devices(self) -> bool:
        """Whether the station model must see the new config (it reads meters and buses)."""
        return self.station or bool(self.buses) or bool(self.lines)


def _lines_of(old: Config, new: Config, head: str, item: str) -> set[str]:
    if head == "meters":
        found = {_meter_line(old, item), _meter_line(new, item)}
    elif head == "input_modules":
        found = {_module_line(old, item), _module_line(new, item)}
    elif head == "inputs":
        found = {
            _module_line(old, _input_module(old, item)),
            _module_line(new, _input_module(new, item)),
        }
    else:  # meter_profiles: every meter line reads its profiles
        found = {_meter_line(c, m.meter_id) for c in (old, new) for m in c.meters}
    return {line for line in found if line is not None}


def plan(old: Config, new: Config, changes: list[Change]) -> Plan:
    """What applying ``new`` over ``old`` rebuilds (see docs/OPERATIONS.md, config apply)."""
    result = Plan()
    for change in changes:
        head, _, rest = change.path.partition(".")
        item = rest.partition(".")[0]
        if head in ("meters", "input_modules", "inputs", "meter_profiles"):
            result.lines.update(dict.fromkeys(sorted(_lines_of(old, new, head, item))))
            result.station = result.station or head == "inputs"
        elif head == "can_buses":
            result.buses[item] = None
        elif head == "uplinks":
            result.uplinks[item] = None
        elif change.path in LIVE_SERVICE_KEYS:
            result.service[change.path] = None
        elif head in ("gateway", "ledger", "metrics"):
            result.restart[change.path] = None
        else:
            result.station = True
            if head in IDENTITY_HEADS:
                names = [p.name for c in (old, new) for p, _s in enabled_uplinks(c)]
                result.uplinks.update(dict.fromkeys(names))
    return result


def affected(old: Config, new: Config, changes: list[Change]) -> list[str]:
    """The running parts the changes concern, each once (:meth:`Plan.parts`)."""
    return plan(old, new, changes).parts()
