"""Export a ledger file as JSON Lines: records, stubs and checkpoints in chain order.

Each line is canonical JSON (keys sorted, no spaces) of one of:

- a record: the stored envelope with ``seq``, ``id``, ``prev``, ``hash``;
- ``{"checkpoint": {gateway_id, seq, hash, ts, key_id, sig}}``, right after the record it
  signs;
- ``{"stub": {seq, kind, prev, hash, reason}}`` for a record whose body is not in the file:
  ``reason`` is ``"dropped"`` (retention dropped it, see the ``retention_dropped`` event) or
  ``"omitted"`` (left out by ``--kind``). A stub keeps the chain of hashes continuous.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Final

from agent.errors import UserError
from agent.ledger.chain import stored_from_row
from agent.ledger.store import DATA_EXPR, read_meta
from agent.records.envelope import canonical_json

_CHUNK: Final = 2000


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ledger file (the service may keep writing it)."""
    if not path.is_file():
        raise UserError(f"ledger {path} does not exist (check --ledger or ledger.path)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        meta = read_meta(conn)
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
    checkpoints = conn.execute(
        "SELECT seq, hash, ts, key_id, sig FROM checkpoints WHERE seq > ? AND seq <= ? "
        "ORDER BY seq, id",
        (low, high),
    ).fetchall()
    cp_index = 0
    after = low
    while True:
        rows = conn.execute(
            f"SELECT r.seq, r.kind, r.prev, r.hash, {DATA_EXPR} FROM records r "
            "WHERE r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?",
            (after, high, _CHUNK),
        ).fetchall()
        if not rows:
            break
        for seq, kind, prev, digest, data in rows:
            while cp_index < len(checkpoints) and checkpoints[cp_index][0] < seq:
                yield _checkpoint_line(gateway_id, checkpoints[cp_index])
                cp_index += 1
            if data is None or (wanted is not None and kind not in wanted):
                reason = "dropped" if data is None else "omitted"
                yield canonical_json(
                    {
                        "stub": {
                            "seq": seq,
                            "kind": kind,
                            "prev": prev.hex(),
                            "hash": digest.hex(),
                            "reason": reason,
                        }
                    }
                )
            else:
                yield canonical_json(stored_from_row(data, prev, digest))
            while cp_index < len(checkpoints) and checkpoints[cp_index][0] == seq:
                yield _checkpoint_line(gateway_id, checkpoints[cp_index])
                cp_index += 1
        after = rows[-1][0]
    while cp_index < len(checkpoints):
        yield _checkpoint_line(gateway_id, checkpoints[cp_index])
        cp_index += 1


def _checkpoint_line(gateway_id: str, row: tuple[int, bytes, str, str, str]) -> bytes:
    seq, digest, ts, key_id, sig = row
    return canonical_json(
        {
            "checkpoint": {
                "gateway_id": gateway_id,
                "seq": seq,
                "hash": digest.hex(),
                "ts": ts,
                "key_id": key_id,
                "sig": sig,
            }
        }
    )
