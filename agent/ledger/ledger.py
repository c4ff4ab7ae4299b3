"""The ledger as the service sees it: one :class:`Ledger` per process, on the asyncio loop.

Appends go to the writer thread (:mod:`agent.ledger.writer`), reads to a reader thread with
its own connection; the loop never waits on SQLite or on ``fsync``. See ``docs/LEDGER.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.errors import UserError
from agent.ledger import reader, recovery
from agent.ledger.chain import (
    GENESIS,
    Checkpoint,
    record_id,
    rotation_body,
    sign_checkpoint,
)
from agent.ledger.keys import GatewayKey
from agent.ledger.store import WriterLock, connect, create_schema, read_meta
from agent.ledger.writer import INSERT_CHECKPOINT, Row, Writer
from agent.records.envelope import Record, StoredRecord, iso_ts

log = logging.getLogger(__name__)

T = TypeVar("T")
HealthCallback = Callable[[str, str], None]
"""``on_health(health, message)``: called on the loop whenever :attr:`Ledger.health` changes."""

HEALTH_ORDER: Final = ("disk_full", "write_error", "over_cap", "recovered_from_corruption")
"""Most severe first; :attr:`Ledger.health` is the first active one, else ``"ok"``."""


def _stored(record: Record, row: Row, gateway_id: str) -> StoredRecord:
    seq = row[0]
    return StoredRecord(
        kind=record.kind,
        ts=record.ts,
        station_id=record.station_id,
        body=record.body,
        equipment_id=record.equipment_id,
        connector_id=record.connector_id,
        seq=seq,
        id=record_id(gateway_id, seq),
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
        self._conn: sqlite3.Connection
        self._read_conn: sqlite3.Connection
        self._reads: ThreadPoolExecutor
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
    ) -> Ledger:
        """Open (or create) the ledger at ``path``, checking and if needed recovering it.

        ``gateway_id`` may be ``None`` for an existing ledger (its own id is used); when
        given it must match. ``station_id`` stamps the records the ledger writes itself
        (alarms, retention and recovery events); it defaults to the gateway id.
        """
        self = cls()
        self.path = Path(path)
        self.on_health = on_health
        self._loop = asyncio.get_running_loop()
        self._key = key
        self._lock = WriterLock(self.path)
        await asyncio.to_thread(self._lock.acquire)
        try:
            await asyncio.to_thread(self._prepare, gateway_id, station_id)
        except BaseException:
            self._lock.release()
            raise
        self._writer = Writer(
            self._conn,
            gateway_id=self.gateway_id,
            station_id=self.station_id,
            key=key,
            last_seq=self._last_seq,
            last_hash=self._last_hash,
            last_checkpoint_seq=self._last_cp_seq,
            commit_interval_s=commit_interval_s,
            checkpoint_interval_s=checkpoint_interval_s,
            max_batch=max_batch,
            size_cap_bytes=size_cap_bytes,
            on_commit=self._committed_threadsafe,
            on_health=self._health_threadsafe,
        )
        self._read_conn = connect(self.path, writer=False)
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-read")
        self._writer.start()
        if self.recovery is not None:
            message = (
                f"ledger {self.path} was damaged ({self.recovery.reason}); moved to "
                f"{self.recovery.moved_to}, records up to seq {self.recovery.last_good_seq} "
                "were recovered"
            )
            self._set_condition("recovered_from_corruption", True, message)
            await self.append(
                Record(
                    kind="alarm",
                    ts=iso_ts(time.time()),
                    station_id=self.station_id,
                    body={
                        "code": "LEDGER_RECOVERED",
                        "type": "ledger",
                        "level": "critical",
                        "status": "raised",
                        "message": message,
                    },
                )
            )
        return self

    def _prepare(self, gateway_id: str | None, station_id: str | None) -> None:
        """Blocking part of :meth:`open` (runs in a thread)."""
        if not self.path.parent.is_dir():
            raise UserError(
                f"ledger directory {self.path.parent} does not exist; create it "
                "(the packaged tmpfiles.d snippet does) or fix ledger.path in the config"
            )
        if self.path.exists():
            problem = recovery.inspect(self.path)
            if problem is not None:
                log.error("ledger %s failed its start-up check: %s", self.path, problem)
                self.recovery = recovery.salvage(
                    self.path,
                    gateway_id=gateway_id or "unknown",
                    station_id=station_id or gateway_id or "unknown",
                    reason=problem,
                )
        conn = connect(self.path, writer=True)
        try:
            stored_id = read_meta(conn).get("gateway_id")
            if stored_id is None and gateway_id is None:
                raise UserError(
                    f"ledger {self.path} is new: give the gateway id (--gateway-id, or "
                    "gateway.gateway_id in the config)"
                )
            if stored_id is not None and gateway_id is not None and stored_id != gateway_id:
                raise UserError(
                    f"ledger {self.path} belongs to gateway {stored_id!r}, not {gateway_id!r}; "
                    "fix gateway.gateway_id in the config or point ledger.path elsewhere"
                )
            self.gateway_id = stored_id or gateway_id or ""
            self.station_id = station_id or self.gateway_id
            create_schema(conn, self.gateway_id)
            last = conn.execute(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if last is not None:
                self._last_seq, self._last_hash = int(last[0]), bytes(last[1])
            self._last_cp_seq = int(
                conn.execute("SELECT coalesce(max(seq), 0) FROM checkpoints").fetchone()[0]
            )
            self._cursors = dict(conn.execute("SELECT uplink, seq FROM cursors").fetchall())
            conn.execute(
                "INSERT OR IGNORE INTO keys VALUES (?, ?, ?)",
                (self._key.fingerprint, self._key.public.der, self._last_seq + 1),
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush pending records, write a final checkpoint, close the files."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop(timeout_s)
        await asyncio.to_thread(self._writer.join)
        await asyncio.sleep(0)  # let the last commit callbacks run
        self._reads.shutdown(wait=True)
        self._read_conn.close()
        self._conn.close()
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
        row = self._writer.submit(record, fut)
        stored = _stored(record, row, self.gateway_id)
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
        await self._run_op(
            lambda conn: conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, 0)", (uplink,))
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
        ts = iso_ts(time.time())
        await self._run_op(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?)", (uplink, seq, reason, ts)
            )
        )

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._reads, fn, self._read_conn, *args)

    async def read_batch(
        self, uplink: str, limit: int, kinds: Collection[str] | None = None
    ) -> list[StoredRecord]:
        """Up to ``limit`` records after ``uplink``'s cursor, not parked for it, by seq."""
        after = await self.cursor(uplink)
        return await self._read(reader.read_batch, uplink, after, limit, kinds)

    async def read_after(
        self,
        seq: int,
        limit: int,
        *,
        uplink: str = "",
        kinds: Collection[str] | None = None,
    ) -> list[StoredRecord]:
        """Up to ``limit`` records with a seq above ``seq``, by seq — not only after a cursor,
        so an uplink can read ahead of the records still in flight. With ``uplink``, records
        parked for it are left out. Runs on the ledger's reader thread (own connection)."""
        return await self._read(reader.read_batch, uplink, seq, limit, kinds)

    async def backlog(self, uplink: str) -> int:
        """How many records after ``uplink``'s cursor wait for it (parked ones excluded)."""
        after = await self.cursor(uplink)
        return await self._read(reader.backlog, uplink, after)

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
        ``limit`` of them, or with ``newest_first`` the newest ``limit``, newest first."""
        return await self._read(reader.find, kind, session_id, connector_id, limit, newest_first)
