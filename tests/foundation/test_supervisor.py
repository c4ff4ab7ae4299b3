"""Supervised tasks: a crash is logged with its traceback and the task restarted with backoff."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from agent.service.supervisor import Supervisor


async def test_crashing_task_is_restarted_with_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(backoff_initial_s=0.01, backoff_max_s=0.04, healthy_after_s=60)
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    done = asyncio.Event()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) < 5:
            raise RuntimeError(f"boom {len(starts)}")
        done.set()
        await asyncio.Event().wait()  # healthy from now on

    with caplog.at_level(logging.ERROR):
        supervisor.start("flaky", flaky)
        await asyncio.wait_for(done.wait(), timeout=5)
    state = supervisor.states["flaky"]
    assert state.restarts == 4
    assert state.state == "running"
    assert state.last_error == "RuntimeError: boom 4"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.04 and gaps[3] >= 0.04
    failures = [r for r in caplog.records if "task flaky failed" in r.getMessage()]
    assert len(failures) == 4 and all(r.exc_info for r in failures)
    assert "restarting" not in supervisor.summary()
    await supervisor.stop(timeout_s=1)
    assert state.state == "stopped"


async def test_finished_task_is_not_restarted() -> None:
    supervisor = Supervisor(backoff_initial_s=0.01)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("once", once)
    await asyncio.sleep(0.05)
    assert runs == 1 and supervisor.states["once"].state == "finished"
    with pytest.raises(ValueError, match="already running"):
        supervisor.start("x", asyncio.Event().wait)
        supervisor.start("x", asyncio.Event().wait)
    await supervisor.stop(timeout_s=1)
