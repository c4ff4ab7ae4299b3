"""The thin async adapter around the station model: driver events from one queue in, records
appended to the ledger, the model ticked from the wall clock.

The service puts every driver event (GB/T tracker events of each bus, meter readings and
events, site inputs, :class:`~agent.station.inputs.BusActivity`) on ``writer.queue`` and runs
``await writer.run()``. At start the writer asks the ledger which sessions a previous run left
open, the last register it read and where the OCMF transaction counter stands, so the model
can continue or close those sessions (:mod:`agent.station.resume`) and the counter, and what
it recorded of the site (meter identities and seal counts, site alarms left raised).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from agent.records.envelope import Record, StoredRecord
from agent.station.model import StationInput, StationModel
from agent.station.ocmf import pagination_of
from agent.station.restart import (
    OpenSession,
    RestartFacts,
    last_register,
    open_session,
    with_resumes,
)
from agent.station.site import SiteFacts, site_facts

#: every record of one session (bounded by the session itself)
_ALL = 1_000_000_000
#: how far back start-up looks, newest first: a session left open by a crash is settled at
#: the next start, so its records are always among the newest of its connector
_RECENT = 1000
#: how many of a connector's newest sessions start-up checks for a missing order
_MAX_OPEN = 5
#: how many of the newest events and alarms start-up reads for the meters' recorded identity
#: and seal counts and the site alarms left raised
_SITE_RECENT = 2000


class LedgerLike(Protocol):
    def append_nowait(self, record: Record) -> None: ...

    async def flush(self) -> int: ...

    async def find(
        self,
        kind: str,
        *,
        session_id: str | None = None,
        connector_id: str | None = None,
        limit: int = 10000,
        newest_first: bool = False,
    ) -> list[StoredRecord]: ...


async def _open_sessions(ledger: LedgerLike, statuses: list[StoredRecord]) -> list[OpenSession]:
    """The sessions of a connector's newest status records (newest first) that have no
    ``charge_order``, newest first; the search stops at the first session with an order."""
    ids: list[str] = []
    for r in statuses:
        sid = r.body.get("session_id")
        if isinstance(sid, str) and sid not in ids:
            ids.append(sid)
    found: list[OpenSession] = []
    for sid in ids[:_MAX_OPEN]:
        if await ledger.find("charge_order", session_id=sid, limit=1):
            break
        records = await ledger.find("connector_status", session_id=sid, limit=_ALL)
        records += await ledger.find("bms_process", session_id=sid, limit=_ALL)
        records.sort(key=lambda r: r.seq)
        session = open_session(records)
        if session is not None:
            found.append(session)
    return found


async def load_restart_facts(
    ledger: LedgerLike, connector_ids: Iterable[str]
) -> list[RestartFacts]:
    """Per connector with a history: the sessions left open (newest first) with the resumes
    earlier runs recorded, and the last register reading the ledger holds."""
    facts: list[RestartFacts] = []
    for cid in connector_ids:
        statuses = await ledger.find(
            "connector_status", connector_id=cid, limit=_RECENT, newest_first=True
        )
        opened = await _open_sessions(ledger, statuses)
        if opened:
            events = await ledger.find("event", connector_id=cid, limit=_RECENT, newest_first=True)
            opened = [with_resumes(o, events) for o in opened]
        samples = await ledger.find("meter_sample", connector_id=cid, limit=1, newest_first=True)
        orders = await ledger.find("charge_order", connector_id=cid, limit=1, newest_first=True)
        register = last_register(statuses[:1], samples, orders)
        if opened or register is not None:
            facts.append(
                RestartFacts(
                    cid,
                    open=opened[0] if opened else None,
                    older_open=tuple(opened[1:]),
                    last_register=register,
                )
            )
    return facts


async def load_open_sessions(ledger: LedgerLike, connector_ids: Iterable[str]) -> list[OpenSession]:
    """Every session a previous run left open (status or battery records, no order)."""
    return [o for f in await load_restart_facts(ledger, connector_ids) for o in f.all_open]


async def load_site_facts(ledger: LedgerLike) -> SiteFacts:
    """The meters' recorded identity and counts, and the site alarms left raised."""
    events = await ledger.find("event", limit=_SITE_RECENT, newest_first=True)
    alarms = await ledger.find("alarm", limit=_SITE_RECENT, newest_first=True)
    return site_facts(events, alarms)


async def recent_orders(ledger: LedgerLike) -> list[StoredRecord]:
    """The ledger's newest orders, newest first."""
    return await ledger.find("charge_order", limit=_RECENT, newest_first=True)


def last_pagination(orders: list[StoredRecord]) -> int:
    """The highest OCMF ``PG`` counter among ``orders`` (newest first; 0 when none)."""
    for r in orders:
        ocmf = r.body.get("ocmf")
        if isinstance(ocmf, str):
            pg = pagination_of(ocmf)
            if pg is not None:
                return pg
    return 0


class StationWriter:
    def __init__(
        self,
        model: StationModel,
        ledger: LedgerLike,
        *,
        queue: asyncio.Queue[StationInput] | None = None,
        clock: Callable[[], float] = time.time,
        tick_interval_s: float = 1.0,
    ) -> None:
        self.model = model
        self.ledger = ledger
        self.queue: asyncio.Queue[StationInput] = queue if queue is not None else asyncio.Queue()
        self.clock = clock
        self.tick_interval_s = tick_interval_s
        self.records_written = 0
        self.observers: list[Callable[[Record], None]] = []
        """Called with every record written (the device layer watches sessions start and
        end to read the meters' seals then)."""

    def _write(self, records: list[Record]) -> None:
        for r in records:
            self.ledger.append_nowait(r)
            for observe in self.observers:
                observe(r)
        self.records_written += len(records)

    async def start(self) -> None:
        """Hand the model what the ledger says of each connector (sessions left open by a
        previous run, the last register); continue the OCMF counter."""
        orders = await recent_orders(self.ledger)
        if self.model.signer is not None:
            self.model.signer.pagination = max(
                self.model.signer.pagination, last_pagination(orders)
            )
        facts = await load_restart_facts(self.ledger, self.model.config.connectors())
        site = await load_site_facts(self.ledger)
        self._write(self.model.startup(facts, self.clock(), site, orders))
        await self.ledger.flush()

    def process(self, event: StationInput) -> None:
        """Feed one event and append what it produced (no waiting)."""
        self._write(self.model.feed(event))

    async def run(self) -> None:
        """Consume the queue until cancelled, ticking the model every ``tick_interval_s``."""
        next_tick = self.clock() + self.tick_interval_s
        while True:
            timeout = max(0.0, next_tick - self.clock())
            try:
                event = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                pass
            else:
                self.process(event)
                while not self.queue.empty():
                    self.process(self.queue.get_nowait())
            now = self.clock()
            if now >= next_tick:
                self._write(self.model.tick(now))
                next_tick = now + self.tick_interval_s

    async def stop(self) -> None:
        """Write what is pending (orders waiting for a meter reading) and flush."""
        while not self.queue.empty():
            self.process(self.queue.get_nowait())
        self._write(self.model.flush(self.clock()))
        await self.ledger.flush()
