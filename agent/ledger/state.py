"""The ledger's state file (``<ledger>.state``): what the ledger knew, kept outside SQLite.

The WAL is where SQLite keeps the newest commits, and a damaged or missing WAL looks to
SQLite like a shorter, healthy ledger. This small file says how far the ledger had got, so
the start-up check can tell: the last committed ``seq`` and hash, the chain epoch, whether
the last stop was clean, how many records of each kind had been written (so a lost range can
be declared per kind), the seq up to which the main file alone holds everything (the last
complete WAL checkpoint), the retention floor, and the records a stop could not write.

Two 4 KiB slots, written alternately in place with one ``fdatasync`` (no rename, no new
blocks: it works on a full disk). Each slot is ``magic ‖ generation ‖ length ‖ crc32 ‖
JSON``; reading takes the valid slot with the higher generation, so a torn write leaves the
previous state readable. The writer updates it after every commit, before anyone is told
the records are durable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Final

import msgspec

log = logging.getLogger(__name__)

MAGIC: Final = b"EVGWSTA1"
SLOT: Final = 4096
_HEAD: Final = struct.Struct(">8sQII")


class Abandoned(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Records handed to the ledger that a stop could not write (disk full at close)."""

    from_seq: int = 0
    to_seq: int = 0
    kinds: dict[str, int] = {}
    dropped: list[dict[str, int | str]] = []
    """Bodies dropped from memory (written as stubs) that no event has declared yet."""


class State(msgspec.Struct, kw_only=True, omit_defaults=True):
    gateway_id: str = ""
    epoch: int = 0
    clean: bool = False
    last_seq: int = 0
    last_hash: str = "0" * 64
    counts: dict[str, int] = {}
    """Records of each kind written up to ``last_seq`` (since counting began)."""
    checkpointed_seq: int = 0
    """Every record up to here is in the main file (a complete WAL checkpoint)."""
    checkpointed_counts: dict[str, int] = {}
    deleted_below: int = 0
    """Retention deleted every record below this seq (acknowledged by all uplinks)."""
    abandoned: Abandoned | None = None
    damage: str | None = None
    """Damage found while running that could not be repaired then: repaired at next open."""


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(State)


def state_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".state")


def _slot(data: bytes) -> tuple[int, State] | None:
    if len(data) < _HEAD.size:
        return None
    magic, generation, length, crc = _HEAD.unpack_from(data)
    body = data[_HEAD.size : _HEAD.size + length]
    if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        return generation, _DECODER.decode(body)
    except msgspec.DecodeError:
        return None


def read_state(ledger: Path) -> State | None:
    """The newest intact state, or None (no file, or both slots unreadable)."""
    try:
        data = state_path(ledger).read_bytes()
    except OSError:
        return None
    slots = [s for s in (_slot(data[:SLOT]), _slot(data[SLOT : 2 * SLOT])) if s is not None]
    return max(slots, key=lambda s: s[0])[1] if slots else None


class StateFile:
    """The open state file; :meth:`write` is durable when it returns."""

    def __init__(self, ledger: Path) -> None:
        self.path = state_path(ledger)
        self._fd: int | None = None
        self._generation = 0
        self.failed: str | None = None
        """The last write error (the file then lags behind; it never runs ahead)."""

    def open(self, state: State) -> None:
        """Open (creating it preallocated when missing) and write ``state``."""
        if not self.path.exists():
            self._create()
        try:
            self._fd = os.open(self.path, os.O_RDWR)
            data = os.pread(self._fd, 2 * SLOT, 0)
        except OSError as exc:
            self._fail(exc)
            return
        generations = [s[0] for s in (_slot(data[:SLOT]), _slot(data[SLOT:])) if s is not None]
        self._generation = max(generations, default=0)
        self.write(state)

    def _create(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(2 * SLOT))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._fail(exc)

    def write(self, state: State) -> None:
        if self._fd is None:
            return
        body = _ENCODER.encode(state)
        self._generation += 1
        data = _HEAD.pack(MAGIC, self._generation, len(body), zlib.crc32(body)) + body
        if len(data) > SLOT:
            raise ValueError(f"ledger state does not fit in {SLOT} bytes")
        try:
            os.pwrite(self._fd, data.ljust(SLOT, b"\0"), (self._generation % 2) * SLOT)
            os.fdatasync(self._fd)
        except OSError as exc:
            self._fail(exc)
            return
        self.failed = None

    def _fail(self, exc: OSError) -> None:
        if self.failed is None:
            log.warning(
                "ledger state file %s: %s (start-up checks rely less on it)", self.path, exc
            )
        self.failed = str(exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
