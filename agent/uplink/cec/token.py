"""The T/CEC 102 access-token cache (spec §8.3).

- Cache the token with ``expires_at = receive_time + TokenAvailableTime``.
- Refresh early: when the remaining life falls below ``max(60 s, 10 % of the lifetime)``, and
  at least every 24 h.
- Single flight: one refresh at a time, concurrent callers wait for it.
- ``invalidate(token)`` after a ``Ret 4002`` drops that token (not a newer one).
- A failed ``query_token`` backs off 5 s, 10 s, 30 s, 60 s, … capped at 10 min; meanwhile
  :meth:`TokenManager.get` fails fast with :class:`TokenUnavailable` so data stays queued.

The fetch itself (an HTTP call) and the clock are injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from agent.config.section import default_of
from agent.uplink.cec.config import CecSection

REFRESH_AT_LEAST_EVERY_S: Final = 24 * 3600.0
FAILURE_BACKOFF_S: Final = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class TokenUnavailable(RuntimeError):
    """No valid token: the last ``query_token`` failed and the back-off has not elapsed."""


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    issued_at: float
    lifetime_s: float

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.lifetime_s

    def needs_refresh(self, now: float, margin_s: float) -> bool:
        """Less than the margin left — ``token_refresh_margin_s``, at least a tenth of the
        token's lifetime and at most half of it — or older than a day."""
        margin = min(max(margin_s, 0.1 * self.lifetime_s), 0.5 * self.lifetime_s)
        return self.expires_at - now < margin or now - self.issued_at >= REFRESH_AT_LEAST_EVERY_S


class TokenManager:
    """Hands out a valid bearer token, fetching a new one when needed.

    ``fetch()`` performs ``query_token`` and returns ``(AccessToken, TokenAvailableTime)`` or
    raises any exception with a message a technician can act on.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        clock: Callable[[], float],
        failure_backoff_s: tuple[float, ...] = FAILURE_BACKOFF_S,
        refresh_margin_s: float = default_of(CecSection, "token_refresh_margin_s"),
    ) -> None:
        self._fetch = fetch
        self._margin_s = refresh_margin_s
        self._backoff = failure_backoff_s
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self.fetches = 0

    @property
    def token(self) -> Token | None:
        return self._token

    def invalidate(self, value: str) -> None:
        """Drop ``value`` if it is still the cached token (a refresh may have replaced it)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def get(self) -> str:
        token = self._token
        if token is not None and not token.needs_refresh(self._clock(), self._margin_s):
            return token.value
        async with self._lock:
            now = self._clock()
            token = self._token
            if token is not None and not token.needs_refresh(now, self._margin_s):
                return token.value  # another caller refreshed while we waited
            if now < self._retry_at:
                if token is not None and token.expires_at > now:
                    return token.value  # still valid: use it while query_token is backing off
                raise TokenUnavailable(
                    f"no access token: query_token failed ({self._last_error}); "
                    f"next attempt in {self._retry_at - now:.0f} s"
                )
            self.fetches += 1
            try:
                value, lifetime_s = await self._fetch()
            except Exception as exc:
                delay = self._backoff[min(self._failures, len(self._backoff) - 1)]
                self._failures += 1
                self._retry_at = self._clock() + delay
                self._last_error = str(exc) or type(exc).__name__
                if token is not None and token.expires_at > self._clock():
                    return token.value
                raise TokenUnavailable(f"query_token failed: {self._last_error}") from exc
            self._failures = 0
            self._retry_at = 0.0
            self._token = Token(value, self._clock(), float(lifetime_s))
            return value
