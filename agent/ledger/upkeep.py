"""The writer's upkeep between commits: signed checkpoints, folding the WAL into the main
file, retention under the size cap, and the last writes at stop (:mod:`agent.ledger.writer`).
"""

from __future__ import annotations

import logging
import sqlite3
import time

from agent.ledger import retention
from agent.ledger.batch import INSERT_CHECKPOINT, Batch, Health, Limits
from agent.ledger.chain import sign_checkpoint
from agent.ledger.keys import GatewayKey
from agent.ledger.state import Abandoned, StateFile
from agent.ledger.store import used_bytes, wal_bytes
from agent.records.envelope import iso_ts

log = logging.getLogger(__name__)


class Upkeep:
    """Mixin of :class:`agent.ledger.writer.Writer`: the attributes below are the writer's."""

    conn: sqlite3.Connection
    gateway_id: str
    key: GatewayKey
    limits: Limits
    state_file: StateFile
    on_health: Health
    durable_seq: int
    durable_hash: bytes
    counts: dict[str, int]
    checkpointed: tuple[int, dict[str, int]]
    deleted_below: int
    _fault: str | None
    _over_cap: bool
    _last_cp_seq: int
    _last_cp_mono: float
    wal_limit: int
    _chunk: int

    # -- housekeeping -------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        if self._fault is not None:
            return
        if self._checkpoint_due(time.monotonic()):
            self._write_checkpoint()
        try:
            cap = self.limits.size_cap_bytes
            over = cap is not None and used_bytes(self.conn) > cap
            if over or wal_bytes(self.conn) > self.wal_limit:
                self.checkpoint_wal()
            if over and cap is not None and used_bytes(self.conn) > cap:
                self._make_room()
        except sqlite3.Error as exc:
            log.warning("ledger: housekeeping failed (%s); will retry", exc)

    def checkpoint_wal(self) -> bool:
        """Copy the WAL into the main file and truncate it; True when it all went in."""
        conn = self.conn
        conn.execute("PRAGMA busy_timeout=200")
        try:
            busy, log_frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                busy, log_frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.execute("PRAGMA busy_timeout=30000")
        complete = not busy and log_frames == done
        if complete:
            self.checkpointed = (self.durable_seq, dict(self.counts))
        return complete

    def _write_checkpoint(self) -> None:
        seq, digest = self.durable_seq, self.durable_hash
        cp = sign_checkpoint(self.key, self.gateway_id, seq, digest.hex(), iso_ts(time.time()))
        try:
            self.conn.execute(INSERT_CHECKPOINT, (cp.seq, digest, cp.ts, cp.key_id, cp.sig))
        except sqlite3.Error as exc:
            log.warning("ledger: periodic checkpoint not written (%s); will retry", exc)
            return
        self.note_checkpoint(seq)

    def note_checkpoint(self, seq: int) -> None:
        if seq > self._last_cp_seq:
            self._last_cp_seq = seq
        self._last_cp_mono = time.monotonic()

    def _reclaim(self) -> None:
        """On a full disk: move the WAL into the main file's free pages, then retention."""
        try:
            self.checkpoint_wal()
        except sqlite3.Error as exc:
            log.warning("ledger: WAL checkpoint on a full disk failed (%s)", exc)
        self._make_room()

    def _make_room(self) -> None:
        """Apply retention; record what was dropped and whether the cap still holds."""
        cap = self.limits.size_cap_bytes
        if cap is None:
            return
        try:
            outcome = retention.enforce(self.conn, cap, self.durable_seq)
            if outcome.deleted_below_seq is not None or outcome.dropped:
                self.checkpoint_wal()
        except sqlite3.Error as exc:
            self._rollback(self.conn)
            log.warning("ledger: retention could not run (%s)", exc)
            return
        if outcome.deleted_below_seq is not None:
            self.deleted_below = max(self.deleted_below, outcome.deleted_below_seq)
        if outcome.dropped:
            self.submit(self.event(outcome.event_body(cap)))
        self._note_cap(outcome.over_cap, cap)

    def _note_cap(self, over: bool, cap: int) -> None:
        if over and not self._over_cap:
            self._over_cap = True
            message = (
                f"ledger is over its size cap of {cap} bytes with only records that "
                "must be kept (orders, alarms, events or records not yet acknowledged); "
                "raise ledger.size_cap or restore the uplinks"
            )
            self.on_health("over_cap", True, message)
            self.submit(self.alarm("over_cap", "raised", message))
        elif not over and self._over_cap:
            self._over_cap = False
            message = "ledger is back under its size cap"
            self.on_health("over_cap", False, message)
            self.submit(self.alarm("over_cap", "cleared", message))

    # -- stopping -----------------------------------------------------------------------------

    def _final(self) -> None:
        """At stop: sign, fold the WAL in, and leave a clean (or an exact loss) state."""
        with self.cond:
            left, self.batch = self.batch, Batch()
        if left.rows and self._fault is not None:
            self._last_try(left)
            return
        if self.durable_seq > self._last_cp_seq and self._fault is None:
            self._write_checkpoint()
        try:
            self.checkpoint_wal()
        except sqlite3.Error as exc:
            log.warning("ledger: final WAL checkpoint failed (%s)", exc)
        self.save_state(clean=True)

    def _last_try(self, left: Batch) -> None:
        """The disk still refuses: drop low-priority bodies, write what fits, record the rest."""
        with self.cond:
            self.batch = left
            self._shed(1 << 62)
            left, self.batch = self.batch, Batch()
        self._chunk = 1
        while left.rows:
            head = self._split(left)
            if self.write(head, self.conn) is None:
                break
            self.committed(head, [None] * len(head.ops))
            with self.cond:
                left, self.batch = self.batch, Batch()
        with self.cond:
            left = self.batch if self.batch.rows else left
        if not left.rows:
            self.save_state(clean=True)
            return
        kinds: dict[str, int] = {}
        for row in left.rows:
            kinds[row[1]] = kinds.get(row[1], 0) + 1
        gone = Abandoned(
            from_seq=left.rows[0][0],
            to_seq=left.rows[-1][0],
            kinds=kinds,
            dropped=self.drops.as_body(),
        )
        log.error(
            "ledger: closing with %d records not written (%s): seq %d..%d (%s); recorded in "
            "%s and declared lost by an event at the next start",
            len(left.rows),
            self._fault,
            gone.from_seq,
            gone.to_seq,
            ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
            self.state_file.path,
        )
        self.save_state(clean=True, abandoned=gone)
