"""Rows, batches and the chain position the writer (:mod:`agent.ledger.writer`) works with."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from agent.ledger.chain import GENESIS, link_hash, unchained_json
from agent.ledger.pressure import DEFAULT_BOUND_BYTES
from agent.ledger.store import SPLIT_KINDS
from agent.records.bodies import KINDS
from agent.records.envelope import Record

INSERT_RECORD: Final = (
    "INSERT INTO records (seq, kind, session_id, connector_id, prev, hash, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_CHECKPOINT: Final = (
    "INSERT INTO checkpoints (seq, hash, ts, key_id, sig) VALUES (?, ?, ?, ?, ?)"
)
INSERT_BODY: Final = {k: f"INSERT INTO body_{k} (seq, data) VALUES (?, ?)" for k in SPLIT_KINDS}
Row = tuple[int, str, str | None, str | None, bytes, bytes, bytes]
"""``(seq, kind, session_id, connector_id, prev, hash, data)`` with the hashed bytes."""
Op = Callable[[sqlite3.Connection], Any]
Done = Callable[[int, bytes, list[Any], list[Any]], None]
"""Called on every commit: durable seq, durable hash, waiter tokens, op results."""
Health = Callable[[str, bool, str], None]


def make_row(record: Record, seq: int, gateway_id: str, prev: bytes, epoch: int = 0) -> Row:
    if record.kind not in KINDS:
        raise ValueError(f"unknown record kind {record.kind!r}; expected one of {KINDS}")
    data = unchained_json(record, seq, gateway_id, epoch)
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


@dataclass(slots=True)
class Batch:
    rows: list[Any] = field(default_factory=list)
    """Rows as inserted: split kinds carry ``b""`` (body in ``bodies``), stubs ``None``."""
    bodies: dict[str, list[tuple[int, bytes]]] = field(
        default_factory=lambda: {k: [] for k in SPLIT_KINDS}
    )
    waiters: list[tuple[int, Any]] = field(default_factory=list)
    """``(seq, token)``: the token is handed back once ``seq`` is durable."""
    ops: list[tuple[Op, Any]] = field(default_factory=list)
    urgent: bool = False
    first_t: float = 0.0
    reads: list[tuple[Op, Any]] = field(default_factory=list)
    """Reads the writer serves between commits (the WAL index is in memory)."""

    def add(self, row: Row) -> None:
        split = self.bodies.get(row[1])
        if split is None:
            self.rows.append(row)
        else:
            split.append((row[0], row[6]))
            self.rows.append((*row[:6], b""))

    def insert(self, conn: sqlite3.Connection) -> None:
        conn.executemany(INSERT_RECORD, self.rows)
        for kind, bodies in self.bodies.items():
            if bodies:
                conn.executemany(INSERT_BODY[kind], bodies)


@dataclass(slots=True)
class Chain:
    """Where the chain stands when the writer starts."""

    epoch: int = 0
    last_seq: int = 0
    last_hash: bytes = GENESIS
    next_seq: int = 0
    """0: ``last_seq + 1``; more after a declared gap (records a stop could not write)."""
    last_checkpoint_seq: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    deleted_below: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    commit_interval_s: float = 0.05
    checkpoint_interval_s: float = 60.0
    max_batch: int = 5000
    size_cap_bytes: int | None = None
    memory_bound_bytes: int = DEFAULT_BOUND_BYTES


def insert_rows(conn: sqlite3.Connection, rows: list[Any]) -> None:
    """Insert complete rows (``data`` None: a stub), splitting off the bodies."""
    batch = Batch()
    for row in rows:
        if row[6] is None:
            batch.rows.append(row)
        else:
            batch.add(row)
    batch.insert(conn)
