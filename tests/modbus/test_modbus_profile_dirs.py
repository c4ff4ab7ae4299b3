"""Field profile folders: `[meter_profiles] dirs` read by the config check, the service's
profile set and `evgw meter profiles`; a field profile replaces a shipped one of its name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.config.resources import read_resource
from agent.service.devices import meter_profiles
from drivers.modbus.profile import SHIPPED, builtin_profiles_dir, load_profile_dirs
from drivers.modbus.profile_check import ProfileError
from tests.conftest import REPO

FIELD_SDM120 = (
    (builtin_profiles_dir() / "sdm120.toml")
    .read_text()
    .replace('model = "SDM120', 'model = "SDM120-FIELD')
)


def _field_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "meters"
    folder.mkdir()
    (folder / "sdm120.toml").write_text(FIELD_SDM120)
    (folder / "mymeter.toml").write_text(
        (builtin_profiles_dir() / "sdm630.toml").read_text().replace("Eastron", "Field")
    )
    return folder


def _config(dirs: list[str], profile: str = "djsf1352") -> str:
    text = read_resource("evgw.example.toml").replace(
        'profile = "ddsu666"', f'profile = "{profile}"'
    )
    listed = ", ".join(f'"{d}"' for d in dirs)
    return f"{text}\n[meter_profiles]\ndirs = [{listed}]\n"


def test_meters_cannot_be_array_and_table_in_toml() -> None:
    # why the key is [meter_profiles] dirs and not meters.profile_dirs
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads('[meters]\nprofile_dirs = ["/x"]\n[[meters]]\nmeter_id = "a"\n')


def test_field_profile_replaces_shipped_and_adds(tmp_path: Path) -> None:
    folder = _field_folder(tmp_path)
    profiles = load_profile_dirs([str(tmp_path / "absent"), str(folder)])
    assert profiles["sdm120"].model.startswith("SDM120-FIELD")
    assert profiles.origin("sdm120").source == str(folder / "sdm120.toml")
    assert profiles.origin("sdm120").replaces == SHIPPED
    assert profiles.origin("mymeter").replaces is None
    assert profiles.origin("dtsu666").source == SHIPPED
    with pytest.raises(ProfileError, match="no such directory"):
        load_profile_dirs([str(tmp_path / "absent")], skip_missing=False)


def test_config_accepts_field_profiles_and_names_bad_folders(tmp_path: Path) -> None:
    folder = _field_folder(tmp_path)
    config = parse_config(_config(["/etc/evgw/meters", str(folder)], profile="mymeter"))
    assert config.meter_profiles.dirs == ["/etc/evgw/meters", str(folder)]
    assert meter_profiles(config).modbus["mymeter"].vendor == "Field"
    assert parse_config(read_resource("evgw.example.toml")).meter_profiles.dirs == [
        "/etc/evgw/meters"
    ]
    with pytest.raises(ConfigError) as err:
        parse_config(_config([str(tmp_path / "nowhere")], profile="mymeter"))
    text = str(err.value)
    assert "meter_profiles.dirs[0]: no folder" in text and "nowhere" in text
    assert "meters[2].profile: no meter profile 'mymeter'" in text
    (folder / "broken.toml").write_text("[meter]\nvendor = 1\n")
    with pytest.raises(ConfigError, match=r"meter_profiles.dirs: .*broken.toml: meter.vendor"):
        parse_config(_config([str(folder)]))


def test_meter_profiles_lists_sources(tmp_path: Path) -> None:
    folder = _field_folder(tmp_path)
    cfg = tmp_path / "evgw.toml"
    cfg.write_text(_config([str(folder)]))
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "meter", "profiles", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line for line in run.stdout.splitlines()[1:]}
    assert rows["dtsu666"].endswith("shipped")
    assert rows["sdm120"].endswith(f"{folder / 'sdm120.toml'} (replaces the shipped one)")
    assert str(folder / "mymeter.toml") in rows["mymeter"]
    missing = subprocess.run(
        [sys.executable, "-m", "agent.cli", "meter", "profiles", "--config", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read the config" in missing.stderr
    assert "Traceback" not in missing.stderr
