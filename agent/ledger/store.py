"""The SQLite file behind the ledger: schema, connection settings, the one-writer lock.

Tables:

- ``records(seq, kind, session_id, connector_id, prev, hash, data)``: ``data`` is the
  canonical JSON that was hashed (the record without ``prev``/``hash``); ``prev`` and
  ``hash`` are 32-byte digests. A record dropped by retention keeps its row with
  ``data = NULL`` (a *stub*), so the chain of hashes stays continuous.
- ``body_meter_sample`` / ``body_bms_process(seq, data)``: the bodies of the kinds retention
  may drop live in tables of their own (their ``records.data`` is an empty blob), so dropping
  the oldest of them deletes a contiguous range and frees whole pages.
- ``checkpoints``: every signed checkpoint; ``keys``: every public key that signed one.
- ``cursors(uplink, seq)``: last acknowledged ``seq`` per uplink; ``parked``: records an
  uplink gave up on for a permanent reason.
- ``losses(from_seq, to_seq, event_seq)``: seq ranges declared lost by the ``event`` at
  ``event_seq`` (a recovery, or records a stop could not write), so later start-up checks
  accept those gaps instead of taking them for new damage;
- ``quarantine``: rows found damaged and set aside (a checkpoint whose signature fails, a
  ``keys`` row that does not parse, a record that does not match its hash), with the reason
  (both created when first needed, so an undamaged ledger keeps the pages it always had).
- ``meta``: ``gateway_id``, ``format``, ``epoch`` (the chain epoch, see
  :func:`agent.ledger.chain.record_id`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from agent.errors import UserError

log = logging.getLogger("agent.ledger")

FORMAT: Final = "1"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    session_id TEXT,
    connector_id TEXT,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL,
    data BLOB
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE INDEX IF NOT EXISTS records_session ON records (session_id, seq)
    WHERE session_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS body_meter_sample (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS body_bms_process (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    ts TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sig TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_seq ON checkpoints (seq);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    public_der BLOB NOT NULL,
    first_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (uplink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS parked (
    uplink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    ts TEXT NOT NULL,
    PRIMARY KEY (uplink, seq)
) WITHOUT ROWID;
"""

ON_DEMAND: Final = {
    "losses": """CREATE TABLE IF NOT EXISTS losses (
    from_seq INTEGER PRIMARY KEY,
    to_seq INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
)""",
    "quarantine": """CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    what TEXT NOT NULL,
    seq INTEGER,
    reason TEXT NOT NULL,
    content BLOB,
    ts TEXT NOT NULL
)""",
}
"""Tables created the first time something is written to them (a ledger without damage
keeps exactly the pages it always had)."""


def ensure_table(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(ON_DEMAND[name])


SPLIT_KINDS: Final = ("meter_sample", "bms_process")
"""Kinds whose bodies live in ``body_<kind>`` (the kinds retention may drop, first to last)."""

DATA_EXPR: Final = (
    "CASE WHEN r.data IS NULL THEN NULL WHEN length(r.data) > 0 THEN r.data "
    + " ".join(
        f"WHEN r.kind = '{kind}' THEN (SELECT data FROM body_{kind} b WHERE b.seq = r.seq)"
        for kind in SPLIT_KINDS
    )
    + " END"
)
"""The hashed bytes of record ``r`` wherever they live; NULL for a dropped record."""

WAL_LIMIT_BYTES: Final = 4 * 1024 * 1024
"""The writer checkpoints the WAL into the main file once it is larger than this (or than
an eighth of the size cap, when that is smaller: the cap counts the WAL too)."""


def wal_limit(size_cap_bytes: int | None) -> int:
    if size_cap_bytes is None:
        return WAL_LIMIT_BYTES
    return max(64 * 1024, min(WAL_LIMIT_BYTES, size_cap_bytes // 8))


def connect(
    path: Path, *, writer: bool, exclusive: bool = False, limit: int = WAL_LIMIT_BYTES
) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL``; autocommit off for the writer.

    The writer checkpoints the WAL itself (:mod:`agent.ledger.writer`), so SQLite's automatic
    checkpoints are off. ``exclusive`` keeps the WAL index in memory instead of the ``-shm``
    file: the only way to open a ledger on a full disk (no other connection can then read).
    """
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30.0, cached_statements=64
    )
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        if exclusive:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        if writer:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise UserError(f"ledger {path}: cannot switch SQLite to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA journal_size_limit={limit}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            conn.execute("PRAGMA query_only=1")
    except BaseException:
        conn.close()
        raise
    return conn


def is_corrupt(exc: BaseException) -> bool:
    """An SQLite error that means a damaged file (not a busy or full one)."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc)


def is_space_error(exc: BaseException) -> bool:
    """An SQLite error that means the disk is full (or cannot grow a file)."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name in ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMMAP") or (
        "full" in str(exc).lower()
    )


CONNECTOR_INDEX: Final = (
    "CREATE INDEX IF NOT EXISTS records_connector ON records (kind, connector_id, seq) "
    "WHERE connector_id IS NOT NULL"
)
"""Serves the per-connector lookups of a start (the newest order, sample or event of each
connector), which would otherwise walk every record of the kind. Built with the schema of a
new ledger; a ledger made by an older release gets it once, from the writer after the open
(:func:`add_connector_index`)."""


def add_connector_index(conn: sqlite3.Connection) -> float | None:
    """Build the index if it is missing (inside the writer's commit); seconds it took, None
    when it was there or could not be built. A failure (a disk too full for it) is logged and
    leaves the records' commit alone: the lookups stay correct without the index, only slower;
    the next open tries again."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'records_connector'"
    ).fetchone()
    if found is not None:
        return None
    started = time.monotonic()
    log.info("ledger: adding the per-connector index (once, after an update)")
    try:
        conn.execute("SAVEPOINT connector_index")
        conn.execute(CONNECTOR_INDEX)
        conn.execute("RELEASE connector_index")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK TO connector_index")
            conn.execute("RELEASE connector_index")
        log.warning("ledger: per-connector index not added (%s); start-up lookups are slower", exc)
        return None
    took = time.monotonic() - started
    log.info("ledger: per-connector index added in %.1f s", took)
    return took


def connector_index_op() -> Callable[[sqlite3.Connection], float | None]:
    """:func:`add_connector_index` as a writer op that tries once: when its commit is retried
    (a full disk) it does nothing, so the records never wait for the index."""
    tried = False

    def op(conn: sqlite3.Connection) -> float | None:
        nonlocal tried
        if tried:
            return None
        tried = True
        return add_connector_index(conn)

    return op


def create_schema(conn: sqlite3.Connection, gateway_id: str) -> None:
    """Tables, indexes and meta in one transaction: a reader never sees a ledger without its
    gateway id (e.g. `evgw ledger export` racing the first start)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('gateway_id', ?)", (gateway_id,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', '0')")
        if conn.execute("SELECT max(seq) FROM records").fetchone()[0] is None:
            conn.execute(CONNECTOR_INDEX)  # a new ledger: instant
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def stored_gateway_id(path: Path) -> str | None:
    """The gateway id kept in an existing ledger, or ``None`` for a new/empty file."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return read_meta(conn).get("gateway_id")
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def size_on_disk(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def pages_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database pages in use (free pages are reused, so they do not count)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(page_size * (pages - free))


def wal_bytes(conn: sqlite3.Connection) -> int:
    """Size of the connection's WAL file (0 when there is none)."""
    name = conn.execute("PRAGMA database_list").fetchone()[2]
    try:
        return os.stat(f"{name}-wal").st_size if name else 0
    except FileNotFoundError:
        return 0


def used_bytes(conn: sqlite3.Connection) -> int:
    """What the size cap counts: the pages in use plus the WAL."""
    return pages_bytes(conn) + wal_bytes(conn)


class WriterLock:
    """An exclusive lock on ``<ledger>.lock``: one writing process per ledger file."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = ledger_path
        self.path = ledger_path.with_name(ledger_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise UserError(
                f"ledger {self.ledger_path} is open for writing by another process "
                "(is the evgw service running? stop it with `systemctl stop evgw` first, or "
                "work on a copy of the ledger)"
            ) from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
