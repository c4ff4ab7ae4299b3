"""Replay of recorded CAN traffic through the same pipeline as live capture.

Any file python-can's log readers understand is accepted, chosen by extension: candump ``.log``,
Vector ``.asc`` and ``.blf``, PEAK ``.trc``, python-can ``.csv`` (and ``.db``/``.mf4`` when their
optional dependencies are installed). Compressed ``.gz`` files work as well.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import can

from drivers.gbt27930.events import BmsEvent, SessionClosed
from drivers.gbt27930.frames import Frame
from drivers.gbt27930.pipeline import Decoded, Pipeline


class ReplayError(Exception):
    """The file cannot be read as a CAN log; the message names the file and what to try."""


def supported_suffixes() -> tuple[str, ...]:
    return tuple(sorted(can.io.player.MESSAGE_READERS))


def read_candump(path: Path, bad_lines: Counter[str] | None = None) -> Iterator[Frame]:
    """A tolerant reader for candump ``-l`` logs: a line that does not parse is counted in
    ``bad_lines`` (by reason) and skipped, so one damaged line never loses the rest of the file.
    Compressed ``.gz`` logs are read transparently."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        yield from _candump_lines(opener(path, "rt", encoding="ascii", errors="replace"), bad_lines)
    except (EOFError, OSError, zlib.error) as exc:  # a truncated or damaged .gz, an I/O error
        raise ReplayError(
            f"{path}: the file ends or breaks before its end ({type(exc).__name__}: {exc}); "
            "the frames before that point were read"
        ) from None


def _candump_lines(fh: TextIO, bad_lines: Counter[str] | None) -> Iterator[Frame]:
    with fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            try:
                ts = float(parts[0].strip("()"))
                if not math.isfinite(ts):
                    raise ValueError("timestamp not finite")
                channel, frame = parts[1], parts[2]
                ident, sep, rest = frame.partition("#")
                if not sep:
                    raise ValueError("no '#'")
                can_id = int(ident, 16)
                remote = rest.startswith("R")
                fd = rest.startswith("#")
                payload = b"" if remote else bytes.fromhex(rest[2:] if fd else rest)
            except (ValueError, IndexError):
                if bad_lines is not None:
                    bad_lines["bad_log_line"] += 1
                continue
            yield Frame(
                ts=ts,
                can_id=can_id & 0x1FFFFFFF,
                data=payload,
                is_extended=len(ident) > 3,
                is_remote=remote,
                is_fd=fd,
                is_error=bool(can_id & 0x20000000) and len(ident) > 3,
                channel=channel,
            )


def read_frames(path: str | Path, bad_lines: Counter[str] | None = None) -> Iterator[Frame]:
    """Yield the frames of a log file in file order. candump ``.log`` files are read tolerantly
    (see :func:`read_candump`); other formats go through python-can's reader for their
    extension. Raises :class:`ReplayError` for a file that cannot be opened or parsed."""
    p = Path(path)
    if not p.is_file():
        raise ReplayError(f"{p}: no such file")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in can.io.player.MESSAGE_READERS:
        known = ", ".join(supported_suffixes())
        raise ReplayError(f"{p}: unknown log format; expected one of {known} (optionally .gz)")
    if suffixes[-1] == ".log":
        yield from read_candump(p, bad_lines)
        return
    try:
        reader = can.LogReader(str(p))
    except Exception as exc:  # python-can raises assorted errors for unreadable files
        raise ReplayError(f"{p}: cannot open as a CAN log: {exc}") from exc
    try:
        for msg in reader:
            if not math.isfinite(msg.timestamp):
                if bad_lines is not None:
                    bad_lines["bad_log_line"] += 1
                continue
            yield Frame(
                ts=msg.timestamp,
                can_id=msg.arbitration_id,
                data=bytes(msg.data),
                is_extended=msg.is_extended_id,
                is_remote=msg.is_remote_frame,
                is_fd=msg.is_fd,
                is_error=msg.is_error_frame,
                channel=str(msg.channel or ""),
            )
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"{p}: cannot parse the log: {type(exc).__name__}: {exc}") from exc
    finally:
        reader.stop()


@dataclass
class ReplayResult:
    """Everything a replay produced: messages (if kept), tracker events and the pipeline."""

    pipeline: Pipeline
    messages: list[Decoded] = field(default_factory=list)
    events: list[BmsEvent] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def sessions(self) -> list[SessionClosed]:
        return [e for e in self.events if isinstance(e, SessionClosed)]


def run_frames(
    frames: Iterator[Frame] | list[Frame],
    *,
    connector_id: str = "",
    keep_messages: bool = True,
    pipeline: Pipeline | None = None,
) -> ReplayResult:
    """Feed frames through a pipeline, then finish it (closing the open session)."""
    pipe = pipeline or Pipeline(connector_id, keep_messages=keep_messages)
    result = ReplayResult(pipe)
    messages, events = result.messages, result.events
    for f in frames:
        if result.first_ts is None:
            result.first_ts = f.ts
        result.last_ts = f.ts
        for item in pipe.feed(
            f.ts,
            f.can_id,
            f.data,
            is_extended=f.is_extended,
            is_remote=f.is_remote,
            is_fd=f.is_fd,
            is_error=f.is_error,
        ):
            if isinstance(item, Decoded):
                messages.append(item)
            else:
                events.append(item)
    events.extend(e for e in pipe.finish(result.last_ts) if not isinstance(e, Decoded))
    return result


def replay_file(
    path: str | Path, *, connector_id: str = "", keep_messages: bool = True
) -> ReplayResult:
    """Read a log file and run it through a fresh pipeline."""
    return run_frames(read_frames(path), connector_id=connector_id, keep_messages=keep_messages)
