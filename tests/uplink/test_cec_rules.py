"""One validator for the station's registration: what the embedded receiver refuses with
4004, `evgw config check` refuses with the key path (#15 item 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.records.envelope import StoredRecord
from agent.station.identity import identity_body
from agent.uplink.cec.mapping import station_info
from agent.uplink.cec.rules import STATION_INFO, validate
from tests.foundation.test_config import BASE, CEC

GOOD = BASE.replace("SECRETS", "/nonexistent").replace("[[can_buses]]", CEC, 1)


def with_station(line: str) -> str:
    return GOOD.replace('name = "Station"\n', f'name = "Station"\n{line}\n', 1)


def wire_problem(text: str) -> str | None:
    """What the receiver answers for the identity record this config produces."""
    config = parse_config(text.replace("[uplinks.cec]", "[uplinks.cec]\nenabled = false", 1))
    body = identity_body(config)
    record = StoredRecord(
        kind="identity", ts="2025-01-01T00:00:00.000Z", station_id=config.station.station_id,
        body={}, seq=1, id="gw:1", prev="0" * 64, hash="1" * 64,
    )  # fmt: skip
    return validate(station_info(record, body), STATION_INFO, "Data.StationInfo")


@pytest.mark.parametrize(
    ("change", "key", "member"),
    [
        ('address = ""', "station.address: empty", "Address: empty"),
        ('service_tel = ""', "station.service_tel: empty", "ServiceTel: empty"),
        ('service_tel = "call us"', "station.service_tel: a phone number", "ServiceTel: a phone"),
        ("construction = 12", "station.construction: code 12 not allowed", "Construction: code 12"),
        ("park_nums = 200000", "station.park_nums: 200000 outside", "ParkNums: 200000 outside"),
    ],
)
def test_config_check_refuses_what_the_platform_refuses(change: str, key: str, member: str) -> None:
    text = with_station(change.replace("address", "address", 1))
    if change.startswith(("address", "service_tel")):  # BASE sets both: replace, not add
        name = change.split(" ", 1)[0]
        text = "\n".join(
            line for line in GOOD.splitlines() if not line.startswith(f"{name} =")
        ).replace('name = "Station"\n', f'name = "Station"\n{change}\n', 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="evgw.toml")
    assert any(p.startswith(key) for p in info.value.problems), info.value.problems
    assert "refuses the station's registration" in str(info.value)
    problem = wire_problem(text)
    assert problem is not None and member in problem  # the receiver: 4004 on the same value


def test_connector_power_and_voltage_order() -> None:
    text = GOOD.replace("power_kw = 60.0", "power_kw = 5000.0", 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="evgw.toml")
    assert any(
        p.startswith("equipment[0].connectors[0].power_kw: 5000.0 outside 0.1..2000")
        for p in info.value.problems
    ), info.value.problems
    assert "ConnectorInfos[0].Power: 5000.0 outside" in (wire_problem(text) or "")
    connector = {"VoltageUpperLimits": 500, "VoltageLowerLimits": 750}
    bad = validate({**connector}, {"Order": ("ordered", False, tuple(connector)[::-1])})
    assert bad == "Data.VoltageLowerLimits: 750 is above VoltageUpperLimits 500"


def test_a_good_config_passes_both() -> None:
    assert parse_config(GOOD) is not None
    assert wire_problem(GOOD) is None


def test_only_with_the_city_platform_on() -> None:
    mqtt_only = "\n".join(
        line
        for line in BASE.replace("SECRETS", "/x").splitlines()
        if not line.startswith("address")
    )
    assert parse_config(mqtt_only).station.address == ""


def test_evgw_config_check_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "evgw.toml"
    config.write_text(with_station("construction = 99"))
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "station.construction: code 99 not allowed" in run.stderr
    assert "Traceback" not in run.stderr
