"""Configs as a careless or hostile person writes them: never a traceback, always the file
and what is wrong; plaintext to public addresses warned about; shipped example secrets
refused."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.config.errors import ConfigError
from agent.config.load import config_warnings, parse_config
from agent.config.resources import read_resource
from agent.config.secrets import load_secrets
from tests.foundation.test_config import BASE, CEC

EXAMPLE = read_resource("evgw.example.toml")


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'a = "\xff\xfe"\n', "not UTF-8 text: byte 0xff at offset 5 (line 1)"),
        (("x = " + "[" * 5000 + "]" * 5000).encode(), "nested too deeply"),
        (f"x = 1{'0' * 5000}\n".encode(), "unreadable value"),
        (b"x = 1\n" * 200_000, "larger than any config"),
        (b"[gateway\n", "TOML syntax error"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "evgw.toml"
    path.write_bytes(content)
    rc, err = run_cli("config", "check", str(path))
    assert rc == 2 and expected in err and str(path) in err and "Traceback" not in err


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_fuzz_config_check_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    rc, err = run_cli("config", "check", str(path))
    assert rc == 2 and "internal error" not in err and "Traceback" not in err


@settings(max_examples=150, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=len(EXAMPLE)),
    junk=st.text(alphabet="[]{}=\"',.#\n 0123456789abcdefinf-+_", max_size=30),
)
def test_fuzz_config_check_mangled_example(cut: int, junk: str) -> None:
    """The example config cut anywhere and spliced with TOML-ish junk: valid or a clean list."""
    try:
        parse_config(EXAMPLE[:cut] + junk + EXAMPLE[cut:])
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


def test_plaintext_mqtt_to_a_public_broker_is_warned() -> None:
    public = BASE.replace("SECRETS", "/nonexistent").replace(
        "[[can_buses]]",
        '[uplinks.mqtt]\nbrokers = ["broker.example.com:1883", "127.0.0.1:1883"]\ntls = false\n\n[[can_buses]]',
        1,
    )
    warnings = config_warnings(parse_config(public))
    assert len(warnings) == 1 and "broker.example.com:1883" in warnings[0]
    assert "127.0.0.1" not in warnings[0] and warnings[0].startswith("uplinks.mqtt.tls")
    local = public.replace('"broker.example.com:1883", ', "")
    assert config_warnings(parse_config(local)) == []


def test_plaintext_warning_printed_by_config_check(tmp_path: Path) -> None:
    path = tmp_path / "evgw.toml"
    path.write_text(
        BASE.replace("SECRETS", str(tmp_path / "s.toml")).replace(
            "[[can_buses]]",
            '[uplinks.mqtt]\nbrokers = ["10.1.2.3:1883"]\ntls = false\n\n[[can_buses]]',
            1,
        )
    )
    rc, err = run_cli("config", "check", str(path))
    assert rc == 0 and "warning: uplinks.mqtt.tls: false sends records" in err


def test_shipped_example_secrets_are_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(read_resource("secrets.example.toml"))
    secrets.chmod(0o600)
    text = BASE.replace("SECRETS", str(secrets)).replace(
        "[[can_buses]]", '[uplinks.mqtt]\nbrokers = ["127.0.0.1:1883"]\ntls = false\n\n' + CEC, 1
    )
    with pytest.raises(ConfigError) as caught:
        load_secrets(parse_config(text))
    refused = {p.split(":")[0] for p in caught.value.problems}
    assert refused == {
        "mqtt.password",
        "cec.operator_secret",
        "cec.data_secret",
        "cec.data_iv",
        "cec.sig_secret",
    }
    assert all("shipped example" in p for p in caught.value.problems)


def test_plaintext_city_platform_is_warned() -> None:
    public = BASE.replace("SECRETS", "/nonexistent").replace(
        "[[can_buses]]", CEC.replace("https://x/", "http://platform.example.gov.cn/evcs/"), 1
    )
    warnings = config_warnings(parse_config(public))
    assert len(warnings) == 1 and warnings[0].startswith(
        "uplinks.cec.base_url: http:// to platform.example.gov.cn"
    )
    local = public.replace("platform.example.gov.cn", "127.0.0.1:8080")
    assert config_warnings(parse_config(local)) == []
    assert config_warnings(parse_config(public.replace("http://", "https://"))) == []
