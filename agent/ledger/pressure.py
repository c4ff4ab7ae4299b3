"""The records the writer holds in memory while the disk refuses writes, kept bounded.

Every record handed to the ledger already has its seq and hash, so nothing can leave the
chain. When what is held exceeds the bound, the oldest bodies of the low-priority kinds are
dropped first (:data:`SHED_ORDER`, oldest first within a kind): the record stays as a stub
(seq, kind, prev, hash, no body), exactly like a record retention dropped, and the drop is
counted per kind with its seq range, to be declared by an ``event`` as soon as something
can be written. Orders, alarms, events and identity records are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from agent.ledger.store import SPLIT_KINDS

SHED_ORDER: Final = (
    "meter_sample",
    "bms_process",
    "connector_status",
    "gateway_health",
    "station_stats",
)
DEFAULT_BOUND_BYTES: Final = 16 * 1024 * 1024

Row = tuple[int, str, str | None, str | None, bytes, bytes, bytes | None]


@dataclass(slots=True)
class Dropped:
    kind: str
    count: int = 0
    from_seq: int = 0
    to_seq: int = 0

    def add(self, seq: int) -> None:
        self.count += 1
        self.from_seq = seq if self.from_seq == 0 else min(self.from_seq, seq)
        self.to_seq = max(self.to_seq, seq)

    def as_body(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
        }


@dataclass(slots=True)
class Drops:
    """Bodies dropped from memory that no event has declared yet."""

    by_kind: dict[str, Dropped] = field(default_factory=dict)

    def add(self, kind: str, seq: int) -> None:
        self.by_kind.setdefault(kind, Dropped(kind)).add(seq)

    def __bool__(self) -> bool:
        return bool(self.by_kind)

    def as_body(self) -> list[dict[str, Any]]:
        return [d.as_body() for d in self.by_kind.values()]

    def event_body(self, reason: str, bound: int) -> dict[str, Any]:
        return {
            "event": "buffer_dropped",
            "reason": reason,
            "memory_bound_bytes": bound,
            "dropped": self.as_body(),
        }


def held_bytes(rows: list[Any], bodies: dict[str, list[tuple[int, bytes]]]) -> int:
    return sum(len(r[6] or b"") for r in rows) + sum(
        len(b) for items in bodies.values() for _seq, b in items
    )


def shed(
    rows: list[Any],
    bodies: dict[str, list[tuple[int, bytes]]],
    excess: int,
    drops: Drops,
    kinds: tuple[str, ...] = SHED_ORDER,
) -> int:
    """Turn the oldest low-priority rows into stubs until ``excess`` bytes are freed.

    ``rows``/``bodies`` are a pending batch (bodies of the split kinds live apart, in the
    same order as their rows). Returns the bytes freed.
    """
    freed = 0
    for kind in kinds:
        if freed >= excess:
            break
        split = kind in SPLIT_KINDS
        queue = bodies.get(kind, [])
        taken = 0
        for i, row in enumerate(rows):
            if freed >= excess:
                break
            if row[1] != kind or row[6] is None:
                continue
            if split:
                freed += len(queue[taken][1])
                taken += 1
            else:
                freed += len(row[6])
            rows[i] = (row[0], kind, None, row[3], row[4], row[5], None)
            drops.add(kind, row[0])
        if split:
            del queue[:taken]
    return freed
