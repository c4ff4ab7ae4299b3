"""The T/CEC pushes that no ledger record triggers: live session samples and reconciliation.

- ``notification_equip_charge_status`` every ``charge_status_interval_s`` for each connector
  whose last status (seen by the uplink) is charging and fresh; one attempt each, the next
  sample supersedes a lost one (spec §10.2).
- ``check_charge_orders`` for every finished day not yet reconciled, at start and every
  hour (:mod:`agent.uplink.cec.reconcile`).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.records.bodies import ConnectorStatusBody
from agent.uplink.cec.codec import CHINA_TZ
from agent.uplink.cec.mapping import (
    CHARGE_STATUS,
    CHECK_ORDERS,
    MappingContext,
    equip_charge_status,
)
from agent.uplink.cec.reconcile import Reconciler
from agent.uplink.cec.state_file import read_json, write_json

log = logging.getLogger("agent.uplink.cec")

OneShot = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Send one push once (a second time only after a token refresh): the reply, or None."""


@dataclass(slots=True)
class CecCounters:
    charge_status_pushes: int = 0
    reconciliations: int = 0
    disputed_orders: int = 0
    discarded: int = 0
    """Pushes the platform accepted with ``Status 1`` (discarded, do not retry)."""
    live: dict[str, tuple[float, ConnectorStatusBody]] = field(default_factory=dict)
    """Per connector: when and what its last delivered status was."""


CATCH_UP_EVERY_S: Final = 3600.0
MIN_PUSH_S, MAX_PUSH_S = 5, 3600
"""The cadences ``query_frequency`` may set (those of ``status_interval_s``)."""


class Periodic:
    """The timed pushes of one uplink (called by its ticker)."""

    def __init__(
        self,
        interfaces: frozenset[str],
        interval_s: float,
        ctx: MappingContext,
        one_shot: OneShot,
        counters: CecCounters,
        reconciler: Reconciler,
        cadence_file: Path | None = None,
    ) -> None:
        self.interfaces = interfaces
        self.interval_s = interval_s
        """Of the live session samples and the ticker; the platform may set it."""
        self._cadence_file = cadence_file
        saved = read_json(cadence_file, "push cadence")
        if isinstance(saved, dict) and isinstance(saved.get("interval_s"), int):
            self.interval_s = float(saved["interval_s"])
        self._ctx = ctx
        self._one_shot = one_shot
        self._counters = counters
        self.reconciler = reconciler
        self._next_catch_up = 0.0

    def set_interval(self, seconds: int) -> bool:
        """The cadence ``query_frequency`` asks for, within ``MIN_PUSH_S..MAX_PUSH_S``,
        written beside the ledger; False (and nothing changed) outside the range."""
        if not MIN_PUSH_S <= seconds <= MAX_PUSH_S:
            log.warning(
                "T/CEC query_frequency %d s refused (%d..%d)", seconds, MIN_PUSH_S, MAX_PUSH_S
            )
            return False
        self.interval_s = float(seconds)
        write_json(self._cadence_file, {"interval_s": seconds}, "push cadence")
        return True

    async def tick(self, now: float) -> None:
        await self.push_charge_status(now)
        if CHECK_ORDERS in self.interfaces and now >= self._next_catch_up:
            self._next_catch_up = now + CATCH_UP_EVERY_S
            self._counters.reconciliations += await self.reconciler.catch_up(now)

    async def push_charge_status(self, now: float) -> int:
        """One push per connector charging now; the number of pushes accepted."""
        if CHARGE_STATUS not in self.interfaces:
            return 0
        fresh_s = 3 * self.interval_s
        accepted = 0
        for connector_id, (ts, body) in list(self._counters.live.items()):
            data = equip_charge_status(connector_id, body, now, self._ctx)
            if data is None or now - ts > fresh_s:
                continue
            if await self._one_shot(CHARGE_STATUS, data) is not None:
                accepted += 1
                self._counters.charge_status_pushes += 1
        return accepted

    async def reconcile_day_before(self, now: float) -> bool:
        """``check_charge_orders`` for the China-time day before ``now``; True once accepted."""
        if CHECK_ORDERS not in self.interfaces:
            return True
        day = _dt.datetime.fromtimestamp(now, tz=CHINA_TZ).date() - _dt.timedelta(days=1)
        if not await self.reconciler.reconcile(day):
            return False
        self._counters.reconciliations += 1
        self.reconciler.marks.add(day, day + _dt.timedelta(days=1))
        return True
