"""The command ids seen within the freshness window, kept across restarts.

A signed command is accepted once: its id is remembered for twice the freshness window
(older commands are refused by their timestamp anyway). The ids live in a small JSON Lines
file beside the ledger, appended and fsynced before the command runs, so a command captured
on the wire and replayed after a gateway restart is refused like any other replay. The file
is rewritten without expired ids at start; a damaged line is skipped (the command it named
is then refused only by its timestamp).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)


class _Seen(msgspec.Struct, frozen=True):
    id: str
    ts: float


class ReplayWindow:
    def __init__(self, path: Path | None, keep_s: float, now_s: float) -> None:
        self._path = path
        self._keep_s = keep_s
        self._seen: dict[str, float] = {}
        if path is not None:
            self._load(path, now_s)

    def _load(self, path: Path, now_s: float) -> None:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            log.warning("command replay window %s unreadable (%s): starting empty", path, exc)
            lines = []
        decoder = msgspec.json.Decoder(_Seen)
        damaged = 0
        for line in lines:
            try:
                entry = decoder.decode(line)
            except msgspec.DecodeError:
                damaged += 1
                continue
            if now_s - entry.ts <= self._keep_s:
                self._seen[entry.id] = entry.ts
        if damaged:
            log.warning("command replay window %s: %d damaged lines skipped", path, damaged)
        self._rewrite(path)

    def _rewrite(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                for cid, ts in self._seen.items():
                    f.write(msgspec.json.encode(_Seen(cid, ts)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("command replay window %s not rewritten: %s", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._seen

    def add(self, command_id: str, now_s: float) -> None:
        """Remember ``command_id`` durably (before the command runs)."""
        self._seen = {cid: t for cid, t in self._seen.items() if now_s - t <= self._keep_s}
        self._seen[command_id] = now_s
        if self._path is None:
            return
        try:
            with open(self._path, "ab") as f:
                f.write(msgspec.json.encode(_Seen(command_id, now_s)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # full disk: the in-memory window still refuses replays
            log.warning("command replay window %s not written: %s", self._path, exc)
