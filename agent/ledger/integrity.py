"""The full integrity check, in the background once the ledger is open (issue 15 §6).

Start-up checks only what costs the same at any size (:mod:`agent.ledger.recovery`); this
thread checks the rest, at the lowest CPU and I/O priority, on a read-only connection of its
own: SQLite's ``PRAGMA quick_check`` (every page and index), every record's hash and link from
the oldest to the newest (declared gaps accepted), and every checkpoint's signature. The
ledger then rebuilds the file while running when records are damaged
(:mod:`agent.ledger.live`), and quarantines a checkpoint whose signature fails (the records
it covered are vouched for by the next checkpoint).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import os
import platform
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.ledger.chain import checkpoint_payload
from agent.ledger.keys import PublicKey
from agent.ledger.recovery import bad_link, bad_row
from agent.ledger.store import DATA_EXPR

_CHUNK: Final = 2000
_MAX_PROBLEMS: Final = 20
_IOPRIO_SET: Final = {"x86_64": 251, "aarch64": 30, "armv7l": 314, "armv6l": 314, "i686": 289}
_IOPRIO_WHO_PROCESS: Final = 1
_IOPRIO_IDLE: Final = 3 << 13


@dataclass(slots=True)
class Integrity:
    """What the background check found."""

    problems: list[str] = field(default_factory=list)
    """Damage to records or pages: the file is rebuilt."""
    bad_checkpoints: list[tuple[int, int, str]] = field(default_factory=list)
    """``(checkpoint id, seq, reason)`` of checkpoints to quarantine."""
    records: int = 0
    seconds: float = 0.0


def lower_priority() -> None:
    """Nice 19 and the idle I/O class for the calling thread (Linux; best effort)."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    number = _IOPRIO_SET.get(platform.machine())
    if number is not None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall(number, _IOPRIO_WHO_PROCESS, tid, _IOPRIO_IDLE)


class Background:
    """The check's thread: starts after ``delay_s``, hands its result to ``done``."""

    def __init__(
        self,
        path: Path,
        gateway_id: str,
        keys: Sequence[PublicKey],
        delay_s: float,
        done: Callable[[Integrity], None],
    ) -> None:
        self._args = (path, gateway_id, list(keys))
        self._delay_s = delay_s
        self._done = done
        self._stop = threading.Event()
        self._conn: list[sqlite3.Connection] = []
        self._thread = threading.Thread(target=self._run, name="ledger-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Abandon the check (the ledger closes); waits for the thread."""
        self._stop.set()
        for conn in list(self._conn):
            with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
                conn.interrupt()
        self._thread.join()

    def _run(self) -> None:
        if self._stop.wait(self._delay_s):
            return
        lower_priority()
        result = check(*self._args, stop=self._stop, opened=self._conn.append)
        if not self._stop.is_set():
            self._done(result)


def check(
    path: Path,
    gateway_id: str,
    keys: Sequence[PublicKey],
    *,
    stop: threading.Event | None = None,
    opened: Callable[[sqlite3.Connection], None] | None = None,
) -> Integrity:
    """Check every page, record and checkpoint of the ledger at ``path``."""
    started = time.monotonic()
    found = Integrity()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        found.problems.append(f"cannot open the ledger for the integrity check: {exc}")
        return found
    if opened is not None:
        opened(conn)
    try:
        pages = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({_MAX_PROBLEMS})")]
        if pages != ["ok"]:
            found.problems.append("quick_check: " + "; ".join(pages))
        _walk(conn, found, stop)
        _signatures(conn, gateway_id, keys, found)
    except sqlite3.OperationalError as exc:
        if stop is None or not stop.is_set():  # interrupted at close: no finding
            found.problems.append(f"SQLite error during the integrity check: {exc}")
    except sqlite3.DatabaseError as exc:
        found.problems.append(f"SQLite error during the integrity check: {exc}")
    finally:
        conn.close()
    found.seconds = time.monotonic() - started
    return found


def _walk(conn: sqlite3.Connection, found: Integrity, stop: threading.Event | None) -> None:
    before: tuple[int, bytes, bytes] | None = None
    after = -1
    while len(found.problems) < _MAX_PROBLEMS and not (stop and stop.is_set()):
        try:
            rows = conn.execute(
                f"SELECT r.seq, r.prev, r.hash, {DATA_EXPR} FROM records r WHERE r.seq > ? "
                "ORDER BY r.seq LIMIT ?",
                (after, _CHUNK),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            found.problems.append(f"records after seq {max(after, 0)} cannot be read ({exc})")
            return
        if not rows:
            return
        for seq, prev, digest, data in rows:
            bad = bad_row(seq, prev, digest, data)
            if bad is None and before is not None and not _deleted_since(conn, before, seq):
                bad = bad_link(conn, before, (seq, prev, data))
            if bad:
                found.problems.append(bad)
            before = (seq, prev, digest)
        found.records += len(rows)
        after = rows[-1][0]
        time.sleep(0.001)  # let the service's threads have the interpreter


def _deleted_since(conn: sqlite3.Connection, before: tuple[int, bytes, bytes], seq: int) -> bool:
    """Retention deleted the records between ``before`` and ``seq`` during the walk."""
    if seq == before[0] + 1:
        return False
    first = conn.execute("SELECT min(seq) FROM records").fetchone()[0]
    return first is not None and first >= seq


def _signatures(
    conn: sqlite3.Connection, gateway_id: str, trusted: Sequence[PublicKey], found: Integrity
) -> None:
    keys = {k.fingerprint: k for k in trusted}
    for key_id, der in conn.execute("SELECT key_id, public_der FROM keys"):
        public = PublicKey.parse(der)
        if public is not None and public.fingerprint == key_id:
            keys[key_id] = public
    after = 0
    while True:
        rows = conn.execute(
            "SELECT id, seq, hash, ts, key_id, sig FROM checkpoints WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after, _CHUNK),
        ).fetchall()
        if not rows:
            return
        for cid, seq, digest, ts, key_id, sig in rows:
            reason = _checkpoint_problem(keys.get(key_id), gateway_id, seq, digest, ts, sig)
            if reason:
                found.bad_checkpoints.append((cid, seq, reason))
        after = rows[-1][0]
        time.sleep(0.001)


def _checkpoint_problem(
    key: PublicKey | None, gateway_id: str, seq: int, digest: object, ts: object, sig: object
) -> str | None:
    if key is None:
        return "signed by a key the ledger does not hold"
    if not (isinstance(digest, bytes) and isinstance(ts, str) and isinstance(sig, str)):
        return "the checkpoint row is garbled"
    try:
        signature = base64.b64decode(sig, validate=True)
    except (ValueError, binascii.Error):
        return "the signature is not Base64"
    payload = checkpoint_payload(gateway_id, seq, digest.hex(), ts)
    return None if key.verify(signature, payload) else "the signature does not verify"
