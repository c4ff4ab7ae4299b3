"""Opening the ledger file: the start-up check, recovery if needed, and where the chain stands.

:func:`prepare` runs in a thread before the writer starts. It never gives up on damage: a
damaged file is rebuilt (:func:`agent.ledger.recovery.recover`), damaged signatures and keys
rows are quarantined (:mod:`agent.ledger.quarantine`), and a full disk opens the file with its
WAL index in memory (no ``-shm`` to create; reads then go through the writer). Only a wrong
gateway id, a missing directory, or a file that cannot be opened nor rebuilt stop the open.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agent.errors import UserError
from agent.ledger import recovery
from agent.ledger.batch import Chain
from agent.ledger.chain import GENESIS
from agent.ledger.keys import GatewayKey
from agent.ledger.losses import Loss
from agent.ledger.quarantine import set_aside_at_open
from agent.ledger.recovery import Recovery
from agent.ledger.salvage import Progress
from agent.ledger.state import Abandoned, State, read_state
from agent.ledger.store import connect, create_schema, is_space_error, read_meta, wal_limit

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class Opened:
    conn: sqlite3.Connection
    gateway_id: str
    exclusive: bool
    chain: Chain
    cursors: dict[str, int]
    recovery: Recovery | None = None
    damage: str | None = None
    """Damage found that could not be repaired at open (rebuilt later, while running)."""
    notes: list[str] = field(default_factory=list)
    """Rows quarantined at open."""
    abandoned: Abandoned | None = None


def _connect(path: Path, limit: int) -> tuple[sqlite3.Connection, bool]:
    try:
        return connect(path, writer=True, limit=limit), False
    except sqlite3.OperationalError as exc:
        if not is_space_error(exc):
            raise
        log.error(
            "ledger %s: the disk is full (%s); opening with the WAL index in memory", path, exc
        )
        return connect(path, writer=True, exclusive=True, limit=limit), True


_NO_ROOM = "no room for the -shm file"


class _Guard:
    """A read-only connection held open through the open (and any salvage): the start-up
    check runs on it, and while it is open no other connection's close is the last one, the
    one that folds the WAL into the file — a damaged file and its WAL reach salvage, and the
    ``.corrupt-`` copy, exactly as they were."""

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection | None = None
        if path.exists() and path.stat().st_size:
            try:
                self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            except sqlite3.Error as exc:
                self.problem: str | None = f"SQLite cannot open the file: {exc}"
                return
        self.problem = None

    def inspect(self, state: State | None) -> str | None:
        if self.conn is None:
            return self.problem
        try:
            return recovery.tail_problem(self.conn, state)
        except sqlite3.DatabaseError as exc:
            return _NO_ROOM if is_space_error(exc) else f"SQLite error: {exc}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _checked(
    path: Path, state: State | None, limit: int, guard: _Guard
) -> tuple[sqlite3.Connection | None, bool, str | None]:
    """A writer connection when the start-up check passed, else the damage it found.

    On a full disk the check runs on the writer connection itself (the read-only one needs a
    ``-shm``); that connection is then returned with the damage, to be closed after salvage.
    """
    problem = recovery.before_open(path, state) or guard.inspect(state)
    if problem is not None and problem != _NO_ROOM:
        return None, False, problem
    if problem == _NO_ROOM:
        guard.close()  # it would keep the exclusive writer out, and guards nothing here
    try:
        conn, exclusive = _connect(path, limit)
    except sqlite3.DatabaseError as exc:
        return None, False, f"SQLite cannot open the file: {exc}"
    if problem == _NO_ROOM:
        try:
            problem = recovery.tail_problem(conn, state)
        except sqlite3.DatabaseError as exc:
            problem = f"SQLite error: {exc}"
    return conn, exclusive, problem


def prepare(
    path: Path,
    *,
    gateway_id: str | None,
    station_id: str | None,
    key: GatewayKey,
    size_cap_bytes: int | None,
    progress: Progress = None,
) -> Opened:
    """Check (and if needed recover) the ledger at ``path``; see the module docstring.

    ``progress`` hears every few seconds how a salvage goes (it can take minutes)."""
    if not path.parent.is_dir():
        raise UserError(
            f"ledger directory {path.parent} does not exist; create it "
            "(the packaged tmpfiles.d snippet does) or fix ledger.path in the config"
        )
    limit = wal_limit(size_cap_bytes)
    recovery.finish_interrupted(path)
    guard = _Guard(path)
    try:
        return _prepare(path, gateway_id, station_id, key, limit, guard, progress)
    finally:
        guard.close()


def _prepare(
    path: Path,
    gateway_id: str | None,
    station_id: str | None,
    key: GatewayKey,
    limit: int,
    guard: _Guard,
    progress: Progress,
) -> Opened:
    state = read_state(path)
    conn, exclusive, problem = _checked(path, state, limit, guard)
    if problem is None:
        opened = _positioned(conn, path, gateway_id, key, state, exclusive)
        if isinstance(opened, Opened):
            return opened
        conn, problem = None, opened
    log.error("ledger %s failed its start-up check: %s", path, problem)
    try:
        found, _plan = recovery.recover(
            path, reason=problem, gateway_id=gateway_id, station_id=station_id,
            state=state, keys=[key.public], progress=progress,
        )  # fmt: skip
    except (OSError, sqlite3.Error) as exc:
        if conn is not None:
            conn.close()
        return _damaged(path, gateway_id, key, state, limit, problem, exc)
    if conn is not None:  # the guard is still open: this close does not fold the WAL in
        conn.close()
    guard.close()
    fresh = _Guard(path)
    try:
        conn, exclusive, again = _checked(path, None, limit, fresh)
        if again is not None and conn is not None:
            conn.close()
        rebuilt = again or _positioned(conn, path, gateway_id, key, None, exclusive)
    finally:
        fresh.close()
    if not isinstance(rebuilt, Opened):
        raise UserError(f"ledger {path}: the rebuilt file does not open ({rebuilt})")
    rebuilt.recovery = found
    return rebuilt


def _damaged(
    path: Path,
    gateway_id: str | None,
    key: GatewayKey,
    state: State | None,
    limit: int,
    problem: str,
    exc: BaseException,
) -> Opened:
    """No rebuild possible now (no room): run on the damaged file if it can be read."""
    log.error("ledger %s: cannot rebuild now (%s); running on the damaged file", path, exc)
    try:
        conn, exclusive = _connect(path, limit)
    except sqlite3.DatabaseError:
        conn, exclusive = None, False
    kept = _positioned(conn, path, gateway_id, key, state, exclusive)
    if not isinstance(kept, Opened):
        raise UserError(
            f"ledger {path} is damaged ({problem}) and cannot be rebuilt ({exc}); "
            "free space on its filesystem, or move the file aside"
        ) from exc
    kept.damage = problem
    return kept


def _positioned(
    conn: sqlite3.Connection | None,
    path: Path,
    gateway_id: str | None,
    key: GatewayKey,
    state: State | None,
    exclusive: bool,
) -> Opened | str:
    """Where the chain stands, or the damage that stops reading it (the connection closed)."""
    if conn is None:
        return "the ledger file cannot be opened"
    try:
        return _position(conn, path, gateway_id, key, state, exclusive)
    except sqlite3.DatabaseError as exc:
        conn.close()
        return f"SQLite error: {exc}"
    except BaseException:
        conn.close()
        raise


def _position(
    conn: sqlite3.Connection,
    path: Path,
    gateway_id: str | None,
    key: GatewayKey,
    state: State | None,
    exclusive: bool,
) -> Opened:
    """Where the chain stands; quarantines damaged signature and key rows."""
    meta = read_meta(conn)
    stored_id = meta.get("gateway_id")
    if stored_id is None and gateway_id is None:
        raise UserError(
            f"ledger {path} is new: give the gateway id (--gateway-id, or "
            "gateway.gateway_id in the config)"
        )
    if stored_id is not None and gateway_id is not None and stored_id != gateway_id:
        raise UserError(
            f"ledger {path} belongs to gateway {stored_id!r}, not {gateway_id!r}; "
            "fix gateway.gateway_id in the config or point ledger.path elsewhere"
        )
    gw = stored_id or gateway_id or ""
    _write_or_log(lambda: create_schema(conn, gw), "schema")
    meta = read_meta(conn)
    last = conn.execute("SELECT seq, hash FROM records WHERE seq = (SELECT max(seq) FROM records)")
    row = last.fetchone()
    chain = Chain(last_seq=int(row[0]) if row else 0, last_hash=bytes(row[1]) if row else GENESIS)
    epoch = meta.get("epoch", "0")
    chain.epoch = int(epoch) if epoch.isdigit() and len(epoch) < 10 else 0
    chain.last_checkpoint_seq = int(
        conn.execute("SELECT coalesce(max(seq), 0) FROM checkpoints").fetchone()[0]
    )
    floor = meta.get("deleted_below", "0")
    chain.deleted_below = int(floor) if floor.isdigit() and len(floor) < 19 else 0
    opened = Opened(
        conn, gw, exclusive, chain, dict(conn.execute("SELECT uplink, seq FROM cursors"))
    )
    if state is not None and state.gateway_id == gw and state.last_seq == chain.last_seq:
        chain.counts = dict(state.counts)
        chain.epoch = max(chain.epoch, state.epoch)
        chain.deleted_below = max(chain.deleted_below, state.deleted_below)
        if state.abandoned is not None and state.abandoned.to_seq > chain.last_seq:
            opened.abandoned = state.abandoned
            chain.next_seq = state.abandoned.to_seq + 1
    notes = _write_or_log(lambda: set_aside_at_open(conn, gw, key), "quarantine")
    opened.notes = notes or []
    _write_or_log(
        lambda: conn.execute(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?)",
            (key.fingerprint, key.public.der, chain.last_seq + 1),
        ),
        "key",
    )
    _write_or_log(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"), "WAL checkpoint")
    return opened


def _write_or_log(write: Callable[[], T], what: str) -> T | None:
    """Run a write of the open; on a full disk or an I/O error, say so and go on."""
    try:
        return write()
    except sqlite3.OperationalError as exc:
        log.warning("ledger: %s not written at open (%s); will be at a later open", what, exc)
        return None


def lost_event_body(gone: Abandoned) -> dict[str, object]:
    """The ``records_lost`` event for records a stop could not write."""
    count = gone.to_seq - gone.from_seq + 1
    loss = Loss(gone.from_seq, gone.to_seq, dict(gone.kinds), count - sum(gone.kinds.values()))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(gone.kinds.items()))
    return {
        "event": "records_lost",
        "message": f"{count} records could not be written at the last stop ({kinds})"[:255],
        "reason": "the disk was full when the gateway stopped",
        "lost_from_seq": gone.from_seq,
        "lost_to_seq": gone.to_seq,
        "lost_count": count,
        "lost": [loss.as_body()],
        "dropped": list(gone.dropped),
    }
