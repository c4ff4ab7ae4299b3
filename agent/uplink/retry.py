"""Retry policy: exponential backoff with full jitter, capped (DESIGN §6).

``delay = uniform(0, min(cap, initial * factor**attempt))``: full jitter spreads the retries
of a fleet of gateways after a platform outage, the cap bounds how stale a backlog can get.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 1.0
    cap_s: float = 600.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number ``attempt`` (0-based)."""
        return min(self.cap_s, self.initial_s * self.factor ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))


@dataclass(slots=True)
class RetryState:
    """Counts consecutive failures of one operation and yields its next delay."""

    backoff: Backoff
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        delay = self.backoff.delay(self.attempt, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
