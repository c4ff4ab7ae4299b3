"""Start-up check and recovery of a damaged ledger file (issue 5 §6).

:func:`inspect` runs ``PRAGMA quick_check`` and verifies the tail of the chain (the last
records' hashes and links, and the newest checkpoint's signature). When it finds damage,
:func:`salvage` moves the file aside (never deletes it), copies every record that still
verifies from the start of the chain into a new file, and ends that file with an ``event``
record whose ``prev`` is the last good hash, so the new chain continues the old one. Sequence
numbers never go back: if records after the last good one were lost, the event says which
range, and the new records continue after the highest seq the old file ever had.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from agent.ledger.chain import GENESIS, checkpoint_payload, link_hash
from agent.ledger.keys import PublicKey
from agent.ledger.store import DATA_EXPR, create_schema, read_meta
from agent.ledger.writer import Row, insert_rows, make_row
from agent.records.envelope import Record, iso_ts

TAIL_RECORDS: Final = 1000
_CHUNK: Final = 5000


class _SeqOnly(msgspec.Struct):
    seq: int


_SEQ_DECODER = msgspec.json.Decoder(_SeqOnly)


@dataclass(frozen=True, slots=True)
class Recovery:
    reason: str
    moved_to: Path
    last_good_seq: int
    event_seq: int
    lost_from_seq: int | None
    lost_to_seq: int | None


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def _bad_row(
    seq: int, prev: bytes, digest: bytes, data: bytes | None, last: tuple[int, bytes] | None
) -> str | None:
    """Why this row does not continue the chain after ``last`` (None: it does)."""
    if last is not None:
        if seq != last[0] + 1:
            return f"seq {last[0] + 1} is missing (next stored seq is {seq})"
        if prev != last[1]:
            return f"record {seq}: prev does not match the hash of record {last[0]}"
    if data is not None:
        if link_hash(prev, data) != digest:
            return f"record {seq}: stored hash does not match its content"
        try:
            inner = _SEQ_DECODER.decode(data).seq
        except msgspec.DecodeError:
            return f"record {seq}: content is not valid JSON"
        if inner != seq:
            return f"record {seq}: content says seq {inner}"
    return None


def inspect(path: Path) -> str | None:
    """``None`` when the file is healthy, else what is wrong with it."""
    try:
        conn = _ro(path)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        return _inspect(conn)
    except sqlite3.DatabaseError as exc:
        return f"SQLite error: {exc}"
    finally:
        conn.close()


def _inspect(conn: sqlite3.Connection) -> str | None:
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        return "quick_check: " + "; ".join(problems)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "records" not in tables:
        return None if not tables else "not an evgw ledger (no records table)"
    rows = conn.execute(
        f"SELECT r.seq, r.prev, r.hash, {DATA_EXPR} FROM records r ORDER BY r.seq DESC LIMIT ?",
        (TAIL_RECORDS,),
    ).fetchall()
    last: tuple[int, bytes] | None = None
    for seq, prev, digest, data in reversed(rows):
        bad = _bad_row(seq, prev, digest, data, last)
        if bad:
            return bad
        last = (seq, digest)
    cp = conn.execute(
        "SELECT seq, hash, ts, key_id, sig FROM checkpoints ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if cp is None:
        return None
    seq, digest, ts, key_id, sig = cp
    row = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
    if row is not None and row[0] != digest:
        return f"newest checkpoint (seq {seq}) does not match the record's hash"
    key_row = conn.execute("SELECT public_der FROM keys WHERE key_id = ?", (key_id,)).fetchone()
    if key_row is None:
        return f"newest checkpoint is signed by unknown key {key_id[:16]}"
    gateway_id = read_meta(conn).get("gateway_id", "")
    payload = checkpoint_payload(gateway_id, seq, digest.hex(), ts)
    if not PublicKey.from_der(key_row[0]).verify(base64.b64decode(sig), payload):
        return f"newest checkpoint (seq {seq}) has a bad signature"
    return None


def _move_aside(path: Path) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("-wal", "-shm", ""):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.rename(src, Path(f"{target}{suffix}"))
    return target


def salvage(path: Path, *, gateway_id: str, station_id: str, reason: str) -> Recovery:
    """Move ``path`` aside and rebuild a ledger from what still verifies; see module doc."""
    moved = _move_aside(path)
    good: list[tuple[int, str, str | None, str | None, bytes, bytes, bytes | None]] = []
    max_seen = 0
    meta: dict[str, str] = {}
    cursors: list[tuple[str, int]] = []
    parked: list[tuple[str, int, str, str]] = []
    checkpoints: list[tuple[int, bytes, str, str, str]] = []
    keys: list[tuple[str, bytes, int]] = []
    try:
        old = _ro(moved)
    except sqlite3.Error:
        old = None
    if old is not None:
        try:
            meta = dict(_try_all(old, "SELECT key, value FROM meta"))
            good, max_seen = _good_prefix(old)
            cursors = _try_all(old, "SELECT uplink, seq FROM cursors")
            parked = _try_all(old, "SELECT uplink, seq, reason, ts FROM parked")
            checkpoints = _try_all(old, "SELECT seq, hash, ts, key_id, sig FROM checkpoints")
            keys = _try_all(old, "SELECT key_id, public_der, first_seq FROM keys")
        finally:
            old.close()
    gateway_id = meta.get("gateway_id", gateway_id)
    last_good = good[-1][0] if good else 0
    last_hash = good[-1][5] if good else GENESIS
    hashes = {row[0]: row[5] for row in good[-TAIL_RECORDS * 10 :]}
    max_seen = max([max_seen, last_good, *(seq for _u, seq in cursors)])
    event_seq = max_seen + 1
    lost = (last_good + 1, max_seen) if max_seen > last_good else (None, None)
    body = {
        "event": "ledger_recovered",
        "reason": reason,
        "previous_file": str(moved),
        "last_good_seq": last_good,
        "last_good_hash": last_hash.hex(),
        "lost_from_seq": lost[0],
        "lost_to_seq": lost[1],
    }
    event = Record(kind="event", ts=iso_ts(time.time()), station_id=station_id, body=body)
    row = make_row(event, event_seq, gateway_id, last_hash)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        create_schema(conn, gateway_id)
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, [*good, row])
        conn.executemany(
            "INSERT INTO checkpoints (seq, hash, ts, key_id, sig) VALUES (?, ?, ?, ?, ?)",
            [cp for cp in checkpoints if hashes.get(cp[0]) == cp[1]],
        )
        conn.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", keys)
        conn.executemany("INSERT OR IGNORE INTO cursors VALUES (?, ?)", cursors)
        conn.executemany("INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?)", parked)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Recovery(reason, moved, last_good, event_seq, lost[0], lost[1])


def _try_all(conn: sqlite3.Connection, sql: str) -> list:  # type: ignore[type-arg]
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError:
        return []


_ROWS_AFTER: Final = (
    "SELECT r.seq, r.kind, r.session_id, r.connector_id, r.prev, r.hash, "
    f"{DATA_EXPR} FROM records r WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)


def _rows_one_by_one(conn: sqlite3.Connection, after: int) -> list[Row]:
    """The readable rows after ``after``, up to the first damaged one (a chunk failed)."""
    rows: list[Row] = []
    while len(rows) < _CHUNK:
        try:
            found = conn.execute(_ROWS_AFTER, (after, 1)).fetchall()
        except sqlite3.DatabaseError:
            break
        if not found:
            break
        rows.extend(found)
        after = found[0][0]
    return rows


def _good_prefix(
    conn: sqlite3.Connection,
) -> tuple[list[tuple[int, str, str | None, str | None, bytes, bytes, bytes | None]], int]:
    """Rows from the start of the chain up to the first one that does not verify."""
    good: list[tuple[int, str, str | None, str | None, bytes, bytes, bytes | None]] = []
    max_seen = 0
    with contextlib.suppress(sqlite3.DatabaseError):
        max_seen = int(conn.execute("SELECT max(seq) FROM records").fetchone()[0] or 0)
    last: tuple[int, bytes] | None = None
    after = -1
    while True:
        try:
            chunk = conn.execute(_ROWS_AFTER, (after, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            chunk = _rows_one_by_one(conn, after)
        if not chunk:
            return good, max_seen
        for row in chunk:
            seq, _kind, _session, _conn_id, prev, digest, data = row
            max_seen = max(max_seen, seq)
            if _bad_row(seq, prev, digest, data, last):
                return good, max_seen
            good.append(row)
            last = (seq, digest)
        after = chunk[-1][0]
