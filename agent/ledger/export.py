"""Export a ledger file as JSON Lines: records, stubs and checkpoints in chain order.

Each line is canonical JSON (keys sorted, no spaces) of one of:

- a record: the stored envelope with ``seq``, ``id``, ``prev``, ``hash``;
- ``{"checkpoint": {gateway_id, seq, hash, ts, key_id, sig}}``, right after the record it
  signs;
- ``{"stub": {seq, kind, prev, hash, reason}}`` for a record whose body is not in the file:
  ``reason`` is ``"dropped"`` (retention dropped it, see the ``retention_dropped`` event) or
  ``"omitted"`` (left out by ``--kind``). A stub keeps the chain of hashes continuous;
- ``{"damaged": {from_seq, to_seq, reason}}`` for records the export could not read (a damaged
  page), or ``{"damaged": {from_seq, to_seq, kind, prev, hash, reason}}`` for one whose
  content does not match its hash or does not decode: ``evgw ledger verify`` names each;
- ``{"quarantined": {what, seq, reason}}`` at the end, for every row the ledger set aside (a
  checkpoint whose signature failed, a damaged ``keys`` row).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from agent.errors import UserError
from agent.ledger.chain import link_hash, stored_from_row
from agent.ledger.store import DATA_EXPR, read_meta
from agent.records.envelope import canonical_json

_CHUNK: Final = 2000
_PAST_END: Final = 10_000
"""Seqs read one by one past a damaged page before the export takes the end as reached."""
_ROWS: Final = (
    f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r "
    "WHERE r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?"
)
_ONE: Final = f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r WHERE r.seq = ?"


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ledger file (the service may keep writing it)."""
    if not path.is_file():
        raise UserError(f"ledger {path} does not exist (check --ledger or ledger.path)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        meta = read_meta(conn)
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc):
            raise UserError(
                f"{path} is locked by the service (it opened the ledger on a full disk, with "
                "its WAL index in memory); free space and restart it, or work on a copy"
            ) from exc
        raise UserError(f"{path} is not a readable evgw ledger: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UserError(f"{path} is not a readable evgw ledger: {exc}") from exc
    if "gateway_id" not in meta:
        conn.close()
        raise UserError(f"{path} is not an evgw ledger (no gateway id in its meta table)")
    return conn


def export_lines(
    conn: sqlite3.Connection,
    *,
    from_seq: int | None = None,
    to_seq: int | None = None,
    kinds: Collection[str] | None = None,
) -> Iterator[bytes]:
    """Yield the export, one canonical JSON line (without newline) at a time."""
    gateway_id = read_meta(conn)["gateway_id"]
    low = 0 if from_seq is None else from_seq - 1
    high = (1 << 62) if to_seq is None else to_seq
    wanted = None if kinds is None else frozenset(kinds)
    try:
        checkpoints = conn.execute(
            "SELECT seq, hash, ts, key_id, sig FROM checkpoints WHERE seq > ? AND seq <= ? "
            "ORDER BY seq, id",
            (low, high),
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        checkpoints = []
        yield _note("quarantined", what="checkpoints", reason=f"cannot be read ({exc})")
    cp_index = 0
    for item in _rows(conn, low, high):
        if isinstance(item, bytes):
            yield item
            continue
        seq = item[0]
        while cp_index < len(checkpoints) and checkpoints[cp_index][0] < seq:
            yield _checkpoint_line(gateway_id, checkpoints[cp_index])
            cp_index += 1
        yield _record_line(item, wanted)
        while cp_index < len(checkpoints) and checkpoints[cp_index][0] == seq:
            yield _checkpoint_line(gateway_id, checkpoints[cp_index])
            cp_index += 1
    while cp_index < len(checkpoints):
        yield _checkpoint_line(gateway_id, checkpoints[cp_index])
        cp_index += 1
    yield from _quarantined(conn)


def _note(tag: str, **fields: Any) -> bytes:
    return canonical_json({tag: fields})


def _rows(conn: sqlite3.Connection, low: int, high: int) -> Iterator[tuple[Any, ...] | bytes]:
    """Rows by seq; where a page cannot be read, one seq at a time and damage notes."""
    after = low
    while True:
        try:
            rows = conn.execute(_ROWS, (after, high, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            after = yield from _probe(conn, after, high)
            if after is None:
                return
            continue
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _probe(
    conn: sqlite3.Connection, after: int, high: int
) -> Iterator[tuple[Any, ...] | bytes]:  # returns the seq to continue after (None: the end)
    seq, empty, bad = after, 0, None
    found = 0
    while seq < high and empty < _PAST_END and found < _CHUNK:
        seq += 1
        try:
            row = conn.execute(_ONE, (seq,)).fetchone()
        except sqlite3.DatabaseError as exc:
            bad = (bad[0], seq, bad[2]) if bad else (seq, seq, str(exc))
            empty = 0
            continue
        if bad:
            yield _note("damaged", from_seq=bad[0], to_seq=bad[1], reason=f"unreadable ({bad[2]})")
            bad = None
        if row is None:
            empty += 1
            continue
        empty, found = 0, found + 1
        yield row
    if bad:
        yield _note("damaged", from_seq=bad[0], to_seq=bad[1], reason=f"unreadable ({bad[2]})")
    return seq if found and seq < high else None


def _record_line(row: tuple[Any, ...], wanted: frozenset[str] | None) -> bytes:
    seq, kind, prev, digest, data = row
    if not (isinstance(prev, bytes) and isinstance(digest, bytes)):
        return _note("damaged", from_seq=seq, to_seq=seq, kind=kind, reason="garbled digests")
    if data is None or (wanted is not None and kind not in wanted):
        reason = "dropped" if data is None else "omitted"
        return _note("stub", seq=seq, kind=kind, prev=prev.hex(), hash=digest.hex(), reason=reason)
    problem = None
    if link_hash(prev, data) != digest:
        problem = "its content does not match its hash"
    else:
        try:
            return canonical_json(stored_from_row(data, prev, digest))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problem = f"it is not a valid record ({exc})"
    return _note(
        "damaged", from_seq=seq, to_seq=seq, kind=kind, prev=prev.hex(), hash=digest.hex(),
        reason=problem,
    )  # fmt: skip


def _quarantined(conn: sqlite3.Connection) -> Iterator[bytes]:
    try:
        rows = conn.execute("SELECT what, seq, reason FROM quarantine ORDER BY id").fetchall()
    except sqlite3.DatabaseError:  # a ledger from before the quarantine table
        return
    for what, seq, reason in rows:
        yield _note("quarantined", what=what, seq=seq, reason=reason)


def _checkpoint_line(gateway_id: str, row: tuple[int, bytes, str, str, str]) -> bytes:
    seq, digest, ts, key_id, sig = row
    return canonical_json(
        {
            "checkpoint": {
                "gateway_id": gateway_id,
                "seq": seq,
                "hash": digest.hex() if isinstance(digest, bytes) else str(digest),
                "ts": ts,
                "key_id": key_id,
                "sig": sig,
            }
        }
    )
