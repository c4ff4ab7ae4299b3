"""Load and validate ``evgw.toml`` and the secrets that go with it.

:func:`load_config` reads one TOML file and returns an immutable :class:`Config`
(schema in :mod:`agent.config.schema`) or raises :class:`ConfigError` listing *every*
problem: the file, the key path (``meters[2].unit_id``), what was expected and what was
found, with a "did you mean" for misspelt keys. Cross-checks between sections (dangling
references, duplicate ids, conflicting serial settings) are reported the same way.

Secrets live in their own file: :mod:`agent.config.secrets`.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from agent.billing.config import cross_check as tariff_problems
from agent.config.errors import ConfigError
from agent.config.schema import (
    DEFAULT_PROFILE_DIR,
    Config,
    InputModuleSection,
    MeterProfilesSection,
    MeterSection,
)
from agent.config.toml_input import parse_toml
from agent.uplink.registry import enabled_uplinks
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.inputs.profile import load_module_profiles
from drivers.modbus.profile import load_profile_dirs
from drivers.modbus.profile_check import ProfileError

DEFAULT_CONFIG_PATH = Path("/etc/evgw/evgw.toml")
SECRET_WORDS = ("password", "passwd", "secret", "token", "private", "data_iv")
"""An unknown key named like one of these is taken for a secret put in the wrong file (its
value is never repeated in a problem)."""
CONFIG_ENV = "EVGW_CONFIG"


def default_config_path() -> Path:
    """``$EVGW_CONFIG`` when set, else ``/etc/evgw/evgw.toml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and cross-check a config file."""
    file = Path(path) if path is not None else default_config_path()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(file), ["file not found (copy one with `evgw config example > FILE`)"]
        ) from None
    except PermissionError:
        raise ConfigError(
            str(file), ["permission denied: the service user must be able to read it"]
        ) from None
    except IsADirectoryError:
        raise ConfigError(str(file), ["is a directory, expected a TOML file"]) from None
    return parse_config(raw, source=str(file))


def parse_config(raw: bytes | str, source: str = "<config>") -> Config:
    data = parse_toml(raw, source)
    problems: list[str] = []
    _check(data, Config, "", problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:  # a case the walk above did not foresee
        raise ConfigError(source, [str(exc)]) from None
    problems = cross_check(config)
    if problems:
        raise ConfigError(source, problems)
    return config


# --- structural validation, every error at once -------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct class inside ``tp`` (``X``, ``X | None``, ``Annotated[X, …]``), if any."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _struct_of(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _struct_of(arg)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    return None


def _list_item(tp: Any) -> Any | None:
    """The element type of a ``list[...]`` (possibly ``Annotated``), else None."""
    if typing.get_origin(tp) is typing.Annotated:
        return _list_item(typing.get_args(tp)[0])
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    return None


def _literal_choices(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is typing.Annotated:
        return _literal_choices(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # an optional choice
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _literal_choices(options[0]) if len(options) == 1 else None
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return None


def _description(tp: Any) -> str | None:
    """The ``Meta(description=…)`` of a constrained type, used instead of a raw regex."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [_description(a) for a in typing.get_args(tp)]
        return next((d for d in found if d), None)
    if typing.get_origin(tp) is typing.Annotated:
        for meta in typing.get_args(tp)[1:]:
            if isinstance(meta, msgspec.Meta) and meta.description:
                return meta.description
        return _description(typing.get_args(tp)[0])
    return None


def _leaf_error(value: Any, tp: Any) -> str | None:
    choices = _literal_choices(tp)
    if choices is not None:
        if value in choices and type(value) is type(choices[0]):
            return None
        listed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
        return f"expected one of {listed}, found {_describe(value)}"
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        message = str(exc).split(" - at ", 1)[0].split(", got `", 1)[0]
        message = message[0].lower() + message[1:]
        if "matching regex" in message and _description(tp):
            message = f"expected {_description(tp)}"
        return f"{message}, found {_describe(value)}"
    return None


def _check(value: Any, tp: Any, path: str, problems: list[str]) -> None:
    struct = _struct_of(tp)
    if struct is not None:
        if not isinstance(value, dict):
            problems.append(f"{path or '(top level)'}: expected a table, found {_describe(value)}")
            return
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
        for key in value:
            if key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                suggestion = f" (did you mean `{hint[0]}`?)" if hint else ""
                if any(word in key.lower() for word in SECRET_WORDS):
                    suggestion = " (a secret? secrets belong in secrets.toml, never in evgw.toml)"
                problems.append(f"{_join(path, key)}: unknown key{suggestion}")
        for name, field in fields.items():
            if name not in value:
                if field.required:
                    problems.append(f"{_join(path, name)}: required key is missing")
                continue
            _check(value[name], field.type, _join(path, name), problems)
        return
    item = _list_item(tp)
    if item is not None and isinstance(value, list):
        error = _leaf_error([], tp) if not value else None
        if error:
            problems.append(
                f"{path}: {error.replace(', found an array', ', found an empty array')}"
            )
        for i, element in enumerate(value):
            _check(element, item, f"{path}[{i}]", problems)
        return
    error = _leaf_error(value, tp)
    if error:
        problems.append(f"{path}: {error}")


# --- cross-checks between sections --------------------------------------------------------


def _duplicates(values: Iterable[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def cross_check(config: Config) -> list[str]:
    """Checks no single key can make: references, uniqueness, shared serial lines."""
    problems: list[str] = []
    for dup in _duplicates(e.equipment_id for e in config.equipment):
        problems.append(f"equipment: equipment_id {dup!r} is used more than once")
    connectors = config.connectors()
    all_connector_ids = [c.connector_id for e in config.equipment for c in e.connectors]
    for dup in _duplicates(all_connector_ids):
        problems.append(f"equipment: connector_id {dup!r} is used more than once")
    for i, e in enumerate(config.equipment):
        for j, c in enumerate(e.connectors):
            if c.voltage_lower_v > c.voltage_upper_v:
                problems.append(
                    f"equipment[{i}].connectors[{j}]: voltage_lower_v ({c.voltage_lower_v}) is "
                    f"above voltage_upper_v ({c.voltage_upper_v})"
                )
    for dup in _duplicates(m.meter_id for m in config.meters):
        problems.append(f"meters: meter_id {dup!r} is used more than once")
    problems += _check_meters(config.meters, connectors, config.meter_profiles)
    problems += _check_inputs(config, connectors)
    bus_connectors: list[str] = []
    for i, bus in enumerate(config.can_buses):
        where = f"can_buses[{i}]"
        if bus.connector_id not in connectors:
            problems.append(
                f"{where}.connector_id: no connector {bus.connector_id!r} "
                f"(known: {', '.join(sorted(connectors)) or 'none'})"
            )
        elif connectors[bus.connector_id][1].connector_type != 4:
            problems.append(
                f"{where}.connector_id: connector {bus.connector_id!r} is not a DC connector "
                "(connector_type 4); GB/T 27930 CAN exists only on DC connectors"
            )
        bus_connectors.append(bus.connector_id)
    for dup in _duplicates(bus_connectors):
        problems.append(f"can_buses: connector {dup!r} has more than one CAN bus")
    for dup in _duplicates(f"{b.interface}:{b.channel}" for b in config.can_buses):
        problems.append(f"can_buses: interface and channel {dup!r} are used more than once")
    for plugin, section in enabled_uplinks(config):
        problems += plugin.cross_check(config, section)
    billing = any(plugin.needs_money for plugin, _section in enabled_uplinks(config))
    problems += tariff_problems(config, city_platform=billing)
    return problems


def profile_names(section: MeterProfilesSection) -> tuple[dict[str, list[str]], list[str]]:
    """The meter profile names a config may use per protocol (shipped + its
    ``[meter_profiles]`` folders), and the problems with those folders: a missing folder
    other than the default, a broken profile file (every problem of every file)."""
    problems: list[str] = []
    for i, folder in enumerate(section.dirs):
        if folder != DEFAULT_PROFILE_DIR and not Path(folder).is_dir():
            problems.append(
                f"meter_profiles.dirs[{i}]: no folder {folder!r} (create it or remove it; only "
                f"the default {DEFAULT_PROFILE_DIR} may be missing)"
            )
    names: dict[str, list[str]] = {}
    for protocol, load in (("modbus", load_profile_dirs), ("dlt645", load_dlt645_profiles)):
        try:
            names[protocol] = sorted(load(section.dirs))
        except ProfileError as exc:
            problems += [f"meter_profiles.dirs: {p}" for p in exc.problems]
            names[protocol] = sorted(load(()))
    return names, list(dict.fromkeys(problems))


def config_warnings(config: Config) -> list[str]:
    """Settings that work but deserve a second look, each naming its key (never a refusal)."""
    return [
        w for plugin, section in enabled_uplinks(config) for w in plugin.warnings(config, section)
    ]


def _check_protocol(where: str, m: MeterSection, names: dict[str, list[str]]) -> list[str]:
    """The profile exists for the meter's protocol; the protocol's own keys are there."""
    problems: list[str] = []
    known = names[m.protocol]
    if m.profile not in known:
        hint = difflib.get_close_matches(m.profile, known, n=1, cutoff=0.5)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        other = next((p for p, n in names.items() if p != m.protocol and m.profile in n), None)
        if other is not None:
            suggestion = f'it is a {other} profile: set protocol = "{other}"; '
        problems.append(
            f"{where}.profile: no meter profile {m.profile!r} ({suggestion}known {m.protocol} "
            f"profiles: {', '.join(known)})"
        )
    if m.protocol == "modbus":
        if m.unit_id is None:
            problems.append(f"{where}.unit_id: required key is missing")
        if m.address is not None:
            problems.append(f'{where}.address: only for protocol = "dlt645" (Modbus uses unit_id)')
        return problems
    if m.address is None:
        problems.append(
            f'{where}.address: required for protocol = "dlt645": the 12-digit address on the '
            "meter's label (`evgw meter scan --protocol dlt645` reads it from a lone meter)"
        )
    if m.transport != "rtu":
        problems.append(f'{where}.transport: DL/T 645 meters need transport = "rtu" (RS-485)')
    for key in ("unit_id", "function"):
        if getattr(m, key) is not None:
            problems.append(f'{where}.{key}: only for protocol = "modbus"')
    if m.options:
        problems.append(f'{where}.options: only for protocol = "modbus"')
    return problems


def _check_meters(
    meters: list[MeterSection], connectors: dict[str, Any], profile_dirs: MeterProfilesSection
) -> list[str]:
    names, problems = profile_names(profile_dirs)
    lines: dict[str, list[tuple[int, MeterSection]]] = {}
    mains = 0
    for i, m in enumerate(meters):
        where = f"meters[{i}]"
        problems += _check_protocol(where, m, names)
        if m.role == "station_main":
            mains += 1
            if m.connector_id is not None:
                problems.append(f"{where}.connector_id: a station_main meter serves no connector")
        elif m.connector_id is None:
            problems.append(
                f'{where}.connector_id: required for role = "connector" '
                '(or set role = "station_main")'
            )
        elif m.connector_id not in connectors:
            problems.append(
                f"{where}.connector_id: no connector {m.connector_id!r} "
                f"(known: {', '.join(sorted(connectors)) or 'none'})"
            )
        if m.transport == "rtu":
            if not m.port:
                problems.append(f'{where}.port: required for transport = "rtu" (e.g. /dev/ttyUSB0)')
            else:
                lines.setdefault(m.port, []).append((i, m))
        elif not m.host:
            problems.append(f'{where}.host: required for transport = "{m.transport}"')
        else:
            lines.setdefault(f"{m.host}:{m.tcp_port}", []).append((i, m))
    if mains > 1:
        problems.append('meters: more than one meter has role = "station_main"')
    for dup in _duplicates(m.connector_id for m in meters if m.connector_id):
        problems.append(f"meters: connector {dup!r} has more than one meter")
    for line, members in lines.items():
        first_i, first = members[0]
        for i, m in members[1:]:
            for key in ("baud", "parity", "stop_bits"):
                if m.transport == "rtu" and getattr(m, key) != getattr(first, key):
                    problems.append(
                        f"meters[{i}].{key}: {getattr(m, key)!r} differs from meters[{first_i}]."
                        f"{key} ({getattr(first, key)!r}) on the same line {line}; all meters on "
                        "one RS-485 line must use the same serial settings"
                    )
        modbus = [m for _, m in members if m.protocol == "modbus" and m.unit_id is not None]
        for dup in _duplicates(str(m.unit_id) for m in modbus):
            problems.append(f"meters: unit_id {dup} is used twice on line {line}")
        for dup in _duplicates(m.address for _, m in members if m.address is not None):
            problems.append(f"meters: address {dup} is used twice on line {line}")
    return problems


def _module_line(where: str, m: InputModuleSection) -> tuple[str | None, list[str]]:
    if m.transport == "rtu":
        if not m.port:
            return None, [f'{where}.port: required for transport = "rtu" (e.g. /dev/ttyUSB0)']
        return m.port, []
    if not m.host:
        return None, [f'{where}.host: required for transport = "{m.transport}"']
    return f"{m.host}:{m.tcp_port}", []


def _check_inputs(config: Config, connectors: dict[str, Any]) -> list[str]:
    """Modules and inputs: references, channels, and the serial lines they share with meters."""
    if not config.input_modules and not config.inputs:
        return []
    problems: list[str] = []
    try:
        profiles = load_module_profiles(config.meter_profiles.dirs)
    except ProfileError as exc:
        problems += [f"meter_profiles.dirs: {p}" for p in exc.problems]
        profiles = load_module_profiles(())
    for dup in _duplicates(m.module_id for m in config.input_modules):
        problems.append(f"input_modules: module_id {dup!r} is used more than once")
    for dup in _duplicates(i.input_id for i in config.inputs):
        problems.append(f"inputs: input_id {dup!r} is used more than once")
    meters_on: dict[str, list[MeterSection]] = {}
    for m in config.meters:
        if m.transport == "rtu" and m.port:
            meters_on.setdefault(m.port, []).append(m)
    channels: dict[str, int] = {}
    for i, mod in enumerate(config.input_modules):
        where = f"input_modules[{i}]"
        if mod.profile not in profiles:
            problems.append(
                f"{where}.profile: no input module profile {mod.profile!r} "
                f"(known: {', '.join(profiles)})"
            )
        else:
            channels[mod.module_id] = profiles[mod.profile].channels
        line, found = _module_line(where, mod)
        problems += found
        for meter in meters_on.get(line or "", []):
            for key, mine in (
                ("baud", mod.baud),
                ("parity", mod.parity),
                ("stop_bits", mod.stop_bits),
            ):
                if getattr(meter, key) != mine:
                    problems.append(
                        f"{where}.{key}: {mine!r} differs from meter {meter.meter_id!r} on the "
                        f"same line {line}; all devices on one RS-485 line must use the same "
                        "serial settings"
                    )
            if meter.protocol == "modbus" and meter.unit_id == mod.unit_id:
                problems.append(
                    f"{where}.unit_id: {mod.unit_id} is meter {meter.meter_id!r}'s on {line}"
                )
    used: set[tuple[str, int]] = set()
    for i, inp in enumerate(config.inputs):
        where = f"inputs[{i}]"
        known = [m.module_id for m in config.input_modules]
        if inp.module not in known:
            problems.append(
                f"{where}.module: no input module {inp.module!r} "
                f"(known: {', '.join(known) or 'none'})"
            )
        elif inp.module in channels and inp.channel >= channels[inp.module]:
            problems.append(
                f"{where}.channel: {inp.channel} is not on the {channels[inp.module]}-channel "
                f"module {inp.module!r} (channels 0-{channels[inp.module] - 1})"
            )
        if (inp.module, inp.channel) in used:
            problems.append(
                f"{where}.channel: channel {inp.channel} of {inp.module!r} is used twice"
            )
        used.add((inp.module, inp.channel))
        for cid in inp.connectors:
            if cid not in connectors:
                problems.append(
                    f"{where}.connectors: no connector {cid!r} "
                    f"(known: {', '.join(sorted(connectors))})"
                )
        if inp.role == "custom" and not inp.description:
            problems.append(
                f'{where}.description: required for role = "custom" (what the contact means)'
            )
    return problems
