"""The one writer: a thread that owns the writing SQLite connection and commits in groups.

Callers (on the asyncio loop, or any thread) hand over records with :meth:`Writer.submit`:
``seq``, ``prev`` and ``hash`` are assigned at once under a lock, so the order of calls is
the order of the chain, and the row waits in memory for the next group commit. The thread
commits when someone awaits durability (``urgent``), when ``max_batch`` rows are pending,
or at the latest ``commit_interval_s`` after the first pending row, each commit with
``synchronous=FULL``. A failed commit (full disk, I/O error) keeps every row in memory, in
order, raises the health state and retries with back-off: nothing that was handed over is
dropped, and nothing is reported durable before its commit returned.

The asyncio loop never waits on this thread; completions come back through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from agent.ledger import retention
from agent.ledger.chain import link_hash, sign_checkpoint, unchained_json
from agent.ledger.keys import GatewayKey
from agent.ledger.store import SPLIT_KINDS, used_bytes
from agent.records.envelope import Record, iso_ts
from agent.records.bodies import KINDS

log = logging.getLogger(__name__)

INSERT_RECORD: Final = (
    "INSERT INTO records (seq, kind, session_id, connector_id, prev, hash, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_CHECKPOINT: Final = (
    "INSERT INTO checkpoints (seq, hash, ts, key_id, sig) VALUES (?, ?, ?, ?, ?)"
)
_RETRY_MIN_S: Final = 0.05
_RETRY_MAX_S: Final = 5.0

Row = tuple[int, str, str | None, str | None, bytes, bytes, bytes]
"""``(seq, kind, session_id, connector_id, prev, hash, data)`` with the hashed bytes."""
Op = Callable[[sqlite3.Connection], Any]
Done = Callable[[int, bytes, list[Any], list[Any]], None]
"""Called on every commit: durable seq, durable hash, waiter tokens, op results."""


def make_row(record: Record, seq: int, gateway_id: str, prev: bytes) -> Row:
    if record.kind not in KINDS:
        raise ValueError(f"unknown record kind {record.kind!r}; expected one of {KINDS}")
    data = unchained_json(record, seq, gateway_id)
    session = record.body.get("session_id")
    return (
        seq,
        record.kind,
        session if isinstance(session, str) else None,
        record.connector_id,
        prev,
        link_hash(prev, data),
        data,
    )


INSERT_BODY: Final = {k: f"INSERT INTO body_{k} (seq, data) VALUES (?, ?)" for k in SPLIT_KINDS}


def insert_rows(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert complete rows (``data`` None: a dropped record), splitting off the bodies."""
    bodies: dict[str, list[tuple[int, bytes]]] = {k: [] for k in SPLIT_KINDS}
    stored = []
    for row in rows:
        seq, kind, session, connector, prev, digest, data = row
        if kind in bodies and data is not None:
            bodies[kind].append((seq, data))
            data = b""
        stored.append((seq, kind, session, connector, prev, digest, data))
    conn.executemany(INSERT_RECORD, stored)
    for kind, items in bodies.items():
        conn.executemany(INSERT_BODY[kind], items)


@dataclass(slots=True)
class _Batch:
    rows: list[tuple[int, str, str | None, str | None, bytes, bytes, bytes]] = field(
        default_factory=list
    )
    bodies: dict[str, list[tuple[int, bytes]]] = field(
        default_factory=lambda: {k: [] for k in SPLIT_KINDS}
    )
    waiters: list[tuple[int, Any]] = field(default_factory=list)
    """``(seq, token)``: the token is handed back once ``seq`` is durable."""
    ops: list[tuple[Op, Any]] = field(default_factory=list)
    urgent: bool = False
    first_t: float = 0.0


class Writer:
    """Owns the writing connection; see the module docstring."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        gateway_id: str,
        station_id: str,
        key: GatewayKey,
        last_seq: int,
        last_hash: bytes,
        last_checkpoint_seq: int,
        commit_interval_s: float,
        checkpoint_interval_s: float,
        max_batch: int,
        size_cap_bytes: int | None,
        on_commit: Done,
        on_health: Callable[[str, bool, str], None],
    ) -> None:
        self._conn = conn
        self.gateway_id = gateway_id
        self.station_id = station_id
        self.key = key
        self._next_seq = last_seq + 1
        self._prev = last_hash
        self.durable_seq = last_seq
        self.durable_hash = last_hash
        self._last_cp_seq = last_checkpoint_seq
        self._last_cp_mono = time.monotonic()
        self._interval_s = commit_interval_s
        self._cp_interval_s = checkpoint_interval_s
        self._max_batch = max_batch
        self._chunk = max_batch
        """Rows per transaction: shrinks after a failed commit so a little space is enough."""
        self._cap = size_cap_bytes
        self._on_commit = on_commit
        self._on_health = on_health
        self._cond = threading.Condition()
        self._batch = _Batch()
        self._stopping = False
        self._stop_deadline = 0.0
        self._retry_s = 0.0
        self._blocked_until = 0.0
        self._fault: str | None = None
        self._over_cap = False
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)

    # -- called from any thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: Record, waiter: Any = None) -> Row:
        """Give ``record`` its place in the chain; it is durable after the next commit."""
        with self._cond:
            row = make_row(record, self._next_seq, self.gateway_id, self._prev)
            self._next_seq += 1
            self._prev = row[5]
            batch = self._batch
            split = batch.bodies.get(record.kind)
            if split is None:
                batch.rows.append(row)
            else:
                split.append((row[0], row[6]))
                batch.rows.append((*row[:6], b""))
            if waiter is not None:
                batch.waiters.append((row[0], waiter))
                if not batch.urgent:
                    batch.urgent = True
                    self._cond.notify()
            elif len(batch.rows) == 1:
                batch.first_t = time.monotonic()
                self._cond.notify()
            elif len(batch.rows) >= self._max_batch:
                self._cond.notify()
        return row

    def run_op(self, op: Op, token: Any) -> None:
        """Run ``op(conn)`` inside the next commit; its result comes back with ``token``."""
        with self._cond:
            self._batch.ops.append((op, token))
            self._batch.urgent = True
            self._cond.notify()

    def stop(self, timeout_s: float) -> None:
        """Flush what is pending and end; give up retrying a failing disk after ``timeout_s``."""
        with self._cond:
            self._stopping = True
            self._stop_deadline = time.monotonic() + timeout_s
            self._cond.notify()

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

    def _take(self) -> _Batch | None:
        """Wait until a commit is due; return what to commit (None: stop now)."""
        with self._cond:
            while True:
                now = time.monotonic()
                batch = self._batch
                pending = bool(batch.rows or batch.ops)
                if now < self._blocked_until:
                    if self._stopping and now >= self._stop_deadline:
                        lost = len(batch.rows)
                        log.error(
                            "ledger: closing with %d records not written (%s)", lost, self._fault
                        )
                        return None
                    self._cond.wait(self._blocked_until - now)
                    continue
                if pending and (
                    batch.urgent
                    or self._stopping
                    or len(batch.rows) >= self._max_batch
                    or now >= batch.first_t + self._interval_s
                ):
                    self._batch = _Batch()
                    return batch
                if not pending and self._stopping:
                    return None
                if not pending and self._checkpoint_due(now):
                    return _Batch()
                if pending:
                    timeout = batch.first_t + self._interval_s - now
                elif self.durable_seq > self._last_cp_seq:
                    timeout = self._last_cp_mono + self._cp_interval_s - now
                else:
                    timeout = None
                self._cond.wait(timeout)

    def _checkpoint_due(self, now: float) -> bool:
        return (
            self.durable_seq > self._last_cp_seq and now - self._last_cp_mono >= self._cp_interval_s
        )

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                break
            if batch.rows or batch.ops:
                self._commit(batch)
            self._housekeeping()
        if self.durable_seq > self._last_cp_seq and self._fault is None:
            self._write_checkpoint()

    def _split(self, batch: _Batch) -> _Batch:
        """After a failed commit, write a smaller prefix first; requeue the rest in order."""
        if len(batch.rows) <= self._chunk:
            return batch
        head = _Batch(rows=batch.rows[: self._chunk], urgent=True)
        cut = head.rows[-1][0]
        for kind, bodies in batch.bodies.items():
            head.bodies[kind] = [b for b in bodies if b[0] <= cut]
            batch.bodies[kind] = bodies[len(head.bodies[kind]) :]
        head.waiters = [w for w in batch.waiters if w[0] <= cut]
        batch.waiters = batch.waiters[len(head.waiters) :]
        batch.rows = batch.rows[self._chunk :]
        self._requeue(batch)
        return head

    def _commit(self, batch: _Batch) -> None:
        batch = self._split(batch)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if batch.rows:
                conn.executemany(INSERT_RECORD, batch.rows)
                for kind, bodies in batch.bodies.items():
                    if bodies:
                        conn.executemany(INSERT_BODY[kind], bodies)
            results = [op(conn) for op, _token in batch.ops]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._requeue(batch)
            self._chunk = max(1, min(self._chunk, len(batch.rows)) // 4)
            self._failed(exc)
            return
        self._chunk = min(self._max_batch, self._chunk * 2)
        if batch.rows:
            last = batch.rows[-1]
            self.durable_seq = last[0]
            self.durable_hash = last[5]
        self._cleared()
        self._on_commit(
            self.durable_seq,
            self.durable_hash,
            [token for _seq, token in batch.waiters],
            list(zip((token for _op, token in batch.ops), results, strict=True)),
        )

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("ledger: rollback failed")

    def _requeue(self, batch: _Batch) -> None:
        with self._cond:
            newer = self._batch
            batch.rows.extend(newer.rows)
            for kind, bodies in newer.bodies.items():
                batch.bodies[kind].extend(bodies)
            batch.waiters.extend(newer.waiters)
            batch.ops.extend(newer.ops)
            batch.urgent = batch.urgent or newer.urgent
            self._batch = batch

    def _failed(self, exc: sqlite3.Error) -> None:
        code = getattr(exc, "sqlite_errorcode", None)
        full = code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()
        state = "disk_full" if full else "write_error"
        self._retry_s = min(_RETRY_MAX_S, max(_RETRY_MIN_S, self._retry_s * 2))
        self._blocked_until = time.monotonic() + self._retry_s
        if self._fault != state:
            self._fault = state
            message = (
                f"ledger write failed ({exc}); keeping records in memory and retrying "
                f"every ≤{_RETRY_MAX_S:.0f} s"
            )
            log.error("ledger: %s", message)
            self._on_health(state, True, message)
            self.submit(self._alarm(state, "raised", message))
        if full:
            self._make_room()

    def _cleared(self) -> None:
        self._retry_s = 0.0
        if self._fault is not None:
            state, self._fault = self._fault, None
            message = f"ledger writes succeed again after {state}"
            log.warning("ledger: %s", message)
            self._on_health(state, False, message)
            self.submit(self._alarm(state, "cleared", message))

    def _alarm(self, state: str, status: str, message: str) -> Record:
        return Record(
            kind="alarm",
            ts=iso_ts(time.time()),
            station_id=self.station_id,
            body={
                "code": f"LEDGER_{state.upper()}",
                "type": "ledger",
                "level": "critical" if status == "raised" else "info",
                "status": status,
                "message": message,
            },
        )

    def _housekeeping(self) -> None:
        if self._fault is not None:
            return
        if self._checkpoint_due(time.monotonic()):
            self._write_checkpoint()
        if self._cap is not None and used_bytes(self._conn) > self._cap:
            self._make_room()

    def _write_checkpoint(self) -> None:
        seq, digest = self.durable_seq, self.durable_hash
        cp = sign_checkpoint(self.key, self.gateway_id, seq, digest.hex(), iso_ts(time.time()))
        try:
            self._conn.execute(INSERT_CHECKPOINT, (cp.seq, digest, cp.ts, cp.key_id, cp.sig))
        except sqlite3.Error as exc:
            log.warning("ledger: periodic checkpoint not written (%s); will retry", exc)
            return
        self.note_checkpoint(seq)

    def note_checkpoint(self, seq: int) -> None:
        if seq > self._last_cp_seq:
            self._last_cp_seq = seq
        self._last_cp_mono = time.monotonic()

    def _make_room(self) -> None:
        """Apply retention; record what was dropped and whether the cap still holds."""
        if self._cap is None:
            return
        try:
            outcome = retention.enforce(self._conn, self._cap, self.durable_seq)
        except sqlite3.Error as exc:
            self._rollback()
            log.warning("ledger: retention could not run (%s)", exc)
            return
        if outcome.dropped:
            self.submit(
                Record(
                    kind="event",
                    ts=iso_ts(time.time()),
                    station_id=self.station_id,
                    body=outcome.event_body(self._cap),
                )
            )
        if outcome.over_cap and not self._over_cap:
            self._over_cap = True
            message = (
                f"ledger is over its size cap of {self._cap} bytes with only records that "
                "must be kept (orders, alarms, events or records not yet acknowledged); "
                "raise ledger.size_cap or restore the uplinks"
            )
            self._on_health("over_cap", True, message)
            self.submit(self._alarm("over_cap", "raised", message))
        elif not outcome.over_cap and self._over_cap:
            self._over_cap = False
            message = "ledger is back under its size cap"
            self._on_health("over_cap", False, message)
            self.submit(self._alarm("over_cap", "cleared", message))
