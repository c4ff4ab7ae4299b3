"""When the tracker takes a :class:`~drivers.gbt27930.events.ChargingSample` of a session: at
most once per ``sample_interval_s`` of frame time."""

from __future__ import annotations


class SampleGate:
    """Decides, message by message, whether a charging sample is due."""

    __slots__ = ("interval_s", "last_ts")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_ts = float("-inf")

    def due(self, ts: float) -> bool:
        """True (and the sample counts as taken) when ``interval_s`` passed since the last."""
        if ts - self.last_ts < self.interval_s:
            return False
        self.last_ts = ts
        return True
