"""The ``parked`` table: records an uplink skips (a permanent refusal, a damaged row) until a
technician or operator releases them (``evgw uplink resend``). Queries only; the
:class:`~agent.ledger.ledger.Ledger` runs them on its reader thread (list, count) or in the
writer's next group commit (park, release). Every query is served by the table's
``(uplink, seq)`` primary key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

LIST_SQL: Final = (
    "SELECT p.seq, p.reason, p.ts, r.kind FROM parked p LEFT JOIN records r USING (seq) "
    "WHERE p.uplink = ? ORDER BY p.seq LIMIT ?"
)
COUNT_SQL: Final = "SELECT count(*) FROM parked WHERE uplink = ?"
PARK_SQL: Final = "INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?)"
RELEASE_SQL: Final = "DELETE FROM parked WHERE uplink = ? AND seq IN ({marks})"
_CHUNK: Final = 500
"""Seqs per DELETE (SQLite's bound-parameter limit is far above)."""


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    seq: int
    kind: str | None
    """None when the record itself is gone (retention, a declared loss)."""
    reason: str
    ts: str
    """When it was parked (ISO 8601 UTC)."""


def rows(conn: sqlite3.Connection, uplink: str, limit: int) -> list[ParkedRecord]:
    return [
        ParkedRecord(seq, kind, reason, ts)
        for seq, reason, ts, kind in conn.execute(LIST_SQL, (uplink, limit))
    ]


def count(conn: sqlite3.Connection, uplink: str) -> int:
    return int(conn.execute(COUNT_SQL, (uplink,)).fetchone()[0])


def release(conn: sqlite3.Connection, uplink: str, seqs: list[int]) -> int:
    released = 0
    for start in range(0, len(seqs), _CHUNK):
        chunk = seqs[start : start + _CHUNK]
        cur = conn.execute(RELEASE_SQL.format(marks=",".join("?" * len(chunk))), (uplink, *chunk))
        released += cur.rowcount
    return released
