"""Logging: one line per event on stderr, journald-aware, secrets redacted.

Under systemd (``JOURNAL_STREAM`` names our stderr) lines carry a syslog priority prefix
(``<3>`` error … ``<7>`` debug) and no timestamp, since journald adds its own. Elsewhere a
line starts with an ISO timestamp and the level name. Every registered secret value is
replaced by ``***`` in every line, whatever logged it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def stderr_is_journal() -> bool:
    """True when stderr is connected to journald (systemd sets ``JOURNAL_STREAM=dev:inode``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        # journald takes one entry per line: keep tracebacks with their priority
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in the formatted message with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            message = message.replace(secret, "***")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "***")
        record.msg, record.args = message, None
        return True


_redactor = RedactSecrets()


def register_secrets(values: Iterable[str]) -> None:
    """Never let these strings reach a log line (short values are ignored: too ambiguous)."""
    _redactor.secrets.update(v for v in values if len(v) >= 4)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # libraries that are chatty at INFO
    for name in ("pymodbus", "can", "httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
