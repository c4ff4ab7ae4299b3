"""Damage a real ledger the way a worn SD card or a power cut does, for the damage matrix.

:func:`written` runs the crash writer (``crash_writer.py``) twice and SIGKILLs it each time,
so the main file holds the first session's records and the WAL the second's, and returns
what the writer had acknowledged. Each damage function then changes the files on disk only
(no SQLite), like the hardware would.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

PAGE = 4096
WRITER = Path(__file__).with_name("crash_writer.py")


def _session(ledger: Path, key: Path, records: int) -> list[str]:
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
    seen: list[str] = []
    acked = 0
    deadline = time.monotonic() + 60
    while acked < records and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        acked += line.startswith("A ")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in err, err
    assert acked >= records, f"the writer acknowledged only {acked} records"
    return seen


def written(ledger: Path, key: Path, first: int = 500, second: int = 500) -> dict[int, str]:
    """Two (or more) killed writer sessions, until one signed a checkpoint; every
    acknowledged ``seq → hash``."""
    acked: dict[int, str] = {}
    signed = False
    counts = [first, second]
    while counts:
        for line in _session(ledger, key, counts.pop(0)):
            if line.startswith("A "):
                _tag, seq, digest = line.split()
                acked[int(seq)] = digest
            signed = signed or line.startswith("c ")
        if not counts and not signed:
            counts.append(second)
    return acked


def _wal(ledger: Path) -> Path:
    return Path(f"{ledger}-wal")


def _flip(path: Path, offset: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + length, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _flip_everywhere(ledger: Path, needle: bytes, at: int) -> int:
    """Flip the byte ``at`` into every copy of ``needle`` in the file and its WAL."""
    hits = 0
    for path in (ledger, _wal(ledger)):
        if not path.exists():
            continue
        data = bytearray(path.read_bytes())
        start = data.find(needle)
        while start >= 0:
            data[start + at] ^= 0x01
            hits += 1
            start = data.find(needle, start + len(needle))
        path.write_bytes(bytes(data))
    return hits


def _query(ledger: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def truncate_one_page(ledger: Path) -> None:
    os.truncate(ledger, ledger.stat().st_size - PAGE)


def truncate_half(ledger: Path) -> None:
    os.truncate(ledger, ledger.stat().st_size // 2 // PAGE * PAGE)


def flip_header(ledger: Path) -> None:
    _flip(ledger, 0, 16)


def _record_pages(ledger: Path) -> list[int]:
    """Main-file pages (0-based) holding ``records`` rows that no WAL frame supersedes."""
    in_wal = set()
    wal = _wal(ledger).read_bytes() if _wal(ledger).exists() else b""
    for pos in range(32, len(wal) - PAGE - 24 + 1, PAGE + 24):
        in_wal.add(struct.unpack_from(">I", wal, pos)[0] - 1)
    data = ledger.read_bytes()
    found = []
    for i in range(1, len(data) // PAGE):
        page = data[i * PAGE : (i + 1) * PAGE]
        if page[0] != 0x0D or i in in_wal or struct.unpack_from(">H", page, 3)[0] == 0:
            continue
        cell = struct.unpack_from(">H", page, 8)[0]
        if b'"kind":"' in page[cell:]:  # a records row, not a split-off body
            found.append(i)
    assert found, "no page of records rows in the main file"
    return found


def _flip_cells(ledger: Path, index: int) -> None:
    page = ledger.read_bytes()[index * PAGE : (index + 1) * PAGE]
    start = struct.unpack_from(">H", page, 5)[0] or PAGE
    _flip(ledger, index * PAGE + start + (PAGE - start) // 2, 48)


def flip_middle_page(ledger: Path) -> None:
    pages = _record_pages(ledger)
    _flip_cells(ledger, pages[len(pages) // 2])


def flip_tail(ledger: Path) -> None:
    _flip_cells(ledger, _record_pages(ledger)[-1])


def garble_signature(ledger: Path) -> None:
    ((sig,),) = _query(ledger, "SELECT sig FROM checkpoints ORDER BY id DESC LIMIT 1")
    assert _flip_everywhere(ledger, str(sig).encode(), 10)


def garble_keys(ledger: Path) -> None:
    ((der,),) = _query(ledger, "SELECT public_der FROM keys LIMIT 1")
    assert _flip_everywhere(ledger, bytes(der), 40)  # type: ignore[arg-type]


def flip_old_record(ledger: Path) -> None:
    ((data,),) = _query(  # the 6th record that keeps its body in its row (not a split kind)
        ledger, "SELECT data FROM records WHERE length(data) > 0 ORDER BY seq LIMIT 1 OFFSET 5"
    )
    needle = bytes(data)  # type: ignore[arg-type]
    assert _flip_everywhere(ledger, needle, len(needle) // 2)


def delete_wal(ledger: Path) -> None:
    _wal(ledger).unlink()


def truncate_wal(ledger: Path) -> None:
    wal = _wal(ledger)
    os.truncate(wal, wal.stat().st_size // 2)


def flip_wal(ledger: Path) -> None:
    wal = _wal(ledger)
    _flip(wal, wal.stat().st_size // 3, 32)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncate_one_page": truncate_one_page,
    "truncate_half": truncate_half,
    "flip_header": flip_header,
    "flip_middle_page": flip_middle_page,
    "flip_tail": flip_tail,
    "garble_signature": garble_signature,
    "garble_keys": garble_keys,
    "flip_old_record": flip_old_record,
    "delete_wal": delete_wal,
    "truncate_wal": truncate_wal,
    "flip_wal": flip_wal,
}
