"""Keeping the ledger under its size cap (issue 5 §5).

When the pages in use plus the WAL exceed the cap, the writer first folds the WAL into the
main file; if the pages in use alone still exceed it, retention frees room down to 90 %:

1. delete records every uplink has acknowledged, up to (not including) the newest signed
   checkpoint at or below the slowest cursor, so the chain stays verifiable from that
   checkpoint's record onwards;
2. if still over, drop the bodies of low-priority records oldest first — ``meter_sample``,
   then ``bms_process`` — even when not yet acknowledged. A dropped record keeps its row
   (``seq``, ``kind``, ``prev``, ``hash``; ``data = NULL``) so the hash chain stays
   continuous, and an ``event`` record says which kinds, how many and which seq ranges;
3. never drop ``charge_order``, ``alarm``, ``event`` or any other kind.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

from agent.ledger.store import SPLIT_KINDS, pages_bytes

DROP_ORDER: Final = SPLIT_KINDS
"""Kinds whose unacknowledged records may be dropped, first to last."""
TARGET_FRACTION: Final = 0.9
_MAX_ROUNDS: Final = 12


@dataclass(slots=True)
class Dropped:
    kind: str
    count: int = 0
    from_seq: int = 0
    to_seq: int = 0


@dataclass(slots=True)
class Outcome:
    deleted_below_seq: int | None = None
    deleted_count: int = 0
    dropped: list[Dropped] = field(default_factory=list)
    over_cap: bool = False

    def event_body(self, cap_bytes: int) -> dict[str, Any]:
        return {
            "event": "retention_dropped",
            "size_cap_bytes": cap_bytes,
            "acknowledged_deleted_below_seq": self.deleted_below_seq,
            "dropped": [
                {"kind": d.kind, "count": d.count, "from_seq": d.from_seq, "to_seq": d.to_seq}
                for d in self.dropped
            ],
        }


def enforce(conn: sqlite3.Connection, cap_bytes: int, durable_seq: int) -> Outcome:
    """Free room when the pages in use exceed ``cap_bytes``; one transaction, committed
    before returning. (The writer folds the WAL into the main file first: the cap counts
    the pages in use plus the WAL.)"""
    outcome = Outcome()
    limit = cap_bytes
    if pages_bytes(conn) <= limit:
        return outcome
    target = int(limit * TARGET_FRACTION)
    conn.execute("BEGIN IMMEDIATE")
    try:
        _delete_acknowledged(conn, target, durable_seq, outcome)
        for kind in DROP_ORDER:
            if pages_bytes(conn) <= target:
                break
            _drop_kind(conn, kind, target, outcome)
        if outcome.deleted_below_seq is not None:
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('deleted_below', ?)",
                (str(outcome.deleted_below_seq),),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    outcome.over_cap = pages_bytes(conn) > limit
    return outcome


def slowest_cursor(conn: sqlite3.Connection, durable_seq: int) -> int:
    """The lowest acknowledged seq over all uplinks (everything, when there is none)."""
    row = conn.execute("SELECT min(seq) FROM cursors").fetchone()
    return durable_seq if row[0] is None else min(int(row[0]), durable_seq)


def _delete_acknowledged(
    conn: sqlite3.Connection, target: int, durable_seq: int, outcome: Outcome
) -> None:
    acked = slowest_cursor(conn, durable_seq)
    for _round in range(_MAX_ROUNDS):
        used = pages_bytes(conn)
        first = conn.execute("SELECT min(seq) FROM records").fetchone()[0]
        last = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
        if used <= target or first is None:
            return
        rows = last - first + 1  # seqs are gap-free but for declared losses: an estimate
        wanted = first + int((used - target) / (used / rows)) + 1
        anchor = (
            conn.execute(
                "SELECT min(seq) FROM checkpoints WHERE seq >= ? AND seq <= ?", (wanted, acked)
            ).fetchone()[0]
            or conn.execute(
                "SELECT max(seq) FROM checkpoints WHERE seq > ? AND seq <= ?", (first, acked)
            ).fetchone()[0]
        )
        if anchor is None:
            return
        count = conn.execute("DELETE FROM records WHERE seq < ?", (anchor,)).rowcount
        for kind in SPLIT_KINDS:
            conn.execute(f"DELETE FROM body_{kind} WHERE seq < ?", (anchor,))
        conn.execute("DELETE FROM checkpoints WHERE seq < ?", (anchor,))
        conn.execute(  # per uplink: the (uplink, seq) key serves it, no scan
            "DELETE FROM parked WHERE uplink IN (SELECT uplink FROM cursors) AND seq < ?",
            (anchor,),
        )
        outcome.deleted_below_seq = anchor
        outcome.deleted_count += count


def _drop_kind(conn: sqlite3.Connection, kind: str, target: int, outcome: Outcome) -> None:
    """Drop the oldest bodies of ``kind`` (a prefix of ``body_<kind>``) until under target."""
    dropped = Dropped(kind)
    table = f"body_{kind}"
    for _round in range(_MAX_ROUNDS * 4):
        used = pages_bytes(conn)
        if used <= target:
            break
        low = conn.execute(f"SELECT min(seq) FROM {table}").fetchone()[0]
        if low is None:
            break
        avg = conn.execute(
            f"SELECT avg(length(data)) FROM (SELECT data FROM {table} WHERE seq >= ? "
            "ORDER BY seq LIMIT 256)",
            (low,),
        ).fetchone()[0]
        # the records row (seq, kind, two digests) stays: count only the body as freed
        limit = int((used - target) / max(16.0, float(avg))) + 32
        bound = conn.execute(
            f"SELECT max(seq) FROM (SELECT seq FROM {table} WHERE seq >= ? ORDER BY seq LIMIT ?)",
            (low, limit),
        ).fetchone()[0]
        count = conn.execute(f"DELETE FROM {table} WHERE seq <= ?", (bound,)).rowcount
        conn.execute(
            "UPDATE records SET data = NULL, session_id = NULL "
            "WHERE kind = ? AND seq BETWEEN ? AND ? AND data IS NOT NULL",
            (kind, low, bound),
        )
        dropped.count += count
        dropped.from_seq = low if dropped.from_seq == 0 else dropped.from_seq
        dropped.to_seq = bound
    if dropped.count:
        outcome.dropped.append(dropped)
