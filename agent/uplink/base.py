"""The counters every uplink keeps (the plug-in contract is :mod:`agent.uplink.plugin`).

An uplink reads batches from the ledger after its own cursor, sends them, and acknowledges
(moves the cursor) only after the platform acknowledged; ``stats`` feeds ``evgw status`` and
the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class UplinkStats:
    """Counters of one uplink (monotonic except ``backlog``, ``connected`` and errors)."""

    sent: int = 0
    """Records handed to the transport (retries not counted)."""
    acked: int = 0
    """Records acknowledged by the platform (cursor moved past them)."""
    retries: int = 0
    parked: int = 0
    backlog: int = 0
    connected: bool = False
    last_error: str | None = None
    last_error_ts: float | None = None

    def error(self, message: str, now_s: float) -> None:
        self.last_error, self.last_error_ts = message, now_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LogLimiter:
    """Rate limit for log lines that a misbehaving peer can repeat at will.

    The first line of a ``key`` is logged at once; later ones at most every ``interval_s``,
    saying how many were suppressed in between, so a platform that refuses every request
    costs one line a minute, not one per attempt.
    """

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(
        self, logger: logging.Logger, level: int, key: str, now_s: float, msg: str, *args: object
    ) -> None:
        last = self._last.get(key)
        if last is not None and now_s - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now_s
        if suppressed:
            msg += " (%d more like it since the last line)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)
