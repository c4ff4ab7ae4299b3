"""`evgw can decode` on broken files: a clear message and exit 2, or the frames that could be
read — never a traceback; timestamps that are not finite never reach the output."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main

GOOD = (
    "(1700000000.000000) can0 1826F456#0A000102030405\n"
    "(1700000000.010000) can0 1801F456#00\n"
    "(1700000000.020000) can0 100956F4#AA\n"
)


def decode(path: Path, fmt: str = "jsonl") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["can", "decode", "--format", fmt, str(path)])
    return rc, out.getvalue(), err.getvalue()


def test_truncated_gz_names_the_file(tmp_path: Path) -> None:
    whole = gzip.compress((GOOD * 2000).encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole[: len(whole) // 2])
    rc, _out, err = decode(path)
    assert rc == 2, err
    assert f"{path}: the file ends or breaks before its end" in err and "internal error" not in err


@pytest.mark.parametrize("stamp", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_timestamps_are_skipped(tmp_path: Path, stamp: str) -> None:
    path = tmp_path / "bad.log"
    path.write_text(f"({stamp}) can0 18EF56F4#0102030405060708\n" + GOOD)
    rc, out, err = decode(path)
    assert rc == 0, err
    stamps = [json.loads(line)["ts"] for line in out.splitlines()]
    assert stamps and all(1_699_999_999 < t < 1_700_000_001 for t in stamps)
    assert "Infinity" not in out and "NaN" not in out


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=600),
    suffix=st.sampled_from([".log", ".log.gz", ".asc", ".trc", ".csv", ".blf"]),
    fmt=st.sampled_from(["jsonl", "table", "summary"]),
)
def test_fuzz_can_decode(tmp_path: Path, data: bytes, suffix: str, fmt: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    rc, out, err = decode(path, fmt)
    assert rc in (0, 2), err
    assert "internal error" not in err and "Traceback" not in err
    assert "Infinity" not in out and "NaN" not in out
