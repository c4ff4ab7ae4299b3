"""Tests that read ../shared say so in the summary when the folder is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("workers", ["0", "2"])  # in this process, and as make test runs them
def test_summary_names_the_absent_shared_folder(tmp_path: Path, workers: str) -> None:
    absent = tmp_path / "no-shared"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            workers,
            "tests/gbt27930/test_gbt_capture.py",
        ],
        cwd=REPO,
        env={**os.environ, "EVGW_SHARED_DIR": str(absent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [line for line in result.stdout.splitlines() if str(absent) in line]
    summary = [line for line in lines if "is absent" in line]
    assert len(summary) == 1, result.stdout[-2000:]
    skipped = int(summary[0].split(": ")[1].split()[0])
    assert skipped >= 3 and f"{skipped} skipped" in result.stdout
