"""The layering contracts in pyproject.toml hold, and the tool really fails a broken one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_layering_contracts_are_kept() -> None:
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    # the station model does import the records: a contract forbidding it must fail
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["agent"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "station without records"\n'
        'type = "forbidden"\nsource_modules = ["agent.station"]\n'
        'forbidden_modules = ["agent.records"]\n'
    )
    result = run("--config", str(config))
    assert result.returncode == 1
    assert "station without records BROKEN" in result.stdout
