"""Every command that reads a file, fed bytes a careless or hostile person could hand it:
exit 0, 1 or 2 with a message, never a traceback and never the CLI's internal-error guard."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main

# (argv with {file} for the fuzzed file, the file's name)
ENTRY_POINTS = [
    (["config", "check", "{file}"], "evgw.toml"),
    (["config", "check", "--secrets", "{file}"], "evgw.toml"),
    (["replay", "--can", "{file}"], "capture.log"),
    (["ledger", "stats", "--ledger", "{file}"], "ledger.db"),
    (["ledger", "export", "--ledger", "{file}", "-o", "{out}"], "ledger.db"),
    (["ledger", "verify", "{file}", "--pubkey", "{file}"], "records.jsonl"),
    (["keys", "show", "--key", "{file}"], "gateway.key"),
    (["meter", "profiles", "--profiles", "{file}"], "meter.toml"),
    (
        ["cec", "open", "--data-secret", "a" * 16, "--data-iv", "b" * 16, "--sig-secret", "c" * 16],
        "stdin",
    ),
]


def run(argv: list[str], stdin: bytes) -> tuple[int, str]:
    err = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="strict")
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())),
        ):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse
                rc = int(exc.code or 0)
    finally:
        sys.stdin = old_stdin
    return rc, err.getvalue()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entry=st.sampled_from(ENTRY_POINTS),
    data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
)
def test_no_entry_point_raises(tmp_path: Path, entry: tuple[list[str], str], data: bytes) -> None:
    template, name = entry
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o600)
    argv = [a.format(file=path, out=tmp_path / "out.jsonl") for a in template]
    rc, err = run(argv, data)
    assert rc in (0, 1, 2), (argv, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
