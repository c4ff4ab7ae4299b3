"""Salvage, step 1: every row that can still be read from a damaged ledger, by page.

:func:`collect` walks every version of every leaf page of the main file and its WAL
(:mod:`agent.ledger.pages`), recognises the ledger's tables by the shape of their rows, and
writes what it finds into a scratch SQLite file: record rows (each checked against its own
hash at once), split-off bodies, the kind of every seq any index or row still names,
checkpoints, keys, cursors, parks and meta values. Nothing is held in memory but one page,
so a ledger of any size can be salvaged. :mod:`agent.ledger.rebuild` then picks, seq by seq,
the version that verifies and writes the new ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from agent.ledger.chain import link_hash
from agent.ledger.pages import Cell, PageSource
from agent.records.bodies import KINDS

_KINDS: Final = frozenset(KINDS)
_COMMIT_EVERY: Final = 20_000

STAGE_SCHEMA: Final = """
CREATE TABLE rows (
    seq INTEGER NOT NULL, hash BLOB NOT NULL, kind TEXT NOT NULL, session_id TEXT,
    connector_id TEXT, prev BLOB NOT NULL, data BLOB, ok INTEGER NOT NULL,
    PRIMARY KEY (seq, hash)
) WITHOUT ROWID;
CREATE TABLE bodies (seq INTEGER NOT NULL, digest BLOB NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (seq, digest)) WITHOUT ROWID;
CREATE TABLE kinds (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL);
CREATE TABLE checkpoints (seq INTEGER NOT NULL, hash BLOB NOT NULL, ts TEXT NOT NULL,
    key_id TEXT NOT NULL, sig TEXT NOT NULL, PRIMARY KEY (seq, hash, ts, key_id, sig))
    WITHOUT ROWID;
CREATE TABLE keys (key_id TEXT NOT NULL, der BLOB NOT NULL, first_seq INTEGER NOT NULL,
    PRIMARY KEY (key_id, der, first_seq)) WITHOUT ROWID;
CREATE TABLE cursors (uplink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE parked (uplink TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL,
    ts TEXT NOT NULL, PRIMARY KEY (uplink, seq)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, value))
    WITHOUT ROWID;
"""


class _Inner(msgspec.Struct):
    """The fields of a record's hashed JSON that salvage checks."""

    seq: int
    kind: str = ""
    id: str = ""


_INNER: Final = msgspec.json.Decoder(_Inner)


def inner(data: bytes) -> _Inner | None:
    """``seq``, ``kind`` and ``id`` from a record's hashed JSON (None: not parseable)."""
    try:
        return _INNER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


Progress = Callable[[str], None] | None
"""Told what a long salvage is doing, every few seconds (the service extends systemd's
start timeout with it)."""


PROGRESS_EVERY_S = 5.0


class Ticker:
    """Calls ``progress`` at most every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._every_s = PROGRESS_EVERY_S
        self._next = time.monotonic() + self._every_s

    def tick(self, what: Callable[[], str]) -> None:
        if self._progress is not None and time.monotonic() >= self._next:
            self._next = time.monotonic() + self._every_s
            self._progress(what())


@dataclass(slots=True)
class Collected:
    pages: int = 0
    cells: int = 0
    bad_cells: int = 0
    wal_commits_lost: int = 0


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def _is_key_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64


class _Stager:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, cell: Cell) -> None:
        values = cell.values
        if cell.index:
            self._index(values)
        elif cell.rowid is not None:
            self._table(cell.rowid, values)

    def _index(self, v: tuple[object, ...]) -> None:
        if len(v) == 3 and v[0] in _KINDS and isinstance(v[1], int) and v[1] == v[2]:
            self.conn.execute("INSERT OR IGNORE INTO kinds VALUES (?, ?)", (v[1], v[0]))
        elif (
            len(v) == 4
            and isinstance(v[0], str)
            and isinstance(v[1], int)
            and isinstance(v[2], str)
            and isinstance(v[3], str)
        ):
            self.conn.execute("INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?)", v)

    def _table(self, rowid: int, v: tuple[object, ...]) -> None:
        n = len(v)
        if n == 7 and v[0] is None and v[1] in _KINDS and _is_digest(v[4]) and _is_digest(v[5]):
            self._record(rowid, v)
        elif n == 2 and v[0] is None and isinstance(v[1], bytes):
            self._body(rowid, v[1])
        elif (
            n == 6
            and v[0] is None
            and isinstance(v[1], int)
            and _is_digest(v[2])
            and _is_key_id(v[4])
            and all(isinstance(x, str) for x in (v[3], v[5]))
        ):
            self.conn.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?)", v[1:])
        elif n == 3 and _is_key_id(v[0]) and isinstance(v[1], bytes) and isinstance(v[2], int):
            self.conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", v)
        elif n == 2 and isinstance(v[0], str) and isinstance(v[1], int):
            self.conn.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (uplink) "
                "DO UPDATE SET seq = max(seq, excluded.seq)",
                v,
            )
        elif n == 2 and isinstance(v[0], str) and isinstance(v[1], str):
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", v)

    def _record(self, seq: int, v: tuple[object, ...]) -> None:
        kind, session, connector, prev, digest, data = v[1], v[2], v[3], v[4], v[5], v[6]
        if not (session is None or isinstance(session, str)):
            return
        if not (connector is None or isinstance(connector, str)):
            return
        if not (data is None or isinstance(data, bytes)):
            return
        assert isinstance(prev, bytes) and isinstance(digest, bytes)
        ok = 0
        if data:
            parsed = inner(data)
            ok = int(parsed is not None and parsed.seq == seq and link_hash(prev, data) == digest)
        self.conn.execute(
            "INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, digest, kind, session, connector, prev, data, ok),
        )
        self.conn.execute("INSERT OR IGNORE INTO kinds VALUES (?, ?)", (seq, kind))

    def _body(self, seq: int, data: bytes) -> None:
        parsed = inner(data)
        if parsed is None or parsed.seq != seq or parsed.kind not in _KINDS:
            return
        self.conn.execute(
            "INSERT OR IGNORE INTO bodies VALUES (?, ?, ?)",
            (seq, hashlib.sha256(data).digest(), data),
        )
        self.conn.execute("INSERT OR IGNORE INTO kinds VALUES (?, ?)", (seq, parsed.kind))


def open_stage(path: Path) -> sqlite3.Connection:
    """A fresh scratch database for :func:`collect` (any old one is removed)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(STAGE_SCHEMA)
    return conn


def collect(ledger: Path, stage: sqlite3.Connection, progress: Progress = None) -> Collected:
    """Stage every readable row of ``ledger`` (and its WAL) into ``stage``."""
    found = Collected()
    stager = _Stager(stage)
    ticker = Ticker(progress)
    with PageSource(ledger) as source:
        numbers = source.page_numbers()
        found.pages = len(numbers)
        stage.execute("BEGIN")
        for i, pgno in enumerate(numbers):
            ticker.tick(lambda i=i: f"salvaging the damaged ledger: page {i} of {len(numbers)}")
            for image in source.images(pgno):
                for cell in source.leaf_cells(pgno, image):
                    stager.add(cell)
                    found.cells += 1
                    if found.cells % _COMMIT_EVERY == 0:
                        stage.execute("COMMIT")
                        stage.execute("BEGIN")
        stage.execute("COMMIT")
        found.bad_cells = source.bad_cells
        found.wal_commits_lost = source.wal_commits_lost
    return found
