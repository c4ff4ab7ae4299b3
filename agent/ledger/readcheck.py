"""Reading past damage: every record a reader returns matches its hash; the rest is reported.

A row whose content does not match its stored hash, that does not decode, or that SQLite
cannot read at all (a damaged page) is left out of what a read returns and listed in
:attr:`ReadBatch.damaged` instead, so an uplink can park it and go on (the ledger parks it
for the uplink that read it, raises an alarm and rebuilds the file). When a query fails on a
damaged page, the range is read again one seq at a time to find exactly which seqs are
unreadable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from agent.ledger.chain import link_hash, stored_from_row
from agent.ledger.store import DATA_EXPR
from agent.records.envelope import StoredRecord

_ONE: Final = f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r WHERE r.seq = ?"
_PARKED: Final = "SELECT 1 FROM parked WHERE uplink = ? AND seq = ?"
_MAX_PROBES: Final = 4096

RawRow = tuple[int, str | None, bytes, bytes, bytes | None]
"""``(seq, kind, prev, hash, data)`` as the read queries return them."""


@dataclass(frozen=True, slots=True)
class Damaged:
    """A record a read skipped: its seq, its kind when readable, and why."""

    seq: int
    kind: str | None
    reason: str


class ReadBatch(list[StoredRecord]):
    """The records a read returns, by seq; :attr:`damaged` lists the ones it had to skip."""

    damaged: list[Damaged]

    def __init__(
        self, records: Iterable[StoredRecord] = (), damaged: Iterable[Damaged] = ()
    ) -> None:
        super().__init__(records)
        self.damaged = list(damaged)


def decode(rows: Iterable[RawRow], into: ReadBatch | None = None) -> ReadBatch:
    """Records from rows, each checked against its hash; the others go to ``damaged``."""
    out = ReadBatch() if into is None else into
    for seq, kind, prev, digest, data in rows:
        if data is None:
            continue
        if not isinstance(prev, bytes) or not isinstance(digest, bytes):
            out.damaged.append(Damaged(seq, kind, "its prev/hash columns are garbled"))
        elif link_hash(prev, data) != digest:
            out.damaged.append(Damaged(seq, kind, "its content does not match its hash"))
        else:
            try:
                out.append(stored_from_row(data, prev, digest))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                out.damaged.append(Damaged(seq, kind, f"it is not a valid record ({exc})"))
    return out


def probe(
    conn: sqlite3.Connection,
    after_seq: int,
    limit: int,
    keep: Callable[[sqlite3.Connection, RawRow], bool],
) -> ReadBatch:
    """Read seq by seq after ``after_seq`` (a query failed): up to ``limit`` kept records."""
    out = ReadBatch()
    try:
        top = int(conn.execute("SELECT max(seq) FROM records").fetchone()[0] or 0)
    except sqlite3.DatabaseError:
        top = after_seq + _MAX_PROBES
    seq = after_seq
    while seq < top and len(out) < limit and seq - after_seq < _MAX_PROBES:
        seq += 1
        try:
            row = conn.execute(_ONE, (seq,)).fetchone()
            if row is None or not keep(conn, row):
                continue
        except sqlite3.DatabaseError as exc:
            out.damaged.append(Damaged(seq, None, f"SQLite cannot read it ({exc})"))
            continue
        decode([row], out)
    return out


def batch_filter(
    uplink: str, kinds: Collection[str] | None
) -> Callable[[sqlite3.Connection, RawRow], bool]:
    """What :func:`agent.ledger.reader.read_batch` keeps: kind, not parked, not dropped."""

    def keep(conn: sqlite3.Connection, row: RawRow) -> bool:
        if row[4] is None or (kinds is not None and row[1] not in kinds):
            return False
        return conn.execute(_PARKED, (uplink, row[0])).fetchone() is None

    return keep


def first_seqs(damaged: Sequence[Damaged]) -> str:
    """``seq 5, 9..12`` for a message."""
    seqs = sorted({d.seq for d in damaged})
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    text = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs[:8])
    return "seq " + text + (" …" if len(runs) > 8 else "")
