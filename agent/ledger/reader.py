"""Read-side queries, run on a reader connection of their own (SQLite WAL: readers never
block the writer). Every query here is served by an index: the ``records`` primary key, the
``(kind, seq)`` index or the ``(session_id, seq)`` index."""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Collection

from agent.ledger.chain import stored_from_row
from agent.ledger.store import DATA_EXPR
from agent.records.envelope import StoredRecord

_BATCH = (
    f"SELECT r.seq, r.prev, r.hash, {DATA_EXPR} FROM records r "
    "WHERE r.seq > ? AND r.data IS NOT NULL{kind} "
    "AND NOT EXISTS (SELECT 1 FROM parked p WHERE p.uplink = ? AND p.seq = r.seq) "
    "ORDER BY r.seq LIMIT ?"
)
_BATCH_ALL = _BATCH.format(kind="")
_BATCH_KIND = _BATCH.format(kind=" AND r.kind = ?")


def read_batch(
    conn: sqlite3.Connection,
    uplink: str,
    after_seq: int,
    limit: int,
    kinds: Collection[str] | None,
) -> list[StoredRecord]:
    if limit <= 0:
        return []
    if kinds is None:
        rows = conn.execute(_BATCH_ALL, (after_seq, uplink, limit)).fetchall()
    else:
        # one ordered index range per kind, merged: never a sort of the whole backlog
        per_kind = [
            conn.execute(_BATCH_KIND, (after_seq, kind, uplink, limit)).fetchall()
            for kind in sorted(set(kinds))
        ]
        rows = list(heapq.merge(*per_kind))[:limit]
    return [stored_from_row(data, prev, digest) for _seq, prev, digest, data in rows]


def backlog(conn: sqlite3.Connection, uplink: str, after_seq: int) -> int:
    waiting = conn.execute(
        "SELECT count(*) FROM records WHERE seq > ? AND data IS NOT NULL", (after_seq,)
    ).fetchone()[0]
    parked = conn.execute(
        "SELECT count(*) FROM parked JOIN records USING (seq) "
        "WHERE parked.uplink = ? AND parked.seq > ? AND records.data IS NOT NULL",
        (uplink, after_seq),
    ).fetchone()[0]
    return int(waiting) - int(parked)


def find(
    conn: sqlite3.Connection,
    kind: str,
    session_id: str | None,
    connector_id: str | None,
    limit: int,
    newest_first: bool = False,
) -> list[StoredRecord]:
    sql = (
        f"SELECT r.prev, r.hash, {DATA_EXPR} FROM records r WHERE r.kind = ? AND r.data IS NOT NULL"
    )
    params: list[object] = [kind]
    if session_id is not None:
        sql += " AND r.session_id = ?"
        params.append(session_id)
    if connector_id is not None:
        sql += " AND r.connector_id = ?"
        params.append(connector_id)
    sql += f" ORDER BY r.seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
    params.append(limit)
    return [stored_from_row(data, prev, digest) for prev, digest, data in conn.execute(sql, params)]
