"""Logging that a flood cannot turn into a flood of lines.

A platform that refuses every record, 5,000 unsigned commands or a burst of broken
status-socket clients must not write 5,000 log lines: :class:`LogLimiter` logs the first
occurrence of a kind of trouble with its context, then at most one line per ``interval_s``
saying how many more there were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    opened_s: float
    suppressed: int = 0


class LogLimiter:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message`` unless ``key`` was logged less than ``interval_s`` ago; returns
        whether a line was written. A suppressed run is summed up in the next line."""
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.opened_s < self._interval_s:
            window.suppressed += 1
            return False
        if window is not None and window.suppressed:
            message += f" ({window.suppressed} more like this in the last {self._interval_s:.0f} s)"
        self._windows[key] = _Window(opened_s=now)
        if len(self._windows) > 1000:  # keys come from bounded sets; never let them grow
            self._windows = {key: self._windows[key]}
        self._log.log(level, message, *args)
        return True
