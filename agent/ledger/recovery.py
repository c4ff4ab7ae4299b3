"""Start-up check of the ledger file, and recovery from damage (issue 12).

The start-up check costs the same at any ledger size: the file header and size
(:func:`agent.ledger.pages.header_problem`), SQLite's own WAL recovery, the last
:data:`TAIL_RECORDS` records' hashes and links (gaps must have been declared), and the chain's
end against the state file (:mod:`agent.ledger.state`) — a ledger that ends before the seq the
state file recorded lost its WAL, or was truncated. The full integrity check runs later, in
the background (:mod:`agent.ledger.integrity`).

When the check finds damage, :func:`recover` salvages every row that still verifies, page by
page, from the file and its WAL (:mod:`agent.ledger.salvage`, :mod:`agent.ledger.rebuild`),
writes a new file that ends with an ``event`` ``ledger_recovered`` declaring exactly which
seqs were lost (per kind where anything still tells) and starting a new chain epoch, keeps
the damaged file as ``<ledger>.corrupt-<UTC time>``, and puts the new file in its place.
Seqs never go back, and the declared gaps are accepted by every later check, so a recovery
runs once per damage and never drops what was written after it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from agent.ledger.batch import Row, insert_rows, make_row
from agent.ledger.chain import link_hash
from agent.ledger.keys import PublicKey
from agent.ledger.losses import EVENT, Loss, declared_by
from agent.ledger.pages import header_problem
from agent.ledger.rebuild import Plan, build
from agent.ledger.salvage import Progress, collect, inner, open_stage
from agent.ledger.state import State
from agent.ledger.store import DATA_EXPR, ensure_table
from agent.records.envelope import Record, iso_ts

log = logging.getLogger(__name__)

TAIL_RECORDS: Final = 256
"""Records whose hash and link the start-up check verifies (the background check does all)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a recovery did; the same facts are in its ``ledger_recovered`` event."""

    reason: str
    moved_to: Path | None
    epoch: int
    salvaged: int
    last_good_seq: int
    last_good_hash: str
    event_seq: int
    losses: tuple[Loss, ...]

    @property
    def lost(self) -> int:
        return sum(loss.count for loss in self.losses)

    @property
    def lost_from_seq(self) -> int | None:
        return self.losses[0].from_seq if self.losses else None

    @property
    def lost_to_seq(self) -> int | None:
        return self.losses[-1].to_seq if self.losses else None

    def message(self) -> str:
        lost = "; ".join(_describe(loss) for loss in self.losses[:5]) or "nothing"
        if len(self.losses) > 5:
            lost += f"; … {len(self.losses) - 5} more ranges"
        kept = f"kept as {self.moved_to}" if self.moved_to else "gone"
        return (
            f"ledger was damaged ({self.reason}); {self.salvaged} records salvaged, "
            f"{self.lost} lost ({lost}); chain epoch {self.epoch} from seq {self.event_seq}; "
            f"the damaged file is {kept}"
        )


def _describe(loss: Loss) -> str:
    kinds = [f"{kind} {n}" for kind, n in sorted(loss.kinds.items())]
    if loss.unknown_kind:
        kinds.append(f"unknown kind {loss.unknown_kind}")
    span = f"seq {loss.from_seq}" if loss.count == 1 else f"seq {loss.from_seq}..{loss.to_seq}"
    return f"{span}: {', '.join(kinds)}"


def rebuild_path(path: Path) -> Path:
    return path.with_name(path.name + ".rebuild")


def _stage_path(path: Path) -> Path:
    return path.with_name(path.name + ".salvage-stage")


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def finish_interrupted(path: Path) -> None:
    """Complete a rebuild a crash interrupted between its two renames, or discard it."""
    tmp = rebuild_path(path)
    if tmp.exists():
        if path.exists():
            _remove(tmp)  # the damaged file is still in place: the rebuild runs again
        else:
            os.rename(tmp, path)
            _fsync_dir(path.parent)
    _remove(_stage_path(path))


def before_open(path: Path, state: State | None) -> str | None:
    """Damage visible before SQLite opens the file: missing, empty, bad header, truncated."""
    wal = Path(f"{path}-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        what = "missing" if not path.exists() else "empty (0 bytes)"
        if state is not None and state.last_seq > 0:
            return f"the ledger file is {what}, but records up to seq {state.last_seq} were written"
        if wal_size:
            return f"the ledger file is {what}, but its WAL holds {wal_size} bytes"
        return None
    return header_problem(path)


def tail_problem(conn: sqlite3.Connection, state: State | None) -> str | None:
    """Damage at the chain's end, or an end before the one the state file recorded."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "records" not in tables:
        if state is not None and state.last_seq > 0:
            return (
                "the ledger has no records table, but records up to seq "
                f"{state.last_seq} were written"
            )
        return None if not tables or tables <= {"meta"} else "not an evgw ledger (no records table)"
    rows = conn.execute(
        f"SELECT r.seq, r.prev, r.hash, {DATA_EXPR} FROM records r "
        "WHERE r.seq > (SELECT max(seq) FROM records) - ? ORDER BY r.seq DESC",
        (TAIL_RECORDS,),
    ).fetchall()
    rows.reverse()
    for i, (seq, prev, digest, data) in enumerate(rows):
        bad = bad_row(seq, prev, digest, data)
        if bad is None and i:
            bad = bad_link(conn, rows[i - 1], (seq, prev, data))
        if bad:
            return bad
    last = (rows[-1][0], rows[-1][2]) if rows else (0, b"")
    return _behind_state(last, state)


def bad_row(seq: int, prev: bytes, digest: bytes, data: bytes | None) -> str | None:
    if data is None:
        return None
    if link_hash(prev, data) != digest:
        return f"record {seq}: stored hash does not match its content"
    parsed = inner(data)
    if parsed is None:
        return f"record {seq}: content is not valid JSON"
    if parsed.seq != seq:
        return f"record {seq}: content says seq {parsed.seq}"
    return None


def bad_link(
    conn: sqlite3.Connection, before: tuple[Any, ...], row: tuple[int, bytes, bytes | None]
) -> str | None:
    seq, prev, data = row
    if seq == before[0] + 1:
        if prev != before[2]:
            return f"record {seq}: prev does not match the hash of record {before[0]}"
        return None
    low, high = before[0] + 1, seq - 1
    if gap_declared(conn, low, high) or (prev == before[2] and _declares(data, low, high)):
        return None
    return f"records {low}..{high} are missing and no event declares them lost"


def _declares(data: bytes | None, low: int, high: int) -> bool:
    """Whether ``data`` is an event declaring ``low..high`` lost (ledgers before ``losses``)."""
    if not data:
        return False
    try:
        event = EVENT.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return any(a <= low and high <= b for a, b, _seq in declared_by(event))


def gap_declared(conn: sqlite3.Connection, low: int, high: int) -> bool:
    """Whether declared losses (the ``losses`` table) cover every seq ``low..high``."""
    try:
        ranges = conn.execute(
            "SELECT from_seq, to_seq FROM losses WHERE from_seq <= ? AND to_seq >= ? "
            "ORDER BY from_seq",
            (high, low),
        ).fetchall()
    except sqlite3.OperationalError:  # a ledger from before the losses table
        return False
    covered = low
    for a, b in ranges:
        if a > covered:
            return False
        covered = max(covered, b + 1)
    return covered > high


def _behind_state(last: tuple[int, bytes], state: State | None) -> str | None:
    if state is None:
        return None
    seq, digest = last
    if seq < state.last_seq:
        return (
            f"the ledger ends at seq {seq}, but records up to seq {state.last_seq} were "
            "written (its WAL was lost or damaged, or the file was cut short)"
        )
    if seq == state.last_seq and seq and digest.hex() != state.last_hash:
        return f"record {seq} is not the record the ledger wrote at that seq"
    return None


def aside_name(path: Path) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{target}{s}").exists() for s in ("", "-wal")):
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    return target


def swap(path: Path, tmp: Path, aside: Path) -> None:
    """Move the damaged file (and its WAL) to ``aside``, then the rebuilt one in its place."""
    for suffix in ("-wal", "-shm", ""):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.rename(src, Path(f"{aside}{suffix}"))
    _fsync_dir(path.parent)
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def salvage_into(
    path: Path, tmp: Path, *, gateway_id: str | None, state: State | None,
    keys: Sequence[PublicKey], progress: Progress = None,
) -> Plan:  # fmt: skip
    """Stage what ``path`` (and its WAL) still holds and build the new ledger at ``tmp``."""
    stage_file = _stage_path(path)
    stage = open_stage(stage_file)
    try:
        found = collect(path, stage, progress)
        log.info(
            "ledger salvage of %s: %d pages, %d rows read, %d unparseable, %d WAL commits "
            "SQLite would not replay",
            path, found.pages, found.cells, found.bad_cells, found.wal_commits_lost,
        )  # fmt: skip
        return build(stage, tmp, gateway_id=gateway_id, state=state, keys=keys, progress=progress)
    finally:
        stage.close()
        _remove(stage_file)


def recovery_body(
    plan: Plan, reason: str, previous_file: Path | None, follows: tuple[int, bytes]
) -> dict[str, Any]:
    """The body of the ``ledger_recovered`` event that starts epoch ``plan.epoch``."""
    return {
        "event": "ledger_recovered",
        "message": f"ledger recovered from damage: {reason}"[:255],
        "reason": reason,
        "epoch": plan.epoch,
        "previous_epoch": plan.previous_epoch,
        "previous_file": None if previous_file is None else str(previous_file),
        "salvaged": plan.kept,
        "last_good_seq": follows[0],
        "last_good_hash": follows[1].hex(),
        "lost_from_seq": plan.losses[0].from_seq if plan.losses else None,
        "lost_to_seq": plan.losses[-1].to_seq if plan.losses else None,
        "lost_count": plan.lost,
        "lost": [loss.as_body() for loss in plan.losses],
    }


def record_losses(conn: sqlite3.Connection, losses: Sequence[Loss], event_seq: int) -> None:
    ensure_table(conn, "losses")
    conn.executemany(
        "INSERT OR REPLACE INTO losses VALUES (?, ?, ?)",
        [(loss.from_seq, loss.to_seq, event_seq) for loss in losses],
    )


def _seal(tmp: Path, plan: Plan, row: Row) -> None:
    """Append the recovery event (and the losses it declares) to the rebuilt file."""
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, [row])
        record_losses(conn, plan.losses, row[0])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (str(plan.epoch),))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def recover(
    path: Path,
    *,
    reason: str,
    gateway_id: str | None,
    station_id: str | None,
    state: State | None,
    keys: Sequence[PublicKey],
    progress: Progress = None,
) -> tuple[Recovery, Plan]:
    """Salvage ``path`` into a new ledger in its place (the ledger is not open); see above."""
    tmp = rebuild_path(path)
    plan = salvage_into(path, tmp, gateway_id=gateway_id, state=state, keys=keys, progress=progress)
    aside = aside_name(path) if path.exists() or Path(f"{path}-wal").exists() else None
    follows = (plan.last_seq, plan.last_hash)
    event = Record(
        kind="event",
        ts=iso_ts(time.time()),
        station_id=station_id or plan.gateway_id,
        body=recovery_body(plan, reason, aside, follows),
    )
    row = make_row(event, plan.top + 1, plan.gateway_id, plan.last_hash, plan.epoch)
    _seal(tmp, plan, row)
    if aside is not None:
        swap(path, tmp, aside)
    else:
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    recovery = Recovery(
        reason, aside, plan.epoch, plan.kept, plan.last_seq, plan.last_hash.hex(), row[0],
        tuple(plan.losses),
    )  # fmt: skip
    return recovery, plan
