"""Read-side queries, run on a reader connection of their own (SQLite WAL: readers never
block the writer). Every query here is served by an index: the ``records`` primary key, the
``(kind, seq)`` index or the ``(session_id, seq)`` index. Every record returned matches its
hash; damaged ones are skipped and listed in ``ReadBatch.damaged``
(:mod:`agent.ledger.readcheck`)."""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Collection

from agent.ledger.readcheck import Damaged, ReadBatch, batch_filter, decode, probe
from agent.ledger.store import DATA_EXPR

_BATCH = (
    f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r "
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
) -> ReadBatch:
    if limit <= 0:
        return ReadBatch()
    try:
        if kinds is None:
            rows = conn.execute(_BATCH_ALL, (after_seq, uplink, limit)).fetchall()
        else:
            # one ordered index range per kind, merged: never a sort of the whole backlog
            per_kind = [
                conn.execute(_BATCH_KIND, (after_seq, kind, uplink, limit)).fetchall()
                for kind in sorted(set(kinds))
            ]
            rows = list(heapq.merge(*per_kind))[:limit]
    except sqlite3.DatabaseError:  # a damaged page: read seq by seq to name what is lost
        wanted = None if kinds is None else frozenset(kinds)
        return probe(conn, after_seq, limit, batch_filter(uplink, wanted))
    return decode(rows)


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
) -> ReadBatch:
    sql = (
        f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r "
        "WHERE r.kind = ? AND r.data IS NOT NULL"
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
    try:
        return decode(conn.execute(sql, params).fetchall())
    except sqlite3.DatabaseError as exc:
        return ReadBatch(damaged=[Damaged(0, kind, f"the {kind} records cannot be read ({exc})")])
