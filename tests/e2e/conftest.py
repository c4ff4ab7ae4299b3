"""Fixtures of the end-to-end tests: a rig per test, torn down whatever happens, with the
agent's logs printed when the test fails (pytest shows a failing test's captured output)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import DEFAULT_SAMPLING, Rig, build_rig


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make_rig(n_connectors, sampling=...)``: the simulated station and platforms."""
    rigs: list[Rig] = []

    def make(n_connectors: int, sampling: str = DEFAULT_SAMPLING) -> Rig:
        rig = build_rig(tmp_path / f"rig{len(rigs) + 1}", n_connectors, sampling)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        print(rig.agent.all_logs())
        rig.close()
