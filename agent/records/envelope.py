"""The record envelope shared by the station model, the ledger and the uplinks (DESIGN §5).

A :class:`Record` is what the station model produces; the ledger turns it into a
:class:`StoredRecord` by giving it ``seq``, ``id``, ``prev`` and ``hash``. Both are frozen
``msgspec`` structs so they serialise to canonical JSON quickly and cannot change after
creation.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A fact produced by the station, before it is stored."""

    kind: str
    ts: str
    """UTC time of the fact, ISO 8601 with milliseconds and ``Z`` (see :func:`iso_ts`)."""
    station_id: str
    body: dict[str, Any]
    equipment_id: str | None = None
    connector_id: str | None = None


class StoredRecord(Record, frozen=True, kw_only=True):
    """A record as the ledger keeps it: numbered and chained."""

    seq: int
    id: str
    prev: str
    hash: str


_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical_json(obj: Any) -> bytes:
    """UTF-8 JSON with keys sorted and no insignificant whitespace (DESIGN §5)."""
    return _CANONICAL.encode(obj)


def iso_ts(epoch_s: float) -> str:
    """Format a POSIX timestamp as ``2026-11-22T21:41:51.123Z`` (UTC, milliseconds)."""
    ms = round(epoch_s * 1000)
    sec, milli = divmod(ms, 1000)
    stamp = _dt.datetime.fromtimestamp(sec, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{milli:03d}Z"


def parse_iso_ts(text: str) -> float:
    """Inverse of :func:`iso_ts`; raises ``ValueError`` with the text on bad input."""
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 UTC timestamp: {text!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {text!r}")
    return parsed.timestamp()
