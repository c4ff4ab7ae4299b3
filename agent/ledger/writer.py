"""The one writer: a thread that owns the writing SQLite connection and commits in groups.

Callers (on the asyncio loop, or any thread) hand over records with :meth:`Writer.submit`:
``seq``, ``prev`` and ``hash`` are assigned at once under a lock, so the order of calls is
the order of the chain, and the row waits in memory for the next group commit. The thread
commits when someone awaits durability (``urgent``), when ``max_batch`` rows are pending,
or at the latest ``commit_interval_s`` after the first pending row, each commit with
``synchronous=FULL``, then writes the state file (:mod:`agent.ledger.state`) and only then
reports the records durable. A failed commit (full disk, I/O error) keeps every row in
memory, in order, raises the health state and retries with back-off; past the memory bound
the oldest low-priority bodies become stubs (:mod:`agent.ledger.pressure`), declared by an
``event`` once writing works again. Nothing that was handed over leaves silently: what a
stop cannot write is recorded in the state file and declared at the next start.

The thread also checkpoints the WAL into the main file (so its space is reused and the size
cap, which counts the WAL, holds), signs periodic checkpoints, applies retention and, when
asked, rebuilds a damaged file while running (:mod:`agent.ledger.live`).

The asyncio loop never waits on this thread; completions come back through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from agent.ledger.batch import Batch, Chain, Done, Health, Limits, Op, Row, make_row
from agent.ledger.keys import GatewayKey
from agent.ledger.pressure import Drops, held_bytes, shed
from agent.ledger.state import Abandoned, State, StateFile
from agent.ledger.store import is_corrupt, is_space_error, wal_limit
from agent.ledger.upkeep import Upkeep
from agent.records.envelope import Record, iso_ts

log = logging.getLogger(__name__)

_RETRY_MIN_S: Final = 0.05
_RETRY_MAX_S: Final = 5.0


class Writer(Upkeep):
    """Owns the writing connection; see the module docstring."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        gateway_id: str,
        station_id: str,
        key: GatewayKey,
        chain: Chain,
        limits: Limits,
        state_file: StateFile,
        on_commit: Done,
        on_health: Health,
    ) -> None:
        self.conn = conn
        self.path = path
        self.gateway_id = gateway_id
        self.station_id = station_id
        self.key = key
        self.epoch = chain.epoch
        self._next_seq = chain.next_seq or chain.last_seq + 1
        self._prev = chain.last_hash
        self.durable_seq = chain.last_seq
        self.durable_hash = chain.last_hash
        self.counts = dict(chain.counts)
        self.checkpointed = (chain.last_seq, dict(chain.counts))
        self.deleted_below = chain.deleted_below
        self._last_cp_seq = chain.last_checkpoint_seq
        self._last_cp_mono = time.monotonic()
        self.limits = limits
        self.wal_limit = wal_limit(limits.size_cap_bytes)
        self._chunk = limits.max_batch
        """Rows per transaction: shrinks after a failed commit so a little space is enough."""
        self.state_file = state_file
        self._on_commit = on_commit
        self.on_health = on_health
        self.cond = threading.Condition()
        self.batch = Batch()
        self._held = 0
        self.drops = Drops()
        self._stopping = False
        self._stop_deadline = 0.0
        self._retry_s = 0.0
        self._blocked_until = 0.0
        self._fault: str | None = None
        self._over_cap = False
        self.rebuild_reason: str | None = None
        self.rebuild: Callable[[str], None] | None = None
        """Set by the ledger: rebuilds a damaged file on this thread (agent.ledger.live)."""
        self.rebuild_after = 0.0
        self._reads: list[tuple[Callable[[sqlite3.Connection], Any], Any]] = []
        self.on_read: Callable[[Any, Any, Exception | None], None] | None = None
        """Set by the ledger: delivers what :meth:`run_read` read (token, result, error)."""
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)

    # -- called from any thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: Record, waiter: Any = None) -> tuple[Row, int]:
        """Give ``record`` its place in the chain; it is durable after the next commit.

        Returns the row and the epoch its id was made in.
        """
        with self.cond:
            row = make_row(record, self._next_seq, self.gateway_id, self._prev, self.epoch)
            self._next_seq += 1
            self._prev = row[5]
            batch = self.batch
            batch.add(row)
            self._held += len(row[6])
            if waiter is not None:
                batch.waiters.append((row[0], waiter))
                if not batch.urgent:
                    batch.urgent = True
                    self.cond.notify()
            elif len(batch.rows) == 1:
                batch.first_t = time.monotonic()
                self.cond.notify()
            elif len(batch.rows) >= self.limits.max_batch or (
                self._fault is not None and self._held > self.limits.memory_bound_bytes
            ):
                self.cond.notify()
        return row, self.epoch

    def run_op(self, op: Op, token: Any) -> None:
        """Run ``op(conn)`` inside the next commit; its result comes back with ``token``."""
        with self.cond:
            self.batch.ops.append((op, token))
            self.batch.urgent = True
            self.cond.notify()

    def run_read(self, fn: Callable[[sqlite3.Connection], Any], token: Any) -> None:
        """Run ``fn(conn)`` on this thread between commits, even while the disk refuses
        writes (the connection is the only one when the WAL index is in memory)."""
        with self.cond:
            self._reads.append((fn, token))
            self.cond.notify()

    def tail(self) -> tuple[int, bytes]:
        """The last seq handed out and its hash (call under :attr:`cond`)."""
        return self._next_seq - 1, self._prev

    def request_rebuild(self, reason: str) -> None:
        """Rebuild the file from what still verifies, between two commits (once)."""
        with self.cond:
            if self.rebuild_reason is None:
                self.rebuild_reason = reason
                self.cond.notify()

    def stop(self, timeout_s: float) -> None:
        """Flush what is pending and end; give up retrying a failing disk after ``timeout_s``."""
        with self.cond:
            self._stopping = True
            self._stop_deadline = time.monotonic() + timeout_s
            self.cond.notify()

    def join(self) -> None:
        self._thread.join()

    @property
    def assigned_seq(self) -> int:
        """The last seq handed out (durable after the next commit)."""
        return self._next_seq - 1

    @property
    def fault(self) -> str | None:
        return self._fault

    # -- the writer thread ------------------------------------------------------------------

    def _due(self, now: float) -> bool:
        batch = self.batch
        return bool(batch.rows or batch.ops) and (
            batch.urgent
            or self._stopping
            or len(batch.rows) >= self.limits.max_batch
            or now >= batch.first_t + self.limits.commit_interval_s
        )

    def _take(self) -> Batch | None:
        """Wait until a commit is due; return what to commit (None: stop now)."""
        with self.cond:
            while True:
                if self._reads:
                    return Batch(reads=self._take_reads())
                now = time.monotonic()
                pending = bool(self.batch.rows or self.batch.ops)
                if self._fault is not None and self._held > self.limits.memory_bound_bytes:
                    self._shed(self._held - self.limits.memory_bound_bytes)
                if now < self._blocked_until:
                    if self._stopping and now >= self._stop_deadline:
                        return None
                    self.cond.wait(self._blocked_until - now)
                    continue
                if self.rebuild_reason is not None and self.rebuild and now >= self.rebuild_after:
                    return Batch()  # empty: the loop rebuilds
                if self._due(now):
                    batch, self.batch = self.batch, Batch()
                    return batch
                if not pending and self._stopping:
                    return None
                if not pending and self._checkpoint_due(now):
                    return Batch()
                self.cond.wait(self._timeout(now, pending))

    def _take_reads(self) -> list[tuple[Callable[[sqlite3.Connection], Any], Any]]:
        reads, self._reads = self._reads, []
        return reads

    def _serve(self, reads: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> None:
        for fn, token in reads:
            try:
                result, error = fn(self.conn), None
            except Exception as exc:  # handed to the reader, which raises it
                result, error = None, exc
            if self.on_read is not None:
                self.on_read(token, result, error)

    def _timeout(self, now: float, pending: bool) -> float | None:
        if pending:
            return self.batch.first_t + self.limits.commit_interval_s - now
        if self.durable_seq > self._last_cp_seq:
            return self._last_cp_mono + self.limits.checkpoint_interval_s - now
        if self.rebuild_reason is not None:
            return max(0.0, self.rebuild_after - now)
        return None

    def _shed(self, excess: int) -> None:
        """Drop the oldest low-priority bodies held in memory (called under the lock)."""
        freed = shed(self.batch.rows, self.batch.bodies, excess, self.drops)
        self._held -= freed
        if freed:
            log.error(
                "ledger: %d bytes of low-priority records dropped from memory while the disk "
                "refuses writes (%s)",
                freed,
                ", ".join(f"{d.kind} {d.count}" for d in self.drops.by_kind.values()),
            )

    def _checkpoint_due(self, now: float) -> bool:
        return (
            self.durable_seq > self._last_cp_seq
            and now - self._last_cp_mono >= self.limits.checkpoint_interval_s
        )

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                break
            if batch.reads:
                self._serve(batch.reads)
            elif batch.rows or batch.ops:
                self.commit(batch)
            elif self.rebuild_reason is not None and self.rebuild is not None:
                self.rebuild(self.rebuild_reason)
            self._housekeeping()
        self._final()

    def _split(self, batch: Batch) -> Batch:
        """After a failed commit, write a smaller prefix first; requeue the rest in order."""
        if len(batch.rows) <= self._chunk:
            return batch
        head = Batch(rows=batch.rows[: self._chunk], urgent=True)
        cut = head.rows[-1][0]
        for kind, bodies in batch.bodies.items():
            head.bodies[kind] = [b for b in bodies if b[0] <= cut]
            batch.bodies[kind] = bodies[len(head.bodies[kind]) :]
        head.waiters = [w for w in batch.waiters if w[0] <= cut]
        batch.waiters = batch.waiters[len(head.waiters) :]
        batch.rows = batch.rows[self._chunk :]
        self._requeue(batch)
        return head

    def write(self, batch: Batch, conn: sqlite3.Connection) -> list[Any] | None:
        """Insert ``batch`` and run its ops in one transaction; None if it failed."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            if batch.rows:
                batch.insert(conn)
            results = [op(conn) for op, _token in batch.ops]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._requeue(batch)
            self._chunk = max(1, min(self._chunk, len(batch.rows)) // 4)
            self._failed(exc)
            return None
        self._chunk = min(self.limits.max_batch, self._chunk * 2)
        return results

    def commit(self, batch: Batch) -> bool:
        batch = self._split(batch)
        results = self.write(batch, self.conn)
        if results is None:
            return False
        self.committed(batch, results)
        return True

    def committed(self, batch: Batch, results: list[Any]) -> None:
        """Account for a durable batch: state file first, then tell the waiters."""
        if batch.rows:
            last = batch.rows[-1]
            self.durable_seq, self.durable_hash = last[0], last[5]
            for row in batch.rows:
                self.counts[row[1]] = self.counts.get(row[1], 0) + 1
            with self.cond:
                self._held = max(0, self._held - held_bytes(batch.rows, batch.bodies))
        self.save_state()
        self._cleared()
        self._on_commit(
            self.durable_seq,
            self.durable_hash,
            [token for _seq, token in batch.waiters],
            list(zip((token for _op, token in batch.ops), results, strict=True)),
        )

    def state(self, *, clean: bool = False, abandoned: Abandoned | None = None) -> State:
        ckpt_seq, ckpt_counts = self.checkpointed
        return State(
            gateway_id=self.gateway_id,
            epoch=self.epoch,
            clean=clean,
            last_seq=self.durable_seq,
            last_hash=self.durable_hash.hex(),
            counts=self.counts,
            checkpointed_seq=ckpt_seq,
            checkpointed_counts=ckpt_counts,
            deleted_below=self.deleted_below,
            abandoned=abandoned,
        )

    def save_state(self, *, clean: bool = False, abandoned: Abandoned | None = None) -> None:
        self.state_file.write(self.state(clean=clean, abandoned=abandoned))

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("ledger: rollback failed")

    def _requeue(self, batch: Batch) -> None:
        with self.cond:
            newer = self.batch
            batch.rows.extend(newer.rows)
            for kind, bodies in newer.bodies.items():
                batch.bodies[kind].extend(bodies)
            batch.waiters.extend(newer.waiters)
            batch.ops.extend(newer.ops)
            batch.urgent = batch.urgent or newer.urgent
            self.batch = batch

    def _failed(self, exc: sqlite3.Error) -> None:
        full = is_space_error(exc)
        state = "disk_full" if full else "write_error"
        self._retry_s = min(_RETRY_MAX_S, max(_RETRY_MIN_S, self._retry_s * 2))
        self._blocked_until = time.monotonic() + self._retry_s
        if self._fault != state:
            self._fault = state
            message = (
                f"ledger write failed ({exc}); keeping records in memory (up to "
                f"{self.limits.memory_bound_bytes // 1048576} MiB, then dropping the oldest "
                f"meter samples first) and retrying every ≤{_RETRY_MAX_S:.0f} s"
            )
            log.error("ledger: %s", message)
            self.on_health(state, True, message)
            self.submit(self.alarm(state, "raised", message))
        if full:
            self._reclaim()
        elif is_corrupt(exc):
            self.request_rebuild(f"a write failed on a damaged page ({exc})")

    def _cleared(self) -> None:
        self._retry_s = 0.0
        if self._fault is not None:
            state, self._fault = self._fault, None
            message = f"ledger writes succeed again after {state}"
            log.warning("ledger: %s", message)
            self.on_health(state, False, message)
            self.submit(self.alarm(state, "cleared", message))
        with self.cond:
            drops, self.drops = self.drops, Drops()
        if drops:
            self.submit(
                self.event(drops.event_body("write_failed", self.limits.memory_bound_bytes))
            )

    def alarm(self, state: str, status: str, message: str) -> Record:
        return Record(
            kind="alarm",
            ts=iso_ts(time.time()),
            station_id=self.station_id,
            body={
                "code": f"LEDGER_{state.upper()}",
                "type": "ledger",
                "level": "critical" if status == "raised" else "info",
                "status": status,
                "message": message[:500],
            },
        )

    def event(self, body: dict[str, Any]) -> Record:
        return Record(kind="event", ts=iso_ts(time.time()), station_id=self.station_id, body=body)
