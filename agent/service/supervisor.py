"""Supervised asyncio tasks: a task that raises is logged and restarted with backoff.

A supervised task that returns normally is finished and not restarted. One that raises is
logged with its traceback and started again after an exponential backoff (1 s, 2 s, 4 s …
capped), reset once the task has run for ``healthy_after_s``. Nothing dies silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class TaskState:
    name: str
    state: str = "starting"  # running | restarting | finished | stopped
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    def __init__(
        self,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        healthy_after_s: float = 60.0,
    ) -> None:
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, TaskState] = {}

    def start(self, name: str, factory: TaskFactory) -> None:
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"a task named {name!r} is already running")
        self.states[name] = TaskState(name)
        self._tasks[name] = asyncio.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        state = self.states[name]
        delay = self.backoff_initial_s
        while True:
            started = time.monotonic()
            state.state = "running"
            try:
                await factory()
            except asyncio.CancelledError:
                state.state = "stopped"
                raise
            except Exception as exc:
                if time.monotonic() - started >= self.healthy_after_s:
                    delay = self.backoff_initial_s
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.state = "restarting"
                log.exception("task %s failed (restart %d in %.1f s)", name, state.restarts, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
            else:
                state.state = "finished"
                log.info("task %s finished", name)
                return

    async def stop(self, timeout_s: float = 5.0, names: Iterable[str] | None = None) -> None:
        """Cancel the named tasks (default: every task), newest first, and wait for them, at
        most ``timeout_s`` in all."""
        chosen = list(self._tasks) if names is None else [n for n in names if n in self._tasks]
        tasks = [self._tasks.pop(n) for n in reversed(chosen)]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                log.error("task %s did not stop within %.1f s", task.get_name(), timeout_s)

    def running(self, name: str) -> bool:
        """Whether a task of this name is supervised (running or waiting to restart)."""
        return name in self._tasks and not self._tasks[name].done()

    def forget(self, names: Iterable[str]) -> None:
        """Drop the states of stopped tasks that are gone for good (a part a config removed)."""
        for name in names:
            if not self.running(name):
                self.states.pop(name, None)

    def summary(self) -> str:
        running = sum(1 for s in self.states.values() if s.state == "running")
        restarting = [s.name for s in self.states.values() if s.state == "restarting"]
        text = f"{running} tasks running"
        if restarting:
            text += f", restarting: {', '.join(restarting)}"
        return text
