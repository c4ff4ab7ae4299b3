"""Where releases live (all under one root, ``/`` on a gateway, a staging folder in tests):

``/opt/evgw/releases/<version>/``   one virtual environment per release
``/opt/evgw/current``               link to the running release (the unit runs current/bin/evgw)
``/opt/evgw/previous``              link to the release before it (what a rollback returns to)
``/opt/evgw/updates.jsonl``         every update step, one JSON object per line (fsynced)

Links are switched atomically: a new link is made beside the old one and renamed over it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "evgw"

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def previous(self) -> Path:
        return self.opt / "previous"

    @property
    def journal(self) -> Path:
        return self.opt / "updates.jsonl"

    @property
    def release_key(self) -> Path:
        return self.root / "etc" / "evgw" / "release.pub"

    def release(self, version: str) -> Path:
        return self.releases / version

    def version_of(self, link: Path) -> str | None:
        """The release a link points to, or None when there is none."""
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    def point(self, link: Path, version: str) -> None:
        """Make ``link`` point to ``releases/<version>`` in one rename."""
        staged = link.with_name(f".{link.name}.new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(Path("releases") / version)
        os.replace(staged, link)
        _fsync_dir(link.parent)

    def switch(self, version: str) -> str | None:
        """``current`` → ``version``, ``previous`` → what was current; returns that."""
        old = self.version_of(self.current)
        if old is not None and old != version:
            self.point(self.previous, old)
        self.point(self.current, version)
        return old

    def record(self, step: str, **details: Any) -> dict[str, Any]:
        """Append one step to the journal (fsynced) and return it."""
        entry = {"ts": time.time(), "step": step, **details}
        self.opt.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def steps(self) -> list[dict[str, Any]]:
        """The journal (damaged lines skipped)."""
        try:
            lines = self.journal.read_text("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "step" in entry:
                entries.append(entry)
        return entries


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
