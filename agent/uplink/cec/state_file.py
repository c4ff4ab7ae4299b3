"""Small JSON state files beside the ledger (reconciled days, the platform's push cadence):
read leniently, written atomically (temporary file, fsync, rename, fsync of the folder)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("agent.uplink.cec")


def read_json(path: Path | None, what: str) -> Any:
    """The file's JSON, or None when there is none or it is unreadable (logged)."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s %s unreadable (%s): starting without it", what, path, exc)
        return None


def write_json(path: Path | None, value: Any, what: str) -> bool:
    """Replace the file with ``value``; False (logged) when the disk refuses."""
    if path is None:
        return False
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("%s %s not written: %s", what, path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True
