"""The `evgw` command line: help, usage errors exit 2 without a traceback, config commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser

EVGW = [sys.executable, "-m", "agent.cli"]


def evgw(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVGW, *args], capture_output=True, text=True, input=stdin, timeout=60)


def test_help_lists_commands() -> None:
    result = evgw("--help")
    assert result.returncode == 0
    for command in ("config", "run", "demo"):
        assert command in result.stdout


def every_command_path() -> list[list[str]]:
    """Every sub-command (and sub-sub-command) path, for the --help test."""
    paths: list[list[str]] = []

    def walk(parser: object, prefix: list[str]) -> None:
        for action in getattr(parser, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, child in choices.items():
                    paths.append([*prefix, name])
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("path", every_command_path(), ids=lambda p: " ".join(p))
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: evgw " + " ".join(path))
    assert len(out.splitlines()) >= 3


@pytest.mark.parametrize(
    "args",
    [["frobnicate"], ["config"], ["config", "frob"], ["run", "--no-such-flag"], [], ["--bogus"]],
)
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    result = evgw(*args)
    assert result.returncode == 2
    assert "usage: evgw" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_example_is_valid(tmp_path: Path) -> None:
    example = evgw("config", "example")
    assert example.returncode == 0
    path = tmp_path / "evgw.toml"
    path.write_text(example.stdout)
    check = evgw("config", "check", str(path))
    assert check.returncode == 0, check.stderr
    assert (
        "OK — gateway gw-sz-futian-001, station SZ-FT-0001, 3 connectors, 4 meters" in check.stdout
    )
    secrets = evgw("config", "example", "--secrets")
    assert "[cec]" in secrets.stdout and "sig_secret" in secrets.stdout


def test_config_check_reports_problems_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "evgw.toml"
    path.write_text(evgw("config", "example").stdout.replace("unit_id = 2", "unit_id = 248"))
    result = evgw("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: 1 problem:" in result.stderr
    assert "meters[1].unit_id: expected `int` <= 247, found 248" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_missing_file_exit_2(tmp_path: Path) -> None:
    result = evgw("config", "check", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_run_with_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "evgw.toml"
    path.write_text("[gateway\n")
    result = evgw("run", "--config", str(path))
    assert result.returncode == 2
    assert "TOML syntax error" in result.stderr and "line 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_service_is_a_clear_error(tmp_path: Path) -> None:
    result = evgw("status", "--socket", str(tmp_path / "status.sock"))
    assert result.returncode == 1
    assert (
        f"no status socket at {tmp_path / 'status.sock'}: is the service running?" in result.stderr
    )
    assert "Traceback" not in result.stderr
