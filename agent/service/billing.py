"""The billing audit in the running service: the ``billed`` request (from the MQTT command,
over the status socket) and the watch for orders left without a billed figure.

Everything it needs is in the ledger, so it works the same for an order written before a
restart: the order is found by its session id (the ledger's session index) or by its T/CEC
``StartChargeSeq`` (among the newest :data:`SEQ_LOOKUP_ORDERS` orders), the session's
earlier audit by the session index too. The comparison itself is
:mod:`agent.station.billed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from agent.config.schema import Config
from agent.ledger import Ledger
from agent.records.bodies import BillingEventBody
from agent.records.envelope import StoredRecord, parse_iso_ts
from agent.station.billed import (
    KWH_DECIMALS,
    MAX_BILLED_KWH,
    MAX_BILLED_YUAN,
    YUAN_DECIMALS,
    BilledError,
    BilledFigure,
    Tolerance,
    amount,
    audit_state,
    billed_missing,
    check_billed,
)
from agent.uplink.cec.mapping import start_charge_seq

log = logging.getLogger("evgw.billing")

SEQ_LOOKUP_ORDERS: Final = 5000
"""A ``StartChargeSeq`` is a hash of the session id: found among this many newest orders."""
WATCH_ORDERS: Final = 1000
"""The missing-figure watch looks at this many newest orders …"""
WATCH_LOOKBACK_S: Final = 7 * 86400.0
"""… that ended at most this long before their deadline (no flood for old orders)."""


class BillingDesk:
    def __init__(
        self, config: Config, ledger: Ledger, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._clock = clock
        self._tolerance = Tolerance.of(config.safety)
        cec = config.uplinks.cec
        self._operator_id = (cec.operator_id if cec else None) or config.gateway.operator_id
        self._settled: dict[str, float] = {}
        """Session → order end: sessions the missing watch need not look at again (billed or
        flagged), pruned once past the look-back."""
        self._lock = asyncio.Lock()

    async def _order(self, session_id: str | None, seq: str | None) -> StoredRecord | None:
        if session_id is not None:
            found = await self._ledger.find(
                "charge_order", session_id=session_id, limit=1, newest_first=True
            )
            return found[0] if found else None
        orders = await self._ledger.find("charge_order", limit=SEQ_LOOKUP_ORDERS, newest_first=True)
        for order in orders:
            if start_charge_seq(self._operator_id, order.body["session_id"]) == seq:
                return order
        return None

    async def billed(self, request: dict[str, Any]) -> dict[str, Any]:
        """``billed {session_id | start_charge_seq, billed_kwh, billed_yuan, command_id}``:
        ``{"ok": true, "result": …}`` with the comparison, or ``{"ok": false, "error": …}``
        and nothing written."""
        session_id, seq = request.get("session_id"), request.get("start_charge_seq")
        if not isinstance(session_id, str | None) or not isinstance(seq, str | None):
            return {"ok": False, "error": "session_id and start_charge_seq are strings"}
        if (session_id is None) == (seq is None):
            return {"ok": False, "error": "give exactly one of session_id and start_charge_seq"}
        try:
            figure = BilledFigure(
                amount(request.get("billed_kwh"), "billed_kwh", KWH_DECIMALS, MAX_BILLED_KWH),
                amount(request.get("billed_yuan"), "billed_yuan", YUAN_DECIMALS, MAX_BILLED_YUAN),
                str(request.get("command_id") or "")[:128],
            )
        except BilledError as exc:
            return {"ok": False, "error": str(exc)}
        async with self._lock:  # one session's audit state is read and written in turn
            order = await self._order(session_id, seq)
            if order is None:
                which = f"session {session_id!r}" if session_id else f"StartChargeSeq {seq!r}"
                return {"ok": False, "error": f"no order for {which} in the ledger"}
            sid = order.body["session_id"]
            before = audit_state(await self._ledger.find("event", session_id=sid))
            records, result = check_billed(order, figure, self._tolerance, before, self._clock())
            for record in records:
                await self._ledger.append(record)
        self._settled[sid] = parse_iso_ts(order.body["end_ts"])
        verdict = "agrees" if result["agrees"] else "differs from the metered order"
        log.info("billed figure for session %s: %s", sid, verdict)
        return {"ok": True, "result": result}

    async def check_missing(self) -> int:
        """Flag the orders past their deadline without a billed figure; how many were."""
        deadline_s = self._config.safety.billed_deadline_s
        now = self._clock()
        flagged = 0
        horizon = now - deadline_s - WATCH_LOOKBACK_S
        self._settled = {s: end for s, end in self._settled.items() if end >= horizon}
        orders = await self._ledger.find("charge_order", limit=WATCH_ORDERS, newest_first=True)
        for order in orders:
            sid, end = order.body["session_id"], parse_iso_ts(order.body["end_ts"])
            if sid in self._settled or not horizon <= end <= now - deadline_s:
                continue
            async with self._lock:
                events = await self._ledger.find("event", session_id=sid)
                if not any(e.body.get("event") in BillingEventBody.EVENTS for e in events):
                    for record in billed_missing(order, deadline_s, now):
                        await self._ledger.append(record)
                    flagged += 1
            self._settled[sid] = end
        return flagged

    async def run(self) -> None:
        """The missing-figure watch, until cancelled (off with ``billed_deadline_s = 0``)."""
        deadline_s = self._config.safety.billed_deadline_s
        if deadline_s <= 0:
            await asyncio.Event().wait()
        interval_s = min(300.0, max(1.0, deadline_s / 10))
        while True:
            flagged = await self.check_missing()
            if flagged:
                log.warning("%d orders have no billed figure past the deadline", flagged)
            await asyncio.sleep(interval_s)
