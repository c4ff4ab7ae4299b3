"""Sans-I/O online/offline state of one meter, with retry backoff.

A meter that fails ``offline_after`` polls in a row goes offline (one event). While
offline, :meth:`MeterHealth.due` only lets a poll through after a backoff that doubles
from ``backoff_s`` up to ``backoff_max_s``, so a dead meter does not eat the line's time.
The first success emits ``MeterOnline``. Time is always the caller's ``ts``.
"""

from __future__ import annotations

from drivers.modbus.events import MeterEvent, MeterOffline, MeterOnline


class MeterHealth:
    def __init__(
        self,
        meter_id: str,
        offline_after: int = 3,
        backoff_s: float = 5.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.meter_id = meter_id
        self.offline_after = max(1, offline_after)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.online: bool | None = None  # None until the first poll outcome
        self.failures = 0
        self.offline_since: float | None = None
        self.last_error = ""
        self._next_try = 0.0
        self._delay = backoff_s

    def due(self, ts: float) -> bool:
        """Whether a poll at ``ts`` should go on the line."""
        return self.online is not False or ts >= self._next_try

    def success(self, ts: float) -> list[MeterEvent]:
        events: list[MeterEvent] = []
        if self.online is not True:
            events.append(MeterOnline(self.meter_id, ts, self.offline_since))
        self.online = True
        self.failures = 0
        self.offline_since = None
        self.last_error = ""
        self._delay = self.backoff_s
        return events

    def failure(self, ts: float, reason: str) -> list[MeterEvent]:
        self.failures += 1
        self.last_error = reason
        events: list[MeterEvent] = []
        if self.online is not False and self.failures >= self.offline_after:
            self.online = False
            self.offline_since = ts
            events.append(MeterOffline(self.meter_id, ts, self.failures, reason))
            self._delay = self.backoff_s
        elif self.online is False:
            self._delay = min(self._delay * 2, self.backoff_max_s)
        if self.online is False:
            self._next_try = ts + self._delay
        return events
