"""The ledger as the service sees it: one :class:`Ledger` per process, on the asyncio loop.

Appends go to the writer thread (:mod:`agent.ledger.writer`), reads to a reader thread with
its own connection; the loop never waits on SQLite or on ``fsync``. Opening checks the file
in constant time and recovers it if needed (:mod:`agent.ledger.opening`); the full integrity
check runs in the background (:mod:`agent.ledger.integrity`). See ``docs/LEDGER.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.ledger import live, notices, opening, parked, reader, recovery
from agent.ledger.batch import INSERT_CHECKPOINT, Limits, Row
from agent.ledger.chain import (
    GENESIS,
    Checkpoint,
    record_id,
    rotation_body,
    sign_checkpoint,
)
from agent.ledger.integrity import Background, Integrity
from agent.ledger.keys import GatewayKey
from agent.ledger.pressure import DEFAULT_BOUND_BYTES
from agent.ledger.readcheck import ReadBatch
from agent.ledger.reads import Reads
from agent.ledger.state import StateFile
from agent.ledger.store import WriterLock, connector_index_op
from agent.ledger.writer import Writer
from agent.records.envelope import Record, StoredRecord, iso_ts

log = logging.getLogger(__name__)

T = TypeVar("T")
HealthCallback = Callable[[str, str], None]
"""``on_health(health, message)``: called on the loop whenever :attr:`Ledger.health` changes."""

HEALTH_ORDER: Final = (
    "disk_full",
    "write_error",
    "damaged",
    "over_cap",
    "recovered_from_corruption",
)
"""Most severe first; :attr:`Ledger.health` is the first active one, else ``"ok"``."""


def _stored(record: Record, row: Row, gateway_id: str, epoch: int) -> StoredRecord:
    seq = row[0]
    return StoredRecord(
        kind=record.kind,
        ts=record.ts,
        station_id=record.station_id,
        body=record.body,
        equipment_id=record.equipment_id,
        connector_id=record.connector_id,
        seq=seq,
        id=record_id(gateway_id, seq, epoch),
        prev=row[4].hex(),
        hash=row[5].hex(),
    )


class Ledger:
    """Append-only, hash-chained, signed record store with per-uplink cursors."""

    def __init__(self) -> None:  # use Ledger.open()
        self.path: Path
        self.gateway_id: str
        self.station_id: str
        self.recovery: recovery.Recovery | None = None
        self.on_health: HealthCallback | None = None
        self._loop: asyncio.AbstractEventLoop
        self._key: GatewayKey
        self._lock: WriterLock
        self._writer: Writer
        self._reads: Reads
        self._state_file: StateFile
        self._background: Background | None = None
        self.integrity: Integrity | None = None
        """What the background integrity check found (None until it finished)."""
        self._integrity_done = asyncio.Event()
        self._damaged_seen: set[int] = set()
        self._rebuilds = 0
        self._last_seq = 0
        self._last_hash = GENESIS
        self._last_cp: Checkpoint | None = None
        self._last_cp_seq = 0
        self._cursors: dict[str, int] = {}
        self._appended = asyncio.Event()
        self._conditions: dict[str, str] = {}
        self._closed = False

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        gateway_id: str | None,
        key: GatewayKey,
        size_cap_bytes: int | None = None,
        commit_interval_s: float = 0.05,
        checkpoint_interval_s: float = 60.0,
        max_batch: int = 5000,
        station_id: str | None = None,
        on_health: HealthCallback | None = None,
        memory_bound_bytes: int = DEFAULT_BOUND_BYTES,
        integrity_delay_s: float | None = 5.0,
        on_progress: Callable[[str], None] | None = None,
    ) -> Ledger:
        """Open (or create) the ledger at ``path``, checking and if needed recovering it.

        ``gateway_id`` may be ``None`` for an existing ledger (its own id is used); when
        given it must match. ``station_id`` stamps the records the ledger writes itself
        (alarms, retention and recovery events); it defaults to the gateway id. Damage never
        stops the open (see :mod:`agent.ledger.opening`); ``on_progress`` is told every few
        seconds how a salvage at open goes (from a thread). The full integrity check starts
        ``integrity_delay_s`` after the open (None: not at all).
        """
        self = cls()
        self.path = Path(path)
        self.on_health = on_health
        self._loop = asyncio.get_running_loop()
        self._key = key
        self._lock = WriterLock(self.path)
        await asyncio.to_thread(self._lock.acquire)
        try:
            opened = await asyncio.to_thread(
                opening.prepare, self.path, gateway_id=gateway_id, station_id=station_id,
                key=key, size_cap_bytes=size_cap_bytes, progress=on_progress,
            )  # fmt: skip
        except BaseException:
            self._lock.release()
            raise
        self.gateway_id = opened.gateway_id
        self.station_id = station_id or self.gateway_id
        self.recovery, self._cursors = opened.recovery, opened.cursors
        self._last_seq, self._last_hash = opened.chain.last_seq, opened.chain.last_hash
        self._last_cp_seq = opened.chain.last_checkpoint_seq
        self._state_file = StateFile(self.path)
        limits = Limits(
            commit_interval_s, checkpoint_interval_s, max_batch, size_cap_bytes,
            memory_bound_bytes,
        )  # fmt: skip
        self._writer = Writer(
            opened.conn, path=self.path, gateway_id=self.gateway_id,
            station_id=self.station_id, key=key, chain=opened.chain, limits=limits,
            state_file=self._state_file, on_commit=self._committed_threadsafe,
            on_health=self._health_threadsafe,
        )  # fmt: skip
        self._writer.rebuild = self._rebuild_live
        await asyncio.to_thread(self._state_file.open, self._writer.state())
        self._reads = Reads(self.path, self._writer, self._loop, exclusive=opened.exclusive)
        self._writer.start()
        self._writer.run_op(connector_index_op(), None)
        for condition, message in notices.announce(self._writer, opened):
            self._set_condition(condition, True, message)
        self._start_background(integrity_delay_s)
        return self

    def _start_background(self, delay_s: float | None) -> None:
        if delay_s is None or self._reads.exclusive:
            self._integrity_done.set()  # exclusive: no second connection can read the file
            return

        def done(result: tuple[int, Integrity]) -> None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._checked, result)

        keys = [self._key.public]
        started = self._rebuilds
        self._background = Background(
            self.path, self.gateway_id, keys, delay_s, lambda result: done((started, result))
        )
        self._background.start()

    def _checked(self, outcome: tuple[int, Integrity]) -> None:
        started, result = outcome
        if started != self._rebuilds:  # it checked the file a rebuild has replaced since
            self._start_background(0.0)
            return
        self.integrity = result
        rebuilding = notices.integrity(self._writer, result)
        if rebuilding is not None:
            self._set_condition("damaged", True, rebuilding)
        else:
            self._integrity_done.set()

    async def integrity_checked(self) -> Integrity | None:
        """Wait for the background integrity check (and the rebuild it caused, if any)."""
        await self._integrity_done.wait()
        return self.integrity

    def _rebuild_live(self, reason: str) -> None:
        """Writer thread: rebuild the damaged file while running (agent.ledger.live)."""
        result = live.rebuild(self._writer, reason, self._reads.swap)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._rebuilt, result)

    def _rebuilt(self, result: recovery.Recovery | None) -> None:
        if result is not None:
            self._rebuilds += 1
            self.recovery = result
            self._set_condition("damaged", False, "the damaged ledger was rebuilt")
            self._set_condition("recovered_from_corruption", True, result.message())
        self._integrity_done.set()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush pending records, write a final checkpoint, close the files."""
        if self._closed:
            return
        self._closed = True
        if self._background is not None:
            await asyncio.to_thread(self._background.stop)
        self._writer.stop(timeout_s)
        await asyncio.to_thread(self._writer.join)
        await asyncio.sleep(0)  # let the last commit callbacks run
        self._reads.close()
        self._writer.conn.close()
        self._state_file.close()
        self._lock.release()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- writer callbacks (writer thread → loop) -------------------------------------------

    def _committed_threadsafe(
        self, seq: int, digest: bytes, waiters: list[Any], results: list[Any]
    ) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._committed, seq, digest, waiters, results)

    def _committed(self, seq: int, digest: bytes, waiters: list[Any], results: list[Any]) -> None:
        advanced = seq > self._last_seq
        self._last_seq, self._last_hash = seq, digest
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for fut, result in results:
            if fut is not None and not fut.done():
                fut.set_result(result)
        if advanced:
            self._appended.set()
            self._appended = asyncio.Event()

    def _health_threadsafe(self, condition: str, active: bool, message: str) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._set_condition, condition, active, message)

    def _set_condition(self, condition: str, active: bool, message: str) -> None:
        before = self.health
        if active:
            self._conditions[condition] = message
        else:
            self._conditions.pop(condition, None)
        after = self.health
        if after != before and self.on_health is not None:
            self.on_health(after, message)

    # -- state -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The last durable seq."""
        return self._last_seq

    @property
    def health(self) -> str:
        """``ok``, or the most severe active condition (see :data:`HEALTH_ORDER`)."""
        for condition in HEALTH_ORDER:
            if condition in self._conditions:
                return condition
        return "ok"

    @property
    def conditions(self) -> dict[str, str]:
        """Every active condition with the message that raised it."""
        return dict(self._conditions)

    @property
    def key_id(self) -> str:
        return self._key.fingerprint

    # -- appending ---------------------------------------------------------------------------

    async def append(self, record: Record) -> StoredRecord:
        """Append ``record``; return once it is durable (fsync'ed by a group commit)."""
        fut = self._loop.create_future()
        row, epoch = self._writer.submit(record, fut)
        stored = _stored(record, row, self.gateway_id, epoch)
        await fut
        return stored

    def append_nowait(self, record: Record) -> None:
        """Append without waiting; durable within one commit interval."""
        self._writer.submit(record)

    async def flush(self) -> int:
        """Wait until everything appended so far is durable; return the last seq."""
        await self._run_op(lambda _conn: None)
        return self._last_seq

    async def wait_appended(self, after_seq: int, timeout_s: float) -> int:
        """Wait until ``last_seq > after_seq`` or ``timeout_s`` passed; return ``last_seq``."""
        deadline = self._loop.time() + timeout_s
        while self._last_seq <= after_seq:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._appended.wait(), remaining)
            except TimeoutError:
                break
        return self._last_seq

    async def _run_op(self, op: Callable[[sqlite3.Connection], T]) -> T:
        fut: asyncio.Future[T] = self._loop.create_future()
        self._writer.run_op(op, fut)
        return await fut

    # -- signatures --------------------------------------------------------------------------

    async def checkpoint(self) -> Checkpoint:
        """A signed checkpoint over the last durable record (stored with the next commit)."""
        seq, digest = self._last_seq, self._last_hash
        cp = self._last_cp
        if cp is not None and cp.seq == seq and cp.key_id == self._key.fingerprint:
            return cp
        cp = sign_checkpoint(self._key, self.gateway_id, seq, digest.hex(), iso_ts(time.time()))
        self._last_cp = cp
        if seq > 0:
            writer = self._writer

            def store(conn: sqlite3.Connection) -> None:
                conn.execute(INSERT_CHECKPOINT, (cp.seq, digest, cp.ts, cp.key_id, cp.sig))
                writer.note_checkpoint(cp.seq)

            writer.run_op(store, None)
        return cp

    async def rotate_key(self, new_key: GatewayKey) -> StoredRecord:
        """Announce ``new_key`` in an ``event`` signed by the current key, then switch."""
        body = rotation_body(self.gateway_id, self._key, new_key.public)
        stored = await self.append(
            Record(kind="event", ts=iso_ts(time.time()), station_id=self.station_id, body=body)
        )
        await self.checkpoint()
        der, key_id, first = new_key.public.der, new_key.fingerprint, stored.seq + 1
        await self._run_op(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", (key_id, der, first)
            )
        )
        self._key = new_key
        self._writer.key = new_key
        self._last_cp = None
        return stored

    # -- uplink side -------------------------------------------------------------------------

    async def register_uplink(self, uplink: str) -> None:
        """Make ``uplink`` known, so retention waits for its acknowledgements."""
        if uplink in self._cursors:
            return
        # written with the next commit, not awaited: on a full disk reads must still work
        self._writer.run_op(
            lambda conn: conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, 0)", (uplink,)),
            None,
        )
        self._cursors.setdefault(uplink, 0)

    async def cursor(self, uplink: str) -> int:
        """The last seq ``uplink`` acknowledged (0: nothing yet)."""
        await self.register_uplink(uplink)
        return self._cursors[uplink]

    async def ack(self, uplink: str, upto_seq: int) -> None:
        """Durably move ``uplink``'s cursor to ``upto_seq``; never backwards."""
        # rows are committed before (or with) any later op, so an ack of an assigned seq
        # can never become durable ahead of the record it acknowledges
        if upto_seq > self._writer.assigned_seq:
            raise ValueError(
                f"uplink {uplink!r} acknowledges seq {upto_seq}, but the ledger only holds "
                f"records up to {self._writer.assigned_seq}"
            )
        if uplink in self._cursors and upto_seq <= self._cursors[uplink]:
            return
        await self._run_op(
            lambda conn: conn.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (uplink) "
                "DO UPDATE SET seq = max(seq, excluded.seq)",
                (uplink, upto_seq),
            )
        )
        self._cursors[uplink] = max(self._cursors.get(uplink, 0), upto_seq)

    async def park(self, uplink: str, seq: int, reason: str) -> None:
        """Skip record ``seq`` for ``uplink`` from now on (permanent delivery failure)."""
        await self.register_uplink(uplink)
        row = (uplink, seq, reason, iso_ts(time.time()))
        await self._run_op(lambda conn: conn.execute(parked.PARK_SQL, row))

    async def parked(self, uplink: str, limit: int) -> list[parked.ParkedRecord]:
        """The records parked for ``uplink``, by seq (at most ``limit``)."""
        return await self._read(parked.rows, uplink, limit)

    async def parked_count(self, uplink: str) -> int:
        return await self._read(parked.count, uplink)

    async def unpark(self, uplink: str, seqs: list[int]) -> int:
        """Release ``seqs`` for ``uplink`` (durably, in the next group commit); how many were
        parked."""
        return await self._run_op(lambda conn: parked.release(conn, uplink, seqs))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._reads.run(fn, *args)

    def _report(self, batch: ReadBatch, uplink: str) -> ReadBatch:
        """Damaged rows a read skipped: park them for ``uplink``, alarm, rebuild the file."""
        fresh = [d for d in batch.damaged if d.seq not in self._damaged_seen]
        if fresh:
            self._damaged_seen.update(d.seq for d in fresh)
            message = notices.damaged_rows(self._writer, fresh, uplink)
            self._set_condition("damaged", True, message)
        return batch

    async def read_batch(
        self, uplink: str, limit: int, kinds: Collection[str] | None = None
    ) -> ReadBatch:
        """Up to ``limit`` records after ``uplink``'s cursor, not parked for it, by seq.

        Damaged records are skipped, parked for ``uplink`` and listed in ``.damaged``.
        """
        after = await self.cursor(uplink)
        batch = await self._read(reader.read_batch, uplink, after, limit, kinds)
        return self._report(batch, uplink)

    async def read_after(
        self,
        seq: int,
        limit: int,
        *,
        uplink: str = "",
        kinds: Collection[str] | None = None,
    ) -> ReadBatch:
        """Up to ``limit`` records with a seq above ``seq``, by seq — not only after a cursor,
        so an uplink can read ahead of the records still in flight. With ``uplink``, records
        parked for it are left out. Runs on the ledger's reader thread (own connection).
        Damaged records are skipped and listed in ``.damaged`` (parked for ``uplink``)."""
        batch = await self._read(reader.read_batch, uplink, seq, limit, kinds)
        return self._report(batch, uplink)

    async def backlog(self, uplink: str) -> int:
        """How many records after ``uplink``'s cursor wait for it (parked ones excluded)."""
        after = await self.cursor(uplink)
        try:
            return await self._read(reader.backlog, uplink, after)
        except sqlite3.DatabaseError:  # a damaged page: the rebuild it causes will fix it
            return max(0, self._last_seq - after)

    async def find(
        self,
        kind: str,
        *,
        session_id: str | None = None,
        connector_id: str | None = None,
        limit: int = 10000,
        newest_first: bool = False,
    ) -> list[StoredRecord]:
        """Records of ``kind`` (optionally of one session / connector), by seq: the oldest
        ``limit`` of them, or with ``newest_first`` the newest ``limit``, newest first.
        Damaged records are skipped and reported."""
        batch = await self._read(reader.find, kind, session_id, connector_id, limit, newest_first)
        return self._report(batch, "")
