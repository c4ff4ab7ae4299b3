"""Crash safety with real processes and SIGKILL (issue 5, "Tests that must exist").

A writer process (``crash_writer.py``) appends as fast as it can and reports every durable
``seq`` and hash over a pipe, takes checkpoints and moves a cursor. The test kills it with
SIGKILL at random moments — some right as a checkpoint is being signed or a cursor is being
written — restarts it, and after every kill checks the file: every acknowledged record is
there unchanged, ``seq`` is gap-free, the chain and every checkpoint signature verify, and the
cursor never moved backwards nor past what is stored.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from agent.ledger.chain import Checkpoint, checkpoint_signature_ok
from agent.ledger.export import export_lines
from agent.ledger.verify import verify_lines

WRITER = Path(__file__).with_name("crash_writer.py")


@dataclass
class Checked:
    """What the test has verified so far."""

    seq: int = 0
    hash: str = "0" * 64
    cursor: int = 0
    checkpoint_id: int = 0
    acked: dict[int, str] = field(default_factory=dict)
    """Acknowledged records not yet compared with the file."""
    acked_total: int = 0
    ack_reported: int = 0
    checkpoint_reported: int = 0


def start(ledger: Path, key: Path) -> tuple[subprocess.Popen[bytes], queue.Queue[str | None]]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(ledger), str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def kill_at(
    proc: subprocess.Popen[bytes], lines: queue.Queue[str | None], mode: str, rng: random.Random
) -> list[str]:
    """Kill the writer at a moment chosen by ``mode``; return every line it reported.

    ``opening``: soon after the process starts (often while the ledger is being opened and
    checked); ``checkpoint`` / ``ack``: right as it starts a checkpoint / a cursor update;
    ``random``: at a random moment while appending.
    """
    seen: list[str] = []
    spawned = time.monotonic()
    deadline = spawned + 20
    started_at: float | None = None
    delay = rng.uniform(0.0, 0.25) if mode != "opening" else rng.uniform(0.05, 0.5)
    marker = {"checkpoint": "C", "ack": "K "}.get(mode)
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.002)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            seen.append(line)
        now = time.monotonic()
        if line.startswith("S "):
            started_at = now
        if mode == "opening":
            if now - spawned >= delay:
                break
        elif marker is not None:
            if line.startswith(marker):
                break
        elif started_at is not None and now - started_at >= delay:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in err, err
    return seen


def check(ledger: Path, key: GatewayKey, state: Checked, reported: list[str]) -> None:
    for line in reported:
        tag, *rest = line.split()
        if tag == "A":
            state.acked[int(rest[0])] = rest[1]
        elif tag == "k":
            state.ack_reported = max(state.ack_reported, int(rest[0]))
        elif tag == "c":
            state.checkpoint_reported = max(state.checkpoint_reported, int(rest[0]))
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        first, last, count = conn.execute(
            "SELECT min(seq), max(seq), count(*) FROM records"
        ).fetchone()
        if count:
            assert (first, count) == (1, last), "seq is not gap-free"
        # every acknowledged record is present and unchanged
        stored = dict(
            conn.execute("SELECT seq, hash FROM records WHERE seq > ?", (state.seq,)).fetchall()
        )
        for seq, digest in state.acked.items():
            assert stored.get(seq, b"").hex() == digest, f"acknowledged record {seq} lost"
        state.acked_total += len(state.acked)
        state.acked.clear()
        # the chain of the new records, continuing what was verified before
        report = verify_lines(
            export_lines(conn, from_seq=state.seq + 1),
            [key.public],
            after=(state.seq, state.hash) if state.seq else None,
            allow_unsigned_tail=True,
        )
        assert not report.problems, report.problems[:5]
        # every checkpoint written since the last check is signed and matches its record
        for cid, seq, digest, ts, key_id, sig in conn.execute(
            "SELECT c.id, c.seq, c.hash, c.ts, c.key_id, c.sig FROM checkpoints c "
            "WHERE c.id > ? ORDER BY c.id",
            (state.checkpoint_id,),
        ).fetchall():
            cp = Checkpoint("CRASH", seq, digest.hex(), ts, key_id, sig)
            assert checkpoint_signature_ok(cp, key.public), f"checkpoint {cid} bad signature"
            row = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
            assert row is not None and row[0] == digest
            state.checkpoint_id = cid
        # cursors: never backwards, never past the stored records, never lose a durable ack
        row = conn.execute("SELECT seq FROM cursors WHERE uplink = 'up'").fetchone()
        cursor = 0 if row is None else int(row[0])
        assert cursor >= state.cursor, "cursor moved backwards"
        assert cursor >= state.ack_reported, "an acknowledged cursor update was lost"
        assert cursor <= (last or 0), "cursor is past the stored records"
        state.cursor = cursor
        if last:
            state.seq = last
            state.hash = stored.get(last, bytes.fromhex(state.hash)).hex()
    finally:
        conn.close()
    assert not list(ledger.parent.glob("*.corrupt-*")), "a healthy ledger was treated as corrupt"


def crash_cycles(tmp_path: Path, kills: int, seed: int) -> Checked:
    key = GatewayKey.generate()
    key_path = tmp_path / "gw.key"
    key.save(key_path)
    ledger = tmp_path / "ledger.db"
    rng = random.Random(seed)
    state = Checked()
    modes = ["random", "checkpoint", "ack", "random", "opening"]
    for i in range(kills):
        proc, lines = start(ledger, key_path)
        reported = kill_at(proc, lines, modes[i % len(modes)], rng)
        check(ledger, key, state, reported)
    assert state.acked_total, "the writer never got to append"
    assert state.checkpoint_reported > 0 and state.ack_reported > 0
    return state


def final_full_verify(tmp_path: Path, state: Checked) -> None:
    """Open and close cleanly once more: the whole file verifies, strictly."""
    key = GatewayKey.load(tmp_path / "gw.key")

    async def reopen() -> int:
        ledger = await Ledger.open(tmp_path / "ledger.db", gateway_id="CRASH", key=key)
        last = ledger.last_seq
        await ledger.close()
        return last

    assert asyncio.run(reopen()) == state.seq
    conn = sqlite3.connect(f"file:{tmp_path / 'ledger.db'}?mode=ro", uri=True)
    report = verify_lines(export_lines(conn), [key.public])
    conn.close()
    assert report.ok, report.problems[:5]
    assert report.last_seq == state.seq and report.signed_upto == state.seq


def test_sigkill_50_times_loses_nothing_acknowledged(tmp_path: Path) -> None:
    state = crash_cycles(tmp_path, kills=50, seed=int(os.environ.get("CRASH_SEED", "5")))
    final_full_verify(tmp_path, state)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_300_times_loses_nothing_acknowledged(tmp_path: Path) -> None:
    state = crash_cycles(tmp_path, kills=300, seed=random.randrange(1 << 30))
    final_full_verify(tmp_path, state)
