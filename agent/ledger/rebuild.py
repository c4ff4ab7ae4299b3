"""Salvage, step 2: pick the version of each seq that verifies and write a new ledger file.

Input is the scratch database :func:`agent.ledger.salvage.collect` filled. Rows are read in
seq order and each seq keeps the version that verifies:

- a record whose content matches its own hash (its JSON also names its seq), or whose split
  body does; a stub (body dropped by retention) when it links to its neighbours;
- a record whose row was lost but whose split body survived is rebuilt from the previous
  record's hash, and kept when the next record's ``prev`` confirms it.

Every seq between the retention floor and the highest seq the ledger ever had that is not
kept, and not declared lost before, is a new loss; each maximal run is declared with the
kinds any surviving index, row or body names, and for the newest part (the WAL's) with the
per-kind counts the state file kept (:mod:`agent.ledger.state`). Checkpoints are kept when
their record is and their signature verifies; keys when their id is their fingerprint;
cursors (never past the highest seq) and parks as found.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import itertools
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from agent.ledger.batch import INSERT_BODY, INSERT_RECORD
from agent.ledger.chain import GENESIS, checkpoint_payload, link_hash, parse_record_id
from agent.ledger.keys import PublicKey
from agent.ledger.losses import EVENT, Loss, declared_by, losses_of, subtract
from agent.ledger.salvage import Progress, Ticker, inner
from agent.ledger.state import State
from agent.ledger.store import SPLIT_KINDS, create_schema, ensure_table

_EVIDENCE_MARGIN: Final = 100_000
"""How far past the last verified record an index entry may prove that records existed."""
_FLUSH: Final = 5000

Row = tuple[int, str, str | None, str | None, bytes, bytes, bytes | None]
"""``(seq, kind, session_id, connector_id, prev, hash, data)``; data None: a stub."""


@dataclass(slots=True)
class Plan:
    """What a rebuild found and wrote (the new file has no recovery event yet)."""

    gateway_id: str
    previous_epoch: int
    kept: int = 0
    last_seq: int = 0
    last_hash: bytes = GENESIS
    top: int = 0
    """The highest seq the damaged ledger ever had: new records go after it."""
    losses: list[Loss] = field(default_factory=list)
    declared: list[tuple[int, int, int]] = field(default_factory=list)
    """Earlier declared losses ``(from_seq, to_seq, event_seq)``, kept in the new file."""

    @property
    def epoch(self) -> int:
        return self.previous_epoch + 1

    @property
    def lost(self) -> int:
        return sum(loss.count for loss in self.losses)


@dataclass(slots=True)
class _Facts:
    gateway_id: str
    state: State | None = None
    """The state file, when it belongs to this gateway's ledger."""
    epoch: int = 0
    floor: int = 1
    top: int = 0
    declared: list[tuple[int, int, int]] = field(default_factory=list)


def _facts(stage: sqlite3.Connection, gateway_id: str | None, state: State | None) -> _Facts:
    """Gateway id, epoch, retention floor, top seq and earlier declared losses."""
    meta: dict[str, list[str]] = {}
    for key, value in stage.execute("SELECT key, value FROM meta"):
        meta.setdefault(key, []).append(value)
    ids = Counter(meta.get("gateway_id", []))
    own = ids.most_common(1)[0][0] if ids else None
    facts = _Facts(
        own or (state.gateway_id if state and state.gateway_id else None) or gateway_id or "unknown"
    )
    trusted = state if state is not None and state.gateway_id == facts.gateway_id else None
    facts.state = trusted
    epochs = [int(v) for v in meta.get("epoch", []) if v.isdigit() and len(v) < 10]
    facts.epoch = max([*epochs, trusted.epoch if trusted else 0])
    floors = [trusted.deleted_below if trusted else 0]
    for (data,) in stage.execute("SELECT data FROM rows WHERE kind = 'event' AND ok = 1"):
        try:
            event = EVENT.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        facts.declared += declared_by(event)
        if event.body.acknowledged_deleted_below_seq is not None:
            floors.append(event.body.acknowledged_deleted_below_seq)
        parsed = parse_record_id(event.id)
        facts.epoch = max(facts.epoch, parsed[1] if parsed else 0, event.body.epoch or 0)
    last_verified = _last_verified(stage, facts)
    evidence = stage.execute(
        "SELECT max(seq) FROM kinds WHERE seq <= ?", (last_verified + _EVIDENCE_MARGIN,)
    ).fetchone()[0]
    facts.top = max(last_verified, evidence or 0, trusted.last_seq if trusted else 0)
    if trusted is not None and trusted.abandoned is not None:
        facts.top = max(facts.top, trusted.abandoned.to_seq)
    facts.floor = max(1, *floors)
    return facts


def _last_verified(stage: sqlite3.Connection, facts: _Facts) -> int:
    """The highest seq with verified content; its id also tells the newest epoch."""
    row = stage.execute("SELECT seq, data FROM rows WHERE ok = 1 ORDER BY seq DESC LIMIT 1")
    found = row.fetchone()
    body = stage.execute("SELECT seq, data FROM bodies ORDER BY seq DESC LIMIT 1").fetchone()
    best = 0
    for item in (found, body):
        if item is None:
            continue
        best = max(best, int(item[0]))
        parsed = inner(item[1])
        ident = parse_record_id(parsed.id) if parsed else None
        if ident is not None:
            facts.epoch = max(facts.epoch, ident[1])
    return best


def _stream(stage: sqlite3.Connection) -> Iterator[tuple[int, list[Row], list[bytes]]]:
    """``(seq, row versions, body versions)`` for every staged seq, in seq order."""
    rows = (
        (seq, 0, (seq, kind, session, connector, prev, digest, data) if ok or not data else None)
        for seq, kind, session, connector, prev, digest, data, ok in stage.execute(
            "SELECT seq, kind, session_id, connector_id, prev, hash, data, ok FROM rows "
            "ORDER BY seq"
        )
    )
    bodies = (
        (seq, 1, data) for seq, data in stage.execute("SELECT seq, data FROM bodies ORDER BY seq")
    )
    merged = heapq.merge(rows, bodies, key=lambda item: item[0])
    for seq, group in itertools.groupby(merged, key=lambda item: item[0]):
        found_rows: list[Row] = []
        found_bodies: list[bytes] = []
        for _seq, tag, item in group:
            if tag == 1:
                found_bodies.append(item)  # type: ignore[arg-type]
            elif item is not None:
                found_rows.append(item)  # type: ignore[arg-type]
        yield seq, found_rows, found_bodies


def _candidate(
    seq: int, rows: list[Row], bodies: list[bytes], prev: bytes | None
) -> tuple[Row, bytes | None, bool] | None:
    """The version to keep: ``(row, split body, verified)``; not verified: tentative."""
    stubs = [r for r in rows if r[6] is None]
    verified: list[tuple[Row, bytes | None]] = []
    for row in rows:
        if row[6] == b"":
            verified += [(row, b) for b in bodies if link_hash(row[4], b) == row[5]][:1]
        elif row[6] is not None:
            verified.append((row, None))
    if verified:
        pick = next((v for v in verified if v[0][4] == prev), verified[0])
        dropped = next((s for s in stubs if s[5] == pick[0][5]), None)
        return (dropped, None, True) if dropped else (pick[0], pick[1], True)
    if stubs:  # a stub's hash cannot be checked: it must link to the record before it
        linked = next((s for s in stubs if s[4] == prev), None)
        return (linked, None, True) if linked else (stubs[0], None, False)
    if prev is not None:
        for body in bodies:
            parsed = inner(body)
            if parsed is None or parsed.kind not in SPLIT_KINDS:
                continue
            row = _row_from_body(seq, parsed.kind, prev, body)
            return row, body, False
    return None


class _Session(msgspec.Struct):
    connector_id: str | None = None
    body: dict[str, Any] = {}


_SESSION: Final = msgspec.json.Decoder(_Session)


def _row_from_body(seq: int, kind: str, prev: bytes, body: bytes) -> Row:
    try:
        parsed = _SESSION.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        parsed = _Session()
    session = parsed.body.get("session_id")
    return (
        seq,
        kind,
        session if isinstance(session, str) else None,
        parsed.connector_id,
        prev,
        link_hash(prev, body),
        b"",
    )


class _Writer:
    """Writes kept rows in seq order into the new file; tracks the gaps between them."""

    def __init__(self, conn: sqlite3.Connection, window: tuple[int, int]) -> None:
        self.conn = conn
        self.last: tuple[int, bytes] | None = None
        self.tentative: list[tuple[Row, bytes | None]] = []
        self.gaps: list[tuple[int, int]] = []
        self.kept = 0
        self.window = window
        self.window_kinds: Counter[str] = Counter()
        self._rows: list[Row] = []
        self._bodies: dict[str, list[tuple[int, bytes]]] = {k: [] for k in SPLIT_KINDS}

    def prev_for(self, seq: int) -> bytes | None:
        if self.tentative and self.tentative[-1][0][0] == seq - 1:
            return self.tentative[-1][0][5]
        if self.last is not None and self.last[0] == seq - 1 and not self.tentative:
            return self.last[1]
        return None

    def offer(self, seq: int, rows: list[Row], bodies: list[bytes]) -> None:
        pick = _candidate(seq, rows, bodies, self.prev_for(seq))
        if pick is None:
            self.tentative.clear()
            return
        row, body, verified = pick
        if self.tentative and row[4] != self.tentative[-1][0][5]:
            self.tentative.clear()
        if not verified:
            self.tentative.append((row, body))
            return
        for held in self.tentative:
            self._keep(*held)
        self.tentative.clear()
        self._keep(row, body)

    def confirm_tail(self, confirmed: set[tuple[int, bytes]]) -> None:
        """Keep tentative rows at the end that a checkpoint or the state file vouches for."""
        for i in range(len(self.tentative) - 1, -1, -1):
            row = self.tentative[i][0]
            if (row[0], row[5]) in confirmed:
                for held in self.tentative[: i + 1]:
                    self._keep(*held)
                break
        self.tentative.clear()

    def _keep(self, row: Row, body: bytes | None) -> None:
        seq = row[0]
        expected = 1 if self.last is None else self.last[0] + 1
        if seq > expected:
            self.gaps.append((expected, seq - 1))
        self._rows.append(row if body is None else (*row[:6], b""))
        if body is not None:
            self._bodies[row[1]].append((seq, body))
        self.last = (seq, row[5])
        self.kept += 1
        if self.window[0] < seq <= self.window[1]:
            self.window_kinds[row[1]] += 1
        if len(self._rows) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        self.conn.executemany(INSERT_RECORD, self._rows)
        for kind, items in self._bodies.items():
            self.conn.executemany(INSERT_BODY[kind], items)
            items.clear()
        self._rows.clear()


def _copy_side_tables(conn: sqlite3.Connection, plan: Plan, trusted: Sequence[PublicKey]) -> None:
    keys: dict[str, PublicKey] = {k.fingerprint: k for k in trusted}
    for key_id, der, first in conn.execute("SELECT key_id, der, first_seq FROM stage.keys"):
        public = PublicKey.parse(der)
        if public is not None and public.fingerprint == key_id:
            keys[key_id] = public
            conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", (key_id, der, first))
    kept = []
    for seq, digest, ts, key_id, sig in conn.execute(
        "SELECT c.seq, c.hash, c.ts, c.key_id, c.sig FROM stage.checkpoints c "
        "JOIN records r ON r.seq = c.seq AND r.hash = c.hash ORDER BY c.seq"
    ).fetchall():
        key = keys.get(key_id)
        payload = checkpoint_payload(plan.gateway_id, seq, digest.hex(), ts)
        if key is not None and _signature_ok(key, sig, payload):
            kept.append((seq, digest, ts, key_id, sig))
    conn.executemany(
        "INSERT INTO checkpoints (seq, hash, ts, key_id, sig) VALUES (?, ?, ?, ?, ?)", kept
    )
    conn.execute("INSERT INTO cursors SELECT uplink, min(seq, ?) FROM stage.cursors", (plan.top,))
    conn.execute("INSERT OR IGNORE INTO parked SELECT * FROM stage.parked")
    if plan.declared:
        ensure_table(conn, "losses")
        conn.executemany("INSERT OR IGNORE INTO losses VALUES (?, ?, ?)", plan.declared)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (str(plan.previous_epoch),))


def _signature_ok(key: PublicKey, sig: str, payload: bytes) -> bool:
    try:
        return key.verify(base64.b64decode(sig, validate=True), payload)
    except (ValueError, binascii.Error):
        return False


def build(
    stage: sqlite3.Connection,
    target: Path,
    *,
    gateway_id: str | None,
    state: State | None,
    keys: Sequence[PublicKey] = (),
    progress: Progress = None,
) -> Plan:
    """Write a new ledger at ``target`` from what ``stage`` holds; see the module doc.

    ``keys`` are trusted besides the ``keys`` rows found (the gateway's current key).
    """
    facts = _facts(stage, gateway_id, state)
    state = facts.state
    plan = Plan(facts.gateway_id, facts.epoch, top=facts.top, declared=facts.declared)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        create_schema(conn, plan.gateway_id)
        stage_file = stage.execute("PRAGMA database_list").fetchone()[2]
        conn.execute("ATTACH DATABASE ? AS stage", (stage_file,))
        conn.execute("BEGIN")
        window = (state.checkpointed_seq, state.last_seq) if state else (0, 0)
        out = _Writer(conn, window)
        ticker = Ticker(progress)
        for seq, rows, bodies in _stream(stage):
            out.offer(seq, rows, bodies)
            ticker.tick(lambda seq=seq: f"rebuilding the damaged ledger: seq {seq} of {plan.top}")
        confirmed = {(s, h) for s, h in conn.execute("SELECT seq, hash FROM stage.checkpoints")}
        if state is not None:
            confirmed.add((state.last_seq, bytes.fromhex(state.last_hash)))
        out.confirm_tail(confirmed)
        out.flush()
        if out.last is not None:
            plan.kept, (plan.last_seq, plan.last_hash) = out.kept, out.last
        plan.top = max(plan.top, plan.last_seq)
        gaps = [*out.gaps]
        if plan.last_seq < plan.top:
            gaps.append((plan.last_seq + 1, plan.top))
        gaps = [(max(a, facts.floor), b) for a, b in gaps if b >= facts.floor]
        plan.losses = losses_of(
            stage, list(subtract(gaps, facts.declared)), out.window, out.window_kinds, state
        )
        _copy_side_tables(conn, plan, keys)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE stage")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    _fsync(target)
    return plan


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
