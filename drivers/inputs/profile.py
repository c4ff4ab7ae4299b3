"""Digital-input module profiles: one TOML file per module model, as for meters.

::

    [module]
    vendor = "generic"
    model = "8-channel DI"
    channels = 8
    function = 2            # 2 = discrete inputs, 1 = coils (modules that mirror inputs there)
    first_address = 0       # wire address of channel 0
    [link]
    baud = 9600
    parity = "N"
    stopbits = 1
    unit_id = 1

Shipped profiles are in ``profiles/`` beside this module; every problem of a file is
reported at once through the meter profiles' checker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.modbus.profile import ProfileSet, layer_profiles, read_profile_folder
from drivers.modbus.profile_check import Checker, ProfileError
from drivers.modbus.profile_model import LinkSetting
from drivers.modbus.profile_parts import link_setting


@dataclass(frozen=True, slots=True)
class ModuleProfile:
    name: str
    path: str
    vendor: str
    model: str
    channels: int
    function: int
    first_address: int
    link: LinkSetting
    unit_id: int


def builtin_profiles_dir() -> Path:
    return Path(__file__).resolve().parent / "profiles"


def is_module_profile(data: Mapping[str, Any]) -> bool:
    return "module" in data


def parse_module_profile(data: Mapping[str, Any], name: str, file: str) -> ModuleProfile:
    c = Checker(file)
    c.unknown(data, ("module", "link"), "")
    module = c.table(data, "module", "module", required=True)
    c.unknown(module, ("vendor", "model", "channels", "function", "first_address"), "module")
    link = c.table(data, "link", "link", required=False)
    c.unknown(link, ("baud", "parity", "stopbits", "unit_id"), "link")
    profile = ModuleProfile(
        name=name,
        path=file,
        vendor=c.text(module, "vendor", "module.vendor", None),
        model=c.text(module, "model", "module.model", None),
        channels=c.integer(module, "channels", "module.channels", None, 1, 64),
        function=c.choice(module, "function", "module.function", 2, (1, 2)),
        first_address=c.integer(module, "first_address", "module.first_address", 0, 0, 0xFFFF),
        link=link_setting(c, link, "link", LinkSetting(9600, "N", 1)),
        unit_id=c.integer(link, "unit_id", "link.unit_id", 1, 1, 247),
    )
    if c.problems:
        raise ProfileError(c.problems)
    return profile


def load_module_profiles(
    folders: Sequence[str | os.PathLike[str]] = (), *, skip_missing: bool = True
) -> ProfileSet[ModuleProfile]:
    """The shipped module profiles overlaid with the technician's folders, in order."""
    shipped = read_profile_folder(builtin_profiles_dir(), parse_module_profile, is_module_profile)
    return layer_profiles(
        shipped, folders, parse_module_profile, is_module_profile, skip_missing=skip_missing
    )
