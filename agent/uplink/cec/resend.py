"""``evgw uplink parked`` / ``evgw uplink resend`` for the T/CEC uplink, inside the service.

A request (from the status socket) is checked and answered at once: the selected records
are released from parking and queued, and an ``uplink_resend_requested`` event is written.
The uplink's loop sends the queue between batches (and while it waits for registration), in
seq order, through the normal delivery — a record refused again is parked again — and writes
an ``uplink_resend_done`` event with what became of each record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from agent.uplink.cec.parking import MAX_RESEND, ResendRequest

if TYPE_CHECKING:
    from agent.ledger import Ledger
    from agent.uplink.cec.uplink import CecUplink

log = logging.getLogger("agent.uplink.cec")

LISTED_SEQS = 50
"""Seqs named in a resend event (the counts are always complete)."""


class Resender:
    def __init__(self, uplink: CecUplink, ledger: Ledger) -> None:
        self._uplink = uplink
        self._ledger = ledger
        self._queue: list[list[int]] = []
        self._requested = asyncio.Event()

    async def parked(self, limit: int = MAX_RESEND) -> dict[str, Any]:
        rows = [
            {"seq": p.seq, "kind": p.kind, "reason": p.reason, "ts": p.ts}
            for p in await self._ledger.parked(self._uplink.name, limit)
        ]
        return {"uplink": self._uplink.name, "count": len(rows), "parked": rows}

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check, release and queue; ValueError says what is wrong with the request."""
        wanted = ResendRequest.parse(request)
        name = self._uplink.name
        if wanted.parked:
            seqs = [p.seq for p in await self._ledger.parked(name, MAX_RESEND)]
        else:
            first, last = wanted.span(self._ledger.last_seq)
            seqs = list(range(first, last + 1))
        released = await self._ledger.unpark(name, seqs) if seqs else 0
        self._uplink.parked_now = max(0, self._uplink.parked_now - released)
        if seqs:
            self._queue.append(seqs)
            self._requested.set()
        by = str(request.get("requested_by") or "status socket")[:64]
        summary = {
            "uplink": name,
            "queued": len(seqs),
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            "released_from_parking": released,
            "requested_by": by,
        }
        await self._uplink.record_event(
            "uplink_resend_requested",
            f"{name}: resend of {len(seqs)} records requested by {by}"
            + (f" (seq {seqs[0]}..{seqs[-1]})" if seqs else ""),
            **{k: v for k, v in summary.items() if k != "uplink"},
        )
        log.info("T/CEC resend requested: %s", summary)
        return summary

    async def nap(self, seconds: float) -> None:
        """Sleep ``seconds`` (the uplink's sleep) or until a resend is requested."""
        waiter = asyncio.ensure_future(self._requested.wait())
        napper = asyncio.ensure_future(self._uplink.sleep(seconds))
        try:
            await asyncio.wait({waiter, napper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, napper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def run_pending(self) -> None:
        """Send every queued request, oldest first."""
        while self._queue:
            seqs = self._queue.pop(0)
            if not self._queue:
                self._requested.clear()
            await self._send(seqs)

    async def _send(self, seqs: list[int]) -> None:
        outcomes: dict[str, list[int]] = {"accepted": [], "discarded": [], "parked": []}
        skipped = 0
        wanted = set(seqs)
        after = seqs[0] - 1
        while after < seqs[-1]:
            limit = min(self._uplink.settings.batch_size, seqs[-1] - after)
            batch = await self._ledger.read_after(after, limit)
            if not batch:
                break
            for record in batch:
                if record.seq not in wanted:
                    continue
                outcome = await self._uplink.deliver(record)
                if outcome is None:
                    skipped += 1
                else:
                    outcomes[outcome.value].append(record.seq)
            after = batch[-1].seq
        counts = {k: len(v) for k, v in outcomes.items()}
        name = self._uplink.name
        await self._uplink.record_event(
            "uplink_resend_done",
            f"{name}: resent {len(seqs)} records: "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + f", {skipped} not for this platform",
            **counts,
            not_for_platform=skipped,
            **{f"{k}_seqs": v[:LISTED_SEQS] for k, v in outcomes.items() if v},
        )
        log.info("T/CEC resend done: %s, %d not for this platform", counts, skipped)
