"""The T/CEC pushes that no ledger record triggers: live session samples and reconciliation.

- ``notification_equip_charge_status`` every ``charge_status_interval_s`` for each connector
  whose last status (seen by the uplink) is charging and fresh; one attempt each, the next
  sample supersedes a lost one (spec §10.2).
- ``check_charge_orders`` once a day between 00:00 and 03:00 China time, for the previous
  day's orders (spec §16).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.records.bodies import ConnectorStatusBody
from agent.uplink.cec.codec import CHINA_TZ
from agent.uplink.cec.mapping import (
    CHARGE_STATUS,
    CHECK_ORDERS,
    MappingContext,
    check_charge_orders,
    china_day_bounds,
    equip_charge_status,
)

if TYPE_CHECKING:
    from agent.ledger import Ledger

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


class Periodic:
    """The timed pushes of one uplink (called by its ticker)."""

    def __init__(
        self,
        interfaces: frozenset[str],
        interval_s: float,
        ctx: MappingContext,
        ledger: Ledger,
        one_shot: OneShot,
        counters: CecCounters,
    ) -> None:
        self.interfaces = interfaces
        self.interval_s = interval_s
        self._ctx = ctx
        self._ledger = ledger
        self._one_shot = one_shot
        self._counters = counters
        self._last_reconciled_day: _dt.date | None = None

    async def tick(self, now: float) -> None:
        await self.push_charge_status(now)
        today = _dt.datetime.fromtimestamp(now, tz=CHINA_TZ)
        due = today.hour < 3 and self._last_reconciled_day != today.date()
        if due and await self.reconcile_orders(now):
            self._last_reconciled_day = today.date()

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

    async def reconcile_orders(self, now: float) -> bool:
        """``check_charge_orders`` for the previous China-time day; True once accepted."""
        if CHECK_ORDERS not in self.interfaces:
            return True
        start, end = china_day_bounds(now)
        orders = await self._ledger.find("charge_order")
        data = check_charge_orders(orders, start, end, self._ctx)
        reply = await self._one_shot(CHECK_ORDERS, data)
        if reply is None:
            return False
        disputed = reply.get("TotalDisputeOrder", 0) if isinstance(reply, dict) else 0
        if disputed:
            log.warning(
                "T/CEC check_charge_orders: %s disputed orders: %s",
                disputed,
                reply.get("DisputeOrders"),
            )
        self._counters.reconciliations += 1
        return True
