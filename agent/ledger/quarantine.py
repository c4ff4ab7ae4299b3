"""Rows that are damaged but do not damage the chain: reported, set aside, skipped.

A checkpoint whose signature (or signed hash) no longer verifies, and a ``keys`` row that no
longer parses as the key its id names, are moved into the ``quarantine`` table with the
reason: the records they concern are intact (a later checkpoint vouches for them, and the
ledger signs a new one), so the ledger opens and keeps writing. Records that cannot be read
or do not match their hash are noted there too when a reader meets them, until the rebuild
that follows (:mod:`agent.ledger.live`) declares them lost. ``evgw ledger export`` lists
every quarantined row, so ``verify`` names it.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

from agent.ledger.chain import checkpoint_payload
from agent.ledger.keys import GatewayKey, PublicKey
from agent.ledger.store import ensure_table
from agent.records.envelope import iso_ts

NEWEST_CHECKED: Final = 5
"""Start-up checks this many of the newest checkpoints (the background check does all)."""


def quarantine(
    conn: sqlite3.Connection, what: str, seq: int | None, reason: str, content: bytes | None
) -> None:
    ensure_table(conn, "quarantine")
    conn.execute(
        "INSERT INTO quarantine (what, seq, reason, content, ts) VALUES (?, ?, ?, ?, ?)",
        (what, seq, reason, content, iso_ts(time.time())),
    )


def _keys(conn: sqlite3.Connection, current: GatewayKey) -> tuple[dict[str, PublicKey], list[str]]:
    keys = {current.fingerprint: current.public}
    found = []
    for rowid, key_id, der, first in conn.execute(
        "SELECT rowid, key_id, public_der, first_seq FROM keys"
    ).fetchall():
        public = PublicKey.parse(der)
        if public is not None and public.fingerprint == key_id:
            keys[key_id] = public
            continue
        reason = "the keys row does not hold the public key its id names"
        content = der if isinstance(der, bytes) else None
        quarantine(conn, "key", first if isinstance(first, int) else None, reason, content)
        conn.execute("DELETE FROM keys WHERE rowid = ?", (rowid,))
        found.append(f"keys row {str(key_id)[:16]}…: {reason}")
    return keys, found


def checkpoint_problem(
    conn: sqlite3.Connection, keys: dict[str, PublicKey], gateway_id: str, row: Sequence[object]
) -> str | None:
    """Why checkpoint ``(id, seq, hash, ts, key_id, sig)`` does not hold (None: it does)."""
    _cid, seq, digest, ts, key_id, sig = row
    if not (isinstance(seq, int) and isinstance(digest, bytes) and isinstance(ts, str)):
        return "the checkpoint row is garbled"
    key = keys.get(str(key_id))
    if key is None:
        return f"signed by key {str(key_id)[:16]}…, which the ledger does not hold"
    record = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
    if record is not None and record[0] != digest:
        return f"it signs a hash that record {seq} does not have"
    try:
        signature = base64.b64decode(str(sig), validate=True)
    except (ValueError, binascii.Error):
        return "its signature is not Base64"
    if not key.verify(signature, checkpoint_payload(gateway_id, seq, digest.hex(), ts)):
        return "its signature does not verify"
    return None


def set_aside_at_open(conn: sqlite3.Connection, gateway_id: str, current: GatewayKey) -> list[str]:
    """Quarantine damaged ``keys`` rows and the newest checkpoints that fail; say what."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        keys, found = _keys(conn, current)
        rows = conn.execute(
            "SELECT id, seq, hash, ts, key_id, sig FROM checkpoints "
            "WHERE id > (SELECT coalesce(max(id), 0) FROM checkpoints) - ? ORDER BY id DESC",
            (NEWEST_CHECKED,),
        ).fetchall()
        for row in rows:
            reason = checkpoint_problem(conn, keys, gateway_id, row)
            if reason is not None:
                found.append(set_checkpoint_aside(conn, row, reason))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def set_checkpoint_aside(conn: sqlite3.Connection, row: Sequence[object], reason: str) -> str:
    cid, seq = row[0], row[1]
    content = repr(tuple(row[1:])).encode()
    quarantine(conn, "checkpoint", seq if isinstance(seq, int) else None, reason, content)
    conn.execute("DELETE FROM checkpoints WHERE id = ?", (cid,))
    return f"checkpoint at seq {seq}: {reason}"
