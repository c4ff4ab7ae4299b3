"""When the tracker takes a :class:`~drivers.gbt27930.events.ChargingSample` of a session.

Normally at most once per ``sample_interval_s`` of frame time. Some capture exporters write one
timestamp for a whole file; while the timestamps of a session do not advance, time cannot gate
anything, so a sample is taken once per *message cycle* instead: when every kind of periodic
charging message (BCL, BCS, BSM, CCS) of the previous cycle has arrived again. A kind that stops
arriving cannot hold the samples back: once another kind repeated
:data:`MAX_CYCLE_REPEATS` times, the cycle closes without it.
"""

from __future__ import annotations

#: how often one kind may arrive within a cycle before the cycle closes anyway (BCL and CCS
#: come every 50 ms, BCS and BSM every 250 ms: five of each in a normal cycle)
MAX_CYCLE_REPEATS = 20


class SampleGate:
    """Decides, message by message, whether a charging sample is due."""

    __slots__ = ("_cycle", "_expected", "interval_s", "last_ts")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_ts = float("-inf")
        self._cycle: dict[type, int] = {}  # kinds received since the last sample, with counts
        self._expected: set[type] = set()  # the kinds of the last completed cycle

    def due(self, ts: float, kind: type, timestamps_constant: bool) -> bool:
        """True (and the sample counts as taken) when ``interval_s`` passed since the last one,
        or, while ``timestamps_constant``, when a message cycle is complete. ``kind`` is the
        type of the charging message that just arrived."""
        if not timestamps_constant:
            if ts - self.last_ts < self.interval_s:
                return False
            self.last_ts = ts
            return True
        cycle = self._cycle
        repeats = cycle.get(kind, 0) + 1
        cycle[kind] = repeats
        if repeats <= MAX_CYCLE_REPEATS and not self._expected <= cycle.keys():
            return False
        self._expected = set(cycle)
        cycle.clear()
        self.last_ts = ts
        return True
