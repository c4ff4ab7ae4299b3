"""DL/T 645 profiles: the shipped ones load, problems are all reported, folders hold both kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.dlt645.profile import COUNTERS, builtin_profiles_dir, load_dlt645_profiles
from drivers.modbus.profile import load_profile_dirs
from drivers.modbus.profile_check import ProfileError

SHIPPED = {"dlt645-2007", "dtsu666-dlt645", "djsf1352-dlt645", "dcm3366q"}


def test_shipped_profiles() -> None:
    profiles = load_dlt645_profiles()
    assert set(profiles) == SHIPPED
    std = profiles["dlt645-2007"]
    assert (std.link.baud, std.link.parity, std.link.stopbits) == (2400, "E", 1)
    q = {r.name: r for r in std.quantities}
    assert q["energy_import_kwh"].di == 0x00010000
    assert q["power_w"].scale == 1000.0 and q["power_w"].signed  # kW -> W
    assert [c.name for c in std.counters] == list(COUNTERS)
    assert std.clock is not None and std.clock.date_di == 0x04000101
    assert {r.name for r in profiles["dcm3366q"].quantities} >= {"voltage_v", "current_a"}


BROKEN = """
[meter]
vendor = "X"
model = "Y"
kind = "dc"
[link]
baud = 19200
[dlt645]
edition = 1997
[quantities]
energy_import_kwh = { di = 0x1_0000_0000, format = "XX.X", unit = "V" }
voltage_v = { format = "YYMMDDWW", unit = "V" }
[counters]
lid_open = { count = 1 }
"""


def test_every_problem_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(BROKEN)
    with pytest.raises(ProfileError) as err:
        load_dlt645_profiles([str(tmp_path)])
    text = str(err.value)
    for expected in (
        "bad.toml: link.baud: expected one of 1200, 2400, 4800, 9600, found the integer 19200",
        "bad.toml: dlt645.edition: expected one of 2007",
        "quantities.energy_import_kwh.di: expected an integer 0…4294967295",
        "quantities.energy_import_kwh.format: expected a format like XXXXXX.XX",
        "quantities.energy_import_kwh.unit: expected a unit convertible to 'kWh'",
        "quantities.voltage_v.di: expected an integer",
        "quantities.voltage_v.format: expected a number format",
        "counters.lid_open: expected one of meter_cover_open",
    ):
        assert expected in text, expected


def test_one_folder_holds_both_protocols(tmp_path: Path) -> None:
    text = (builtin_profiles_dir() / "dlt645-2007.toml").read_text()
    (tmp_path / "dlt645-2007.toml").write_text(text.replace("2007 standard", "field"))
    modbus = load_profile_dirs([str(tmp_path)])
    assert "dlt645-2007" not in modbus and "sdm120" in modbus
    dlt = load_dlt645_profiles([str(tmp_path)])
    assert dlt["dlt645-2007"].model == "field"
    assert dlt.origin("dlt645-2007").replaces == "shipped"
