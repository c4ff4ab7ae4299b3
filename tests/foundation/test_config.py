"""Config validation: the example is valid, and every kind of broken config is reported
with the key path, what was expected and what was found — all problems at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import load_config, parse_config
from agent.config.resources import read_resource
from agent.config.secrets import load_secrets

TARIFF = (
    '[[tariffs]]\nid = "std"\ndefault = true\n'
    'periods = [{ start = "00:00", type = "flat", elec_price = 0.62, service_price = 0.8 }]\n'
)
"""One default tariff: a config with the city platform on needs money for every order."""

BASE = """
[gateway]
gateway_id = "gw-1"
operator_id = "MA5DA0053"
secrets_file = "SECRETS"

[station]
station_id = "S1"
name = "Station"
address = "1 Test Road, Futian, Shenzhen"
service_tel = "0755-00000000"

[[equipment]]
equipment_id = "E1"
equipment_type = 1
power_kw = 120.0
manufacturer_id = "MA5DA0053"

  [[equipment.connectors]]
  connector_id = "C1"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 150

  [[equipment.connectors]]
  connector_id = "C2"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 150

[[meters]]
meter_id = "m1"
profile = "djsf1352"
transport = "rtu"
port = "/dev/ttyUSB0"
unit_id = 1
connector_id = "C1"

[[meters]]
meter_id = "m2"
profile = "djsf1352"
transport = "rtu"
port = "/dev/ttyUSB0"
unit_id = 2
connector_id = "C2"

[[can_buses]]
connector_id = "C1"
interface = "socketcan"
channel = "can0"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.toml")
    assert info.value.exit_code == 2
    assert str(info.value).startswith("test.toml: ")
    return info.value.problems


def test_base_is_valid() -> None:
    config = parse_config(BASE)
    assert config.gateway.operator_id == "MA5DA0053"
    assert config.meters[1].baud == 9600  # default
    assert config.can_buses[0].bitrate == 250000
    assert set(config.connectors()) == {"C1", "C2"}


def test_example_and_demo_configs_are_valid() -> None:
    example = parse_config(read_resource("evgw.example.toml"))
    assert len(example.connectors()) == 3
    assert {m.role for m in example.meters} == {"connector", "station_main"}
    assert example.uplinks.mqtt is not None and example.uplinks.cec is not None
    demo = parse_config(read_resource("demo.toml"))
    assert [b.interface for b in demo.can_buses] == ["virtual", "virtual"]


def test_config_is_immutable() -> None:
    config = parse_config(BASE)
    with pytest.raises(AttributeError):
        config.gateway.gateway_id = "x"  # type: ignore[misc]


BROKEN = [
    # (description, old text, new text, expected substring of one problem)
    (
        "wrong type",
        "power_kw = 120.0",
        'power_kw = "lots"',
        "equipment[0].power_kw: expected `float`, found 'lots'",
    ),
    (
        "unit id too big",
        "unit_id = 2\n",
        "unit_id = 300\n",
        "meters[1].unit_id: expected `int` <= 247, found 300",
    ),
    (
        "unit id zero",
        "unit_id = 1\n",
        "unit_id = 0\n",
        "meters[0].unit_id: expected `int` >= 1, found 0",
    ),
    (
        "bad baud",
        'port = "/dev/ttyUSB0"\nunit_id = 2',
        'port = "/dev/ttyUSB0"\nbaud = 9601\nunit_id = 2',
        "meters[1].baud: expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, found 9601",
    ),
    (
        "bad parity",
        "unit_id = 2\n",
        'unit_id = 2\nparity = "X"\n',
        "meters[1].parity: expected one of 'N', 'E', 'O', found 'X'",
    ),
    (
        "bad bitrate",
        'channel = "can0"',
        'channel = "can0"\nbitrate = 250',
        "can_buses[0].bitrate: expected one of 125000, 250000",
    ),
    (
        "unknown key with hint",
        "unit_id = 1\n",
        "unit_id = 1\nunitid = 3\n",
        "meters[0].unitid: unknown key (did you mean `unit_id`?)",
    ),
    ("unknown key no hint", "[station]", "[station]\nzzzz = 1", "station.zzzz: unknown key"),
    (
        "unknown section",
        "[station]",
        "[stations]\nx = 1\n[station]",
        "stations: unknown key (did you mean `station`?)",
    ),
    ("missing required", 'station_id = "S1"\n', "", "station.station_id: required key is missing"),
    (
        "missing section",
        '[gateway]\ngateway_id = "gw-1"\noperator_id = "MA5DA0053"\nsecrets_file = "SECRETS"\n',
        "",
        "gateway: required key is missing",
    ),
    (
        "operator id length",
        'operator_id = "MA5DA0053"',
        'operator_id = "MA5DA005"',
        "gateway.operator_id: expected exactly 9 letters or digits, found 'MA5DA005'",
    ),
    (
        "operator id chars",
        'operator_id = "MA5DA0053"',
        'operator_id = "MA5DA-053"',
        "gateway.operator_id: expected exactly 9 letters or digits, found 'MA5DA-053'",
    ),
    (
        "duplicate connector",
        'connector_id = "C2"\n  connector_type',
        'connector_id = "C1"\n  connector_type',
        "connector_id 'C1' is used more than once",
    ),
    (
        "duplicate meter id",
        'meter_id = "m2"',
        'meter_id = "m1"',
        "meters: meter_id 'm1' is used more than once",
    ),
    (
        "dangling meter connector",
        'connector_id = "C2"\n\n[[can',
        'connector_id = "C9"\n\n[[can',
        "meters[1].connector_id: no connector 'C9' (known: C1, C2)",
    ),
    (
        "dangling bus connector",
        'connector_id = "C1"\ninterface',
        'connector_id = "C7"\ninterface',
        "can_buses[0].connector_id: no connector 'C7'",
    ),
    (
        "same line different baud",
        'port = "/dev/ttyUSB0"\nunit_id = 2',
        'port = "/dev/ttyUSB0"\nbaud = 19200\nunit_id = 2',
        "meters[1].baud: 19200 differs from meters[0].baud (9600) on the same line /dev/ttyUSB0",
    ),
    (
        "same unit on one line",
        "unit_id = 2\n",
        "unit_id = 1\n",
        "meters: unit_id 1 is used twice on line /dev/ttyUSB0",
    ),
    (
        "rtu without port",
        'port = "/dev/ttyUSB0"\nunit_id = 1',
        "unit_id = 1",
        'meters[0].port: required for transport = "rtu"',
    ),
    (
        "tcp without host",
        'transport = "rtu"\nport = "/dev/ttyUSB0"\nunit_id = 1',
        'transport = "tcp"\nunit_id = 1',
        'meters[0].host: required for transport = "tcp"',
    ),
    (
        "bad transport",
        'transport = "rtu"\nport = "/dev/ttyUSB0"\nunit_id = 1',
        'transport = "ascii"\nunit_id = 1',
        "meters[0].transport: expected one of 'rtu', 'tcp', 'rtu_over_tcp', found 'ascii'",
    ),
    (
        "can on AC connector",
        'connector_id = "C1"\n  connector_type = 4',
        'connector_id = "C1"\n  connector_type = 3',
        "is not a DC connector",
    ),
    (
        "voltage limits inverted",
        'voltage_lower_v = 200\n  current_a = 150\n\n  [[equipment.connectors]]\n  connector_id = "C2"',
        'voltage_lower_v = 800\n  current_a = 150\n\n  [[equipment.connectors]]\n  connector_id = "C2"',
        "voltage_lower_v (800) is above voltage_upper_v (750)",
    ),
    (
        "empty connectors",
        "[[meters]]",
        '[[equipment]]\nequipment_id = "E2"\nequipment_type = 2\npower_kw = 7.0\nconnectors = []\n\n[[meters]]',
        "equipment[1].connectors: expected `array` of length >= 1, found an empty array",
    ),
    (
        "table where value expected",
        'name = "Station"',
        'name = "Station"\n[station.address]\nx = 1',
        "station.address: expected `str`, found a table",
    ),
    (
        "mqtt tls without ca",
        "[[can_buses]]",
        '[uplinks.mqtt]\nbrokers = ["b:8883"]\n\n[[can_buses]]',
        "uplinks.mqtt.ca_file: required when tls = true",
    ),
    (
        "mqtt bad broker",
        "[[can_buses]]",
        '[uplinks.mqtt]\nbrokers = ["b"]\ntls = false\n\n[[can_buses]]',
        "uplinks.mqtt.brokers[0]: expected host:port, found 'b'",
    ),
    (
        "cec bad url",
        "[[can_buses]]",
        '[uplinks.cec]\nbase_url = "ftp://x"\nplatform_operator_id = "MA5GOV001"\n\n[[can_buses]]',
        "uplinks.cec.base_url: expected an http:// or https:// URL, found 'ftp://x'",
    ),
    (
        "cec unknown interface",
        "[[can_buses]]",
        '[uplinks.cec]\nbase_url = "https://x/"\nplatform_operator_id = "MA5GOV001"\ninterfaces = ["notification_nope"]\n\n[[can_buses]]',
        "uplinks.cec.interfaces[0]: expected one of 'notification_stationInfo'",
    ),
    (
        "two station mains",
        'unit_id = 2\nconnector_id = "C2"',
        'unit_id = 2\nrole = "station_main"',
        "",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_config_is_reported(old: str, new: str, expected: str) -> None:
    assert old in BASE, f"test case does not apply: {old!r}"
    text = BASE.replace(old, new, 1)
    if not expected:  # a valid variation
        parse_config(text)
        return
    problems = problems_of(text)
    assert any(expected in p for p in problems), problems


def test_all_problems_reported_together() -> None:
    text = (
        BASE.replace("unit_id = 2\n", "unit_id = 300\n")
        .replace("power_kw = 120.0", "power_kw = -1")
        .replace('name = "Station"', 'name = "Station"\nbogus = 1')
    )
    problems = problems_of(text)
    assert len(problems) == 3, problems
    assert "test.toml: 3 problems:" in str(ConfigError("test.toml", problems))


def test_toml_syntax_error_names_the_line() -> None:
    problems = problems_of(BASE.replace('name = "Station"', 'name = "Station'))
    assert len(problems) == 1
    assert "TOML syntax error" in problems[0] and "line 9" in problems[0], problems


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "file not found" in str(info.value) and "evgw config example" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# --- secrets -------------------------------------------------------------------------------

CEC = (
    '[uplinks.cec]\nbase_url = "https://x/"\nplatform_operator_id = "MA5GOV001"\n\n'
    + TARIFF
    + "\n[[can_buses]]"
)
GOOD_SECRETS = """
[mqtt]
username = "user-1"
password = "pw-very-secret"
[cec]
operator_secret = "OPSECRET12345678"
data_secret = "DATASECRET123456"
data_iv = "DATAIV1234567890"
sig_secret = "SIGSECRET1234567"
"""


def config_with_secrets(tmp_path: Path, secrets_text: str, mode: int = 0o600) -> object:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(secrets_text)
    os.chmod(secrets, mode)
    return parse_config(BASE.replace("SECRETS", str(secrets)).replace("[[can_buses]]", CEC, 1))


def test_secrets_loaded_and_masked(tmp_path: Path) -> None:
    config = config_with_secrets(tmp_path, GOOD_SECRETS)
    secrets = load_secrets(config)  # type: ignore[arg-type]
    assert (
        secrets.uplink("cec") is not None and secrets.uplink("cec").sig_secret == "SIGSECRET1234567"
    )
    assert "SIGSECRET" not in repr(secrets)
    assert set(secrets.values()) == {
        "OPSECRET12345678",
        "DATASECRET123456",
        "DATAIV1234567890",
        "SIGSECRET1234567",
    }


def test_world_readable_secrets_refused(tmp_path: Path) -> None:
    config = config_with_secrets(tmp_path, GOOD_SECRETS, mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_secrets(config)  # type: ignore[arg-type]
    assert "readable or writable by others (mode 0644); fix: chmod 600" in str(info.value)


def test_secrets_owned_by_someone_else_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    config = config_with_secrets(tmp_path, GOOD_SECRETS)
    os.chown(tmp_path / "secrets.toml", 12345, 12345)
    with pytest.raises(ConfigError, match="owned by uid 12345, not by the service user"):
        load_secrets(config)  # type: ignore[arg-type]


def test_unreadable_secrets_reported(tmp_path: Path) -> None:
    config = parse_config(
        BASE.replace("SECRETS", str(tmp_path / "none.toml")).replace("[[can_buses]]", CEC, 1)
    )
    with pytest.raises(ConfigError, match=r"secrets file .* does not exist"):
        load_secrets(config)


def test_secrets_with_bad_lengths(tmp_path: Path) -> None:
    config = config_with_secrets(
        tmp_path,
        GOOD_SECRETS.replace("DATAIV1234567890", "short").replace(
            'sig_secret = "SIGSECRET1234567"', ""
        ),
    )
    with pytest.raises(ConfigError) as info:
        load_secrets(config)  # type: ignore[arg-type]
    text = str(info.value)
    assert "cec.data_iv: must be 16 ASCII characters, found 5 bytes" in text
    assert "cec.sig_secret: required, a non-empty string" in text


def test_secrets_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secrets.toml").write_text(GOOD_SECRETS)
    os.chmod(creds / "secrets.toml", 0o644)  # systemd protects the directory itself
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = parse_config(BASE.replace("SECRETS", "/nonexistent").replace("[[can_buses]]", CEC, 1))
    secrets = load_secrets(config)
    assert secrets.source == str(creds / "secrets.toml")
    assert (
        secrets.uplink("cec") is not None
        and secrets.uplink("cec").data_secret == "DATASECRET123456"
    )


def test_no_uplinks_needs_no_secrets(tmp_path: Path) -> None:
    config = parse_config(BASE.replace("SECRETS", str(tmp_path / "absent.toml")))
    assert load_secrets(config).uplink("cec") is None


def test_cec_needs_manufacturer_ids() -> None:
    text = BASE.replace('manufacturer_id = "MA5DA0053"\n', "").replace("[[can_buses]]", CEC, 1)
    problems = problems_of(text)
    assert problems == [
        "equipment[0].manufacturer_id: the city platform requires the manufacturer's "
        "9-character organisation code, found ''"
    ]
