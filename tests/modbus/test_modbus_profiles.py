"""Profile loader: the shipped profiles load; broken profiles report every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.modbus.decode import plan_reads
from drivers.modbus.profile import (
    ProfileError,
    builtin_profiles_dir,
    load_profile,
    load_profiles,
)
from drivers.modbus.quantities import STANDARD, is_vendor_name

EXPECTED = {"dtsu666", "ddsu666", "sdm630", "sdm120", "sdm72", "sdm72dm", "adl400", "djsf1352"}


def test_builtin_profiles_load_and_plan() -> None:
    profiles = load_profiles()
    assert set(profiles) >= EXPECTED
    for name in profiles:
        prof = profiles[name]
        assert prof.quantities, name
        for q in prof.quantities:
            assert q.name in STANDARD or is_vendor_name(q.name)
        plan = plan_reads(prof.resolve())
        for block in plan.blocks:
            assert 1 <= block.count <= 125
        assert "energy_import_kwh" in {q.name for q in prof.quantities}, name


def test_builtin_dir_is_the_driver_package() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert Path(builtin_profiles_dir()) == repo / "drivers" / "modbus" / "profiles"


def test_dtsu666_options_and_function_resolve() -> None:
    prof = load_profiles()["dtsu666"]
    default = prof.resolve()
    q = {x.name: x for x in default.quantities}
    assert q["energy_import_kwh"].address == 0x101E
    assert q["voltage_l1_v"].scale == pytest.approx(0.1)
    alt = prof.resolve(function=4, options={"energy_block": "x4000"})
    q = {x.name: x for x in alt.quantities}
    assert (q["energy_import_kwh"].address, q["energy_export_kwh"].address) == (0x401E, 0x4028)
    assert {x.function for x in alt.quantities} == {4}
    with pytest.raises(ValueError, match="no choice 'x2000'"):
        prof.resolve(options={"energy_block": "x2000"})
    with pytest.raises(ValueError, match="no option 'nope'"):
        prof.resolve(options={"nope": "x"})


def test_unit_conversion_to_standard_units() -> None:
    profiles = load_profiles()
    ddsu = {q.name: q for q in profiles["ddsu666"].quantities}
    assert ddsu["power_w"].scale == 1000.0  # kW -> W
    djsf = profiles["djsf1352"].resolve(options={"energy_unit": "dwh"})
    q = {x.name: x for x in djsf.quantities}
    assert q["energy_import_kwh"].scale == pytest.approx(0.0001)  # 0.1 Wh -> kWh


def test_single_file_and_missing(tmp_path: Path) -> None:
    one = load_profiles(builtin_profiles_dir() / "sdm120.toml")
    assert list(one) == ["sdm120"]
    with pytest.raises(ProfileError, match="no such directory"):
        load_profiles(tmp_path / "absent")
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "absent.toml")


BROKEN = """
[meter]
vendor = "X"
kind = "ac4"
colour = "red"

[link]
baud = 9601
parity = "X"
unit_id = 300

[modbus]
function = 5
type = "f33"

[quantities]
voltage_v = { address = 0x10000, unit = "V" }
power_w = { address = 2, type = "f32", unit = "kWh" }
energy_import_kwh = { address = 3, type = "f32", unit = "kWh", scale = 0 }
watts = { address = 20, type = "u16", unit = "W" }
current_a = { address = 30, type = "f32", unit = "A", exponent = { address = 1 } }

[flags]
power_w = { address = 5 }

[options.block]
default = "c"
choices = { a = { energy_import_kwh = { address = 40 } } }
"""


def test_broken_profile_reports_all_problems(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text(BROKEN)
    with pytest.raises(ProfileError) as info:
        load_profile(f)
    keys = {p.key for p in info.value.problems}
    expected = {
        "meter.model",
        "meter.kind",
        "meter.colour",
        "link.baud",
        "link.parity",
        "link.unit_id",
        "modbus.function",
        "modbus.type",
        "quantities.voltage_v.address",
        "quantities.power_w.unit",
        "quantities.energy_import_kwh.scale",
        "quantities.watts",
        "quantities.current_a.exponent",
        "flags.power_w",
        "options.block.description",
        "options.block.choices",
        "options.block.default",
    }
    assert expected <= keys, expected - keys
    # overlapping registers: power_w (2..3) and energy_import_kwh (3..4) -> one of them reported
    text = str(info.value)
    assert str(f) in text and "expected" in text and "found" in text
    for p in info.value.problems:
        assert p.file == str(f)


def test_overlap_and_syntax_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[meter]\nvendor="V"\nmodel="M"\nkind="ac1"\n[link]\nbaud=9600\n[modbus]\nfunction=3\n'
        '[quantities]\npower_w={address=0,type="f32",unit="W"}\n'
        'voltage_v={address=1,type="u16",unit="V"}\n'
    )
    (tmp_path / "b.toml").write_text("[meter\nvendor=")
    (tmp_path / "c.toml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    files = {Path(p.file).name for p in info.value.problems}
    assert files == {"a.toml", "b.toml", "c.toml"}
    overlap = [p for p in info.value.problems if "already used" in p.expected]
    assert overlap and overlap[0].key == "quantities.voltage_v.address"
