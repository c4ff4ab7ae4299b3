"""Declared losses: which seqs a damaged ledger lost, and of which kinds.

A loss is a maximal run of seqs that were written once and can no longer be read. Its kinds
come from whatever still names them (an index entry, a row that fails its hash, a body), and
for the newest records — the ones only the WAL held — from the per-kind counts the state
file keeps (:mod:`agent.ledger.state`): the records written since the last complete WAL
checkpoint, minus those still found, are the lost ones, kind by kind.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from agent.ledger.state import State

LOSS_EVENTS: Final = ("ledger_recovered", "records_lost")
"""Events that declare lost seq ranges (``lost``: ``[{from_seq, to_seq, …}]``)."""


@dataclass(frozen=True, slots=True)
class Loss:
    """A run of seqs declared lost: how many of each kind, as far as anything tells."""

    from_seq: int
    to_seq: int
    kinds: dict[str, int]
    unknown_kind: int

    @property
    def count(self) -> int:
        return self.to_seq - self.from_seq + 1

    def as_body(self) -> dict[str, Any]:
        return {
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "count": self.count,
            "kinds": dict(sorted(self.kinds.items())),
            "unknown_kind": self.unknown_kind,
        }


class Evidence(msgspec.Struct):
    event: str = ""
    lost: list[dict[str, Any]] = []
    lost_from_seq: int | None = None
    lost_to_seq: int | None = None
    acknowledged_deleted_below_seq: int | None = None
    epoch: int | None = None


class EventRecord(msgspec.Struct):
    seq: int
    id: str = ""
    body: Evidence = msgspec.field(default_factory=Evidence)


EVENT: Final = msgspec.json.Decoder(EventRecord)
"""Decodes the fields of an ``event`` record that say what was lost or deleted."""


def declared_by(record: EventRecord) -> list[tuple[int, int, int]]:
    """``(from_seq, to_seq, event_seq)`` of each range an event declares lost."""
    body = record.body
    if body.event not in LOSS_EVENTS:
        return []
    found = [
        (int(x["from_seq"]), int(x["to_seq"]), record.seq)
        for x in body.lost
        if isinstance(x.get("from_seq"), int) and isinstance(x.get("to_seq"), int)
    ]
    if not found and body.lost_from_seq is not None and body.lost_to_seq is not None:
        found.append((body.lost_from_seq, body.lost_to_seq, record.seq))
    return found


def subtract(
    gaps: list[tuple[int, int]], declared: list[tuple[int, int, int]]
) -> Iterator[tuple[int, int]]:
    """The parts of ``gaps`` no earlier declaration covers."""
    for low, high in gaps:
        pieces = [(low, high)]
        for d_low, d_high, _event in declared:
            nxt = []
            for a, b in pieces:
                if d_high < a or d_low > b:
                    nxt.append((a, b))
                    continue
                if a < d_low:
                    nxt.append((a, d_low - 1))
                if d_high < b:
                    nxt.append((d_high + 1, b))
            pieces = nxt
        yield from pieces


def losses_of(
    stage: sqlite3.Connection,
    gaps: list[tuple[int, int]],
    window: tuple[int, int],
    window_kinds: Counter[str],
    state: State | None,
) -> list[Loss]:
    """The losses for ``gaps`` with their kinds (``window``: the WAL's seq range)."""
    losses = []
    for low, high in gaps:
        kinds = dict(
            stage.execute(
                "SELECT kind, count(*) FROM kinds WHERE seq BETWEEN ? AND ? GROUP BY kind",
                (low, high),
            ).fetchall()
        )
        losses.append(Loss(low, high, kinds, high - low + 1 - sum(kinds.values())))
    if state is None:
        return losses
    if state.abandoned is not None:
        losses = [_with_abandoned(loss, state) for loss in losses]
    return _attribute_window(losses, window, window_kinds, state)


def _with_abandoned(loss: Loss, state: State) -> Loss:
    gone = state.abandoned
    assert gone is not None
    if not (loss.from_seq <= gone.from_seq and gone.to_seq <= loss.to_seq and loss.unknown_kind):
        return loss
    kinds = Counter(loss.kinds)
    kinds.update(gone.kinds)
    added = sum(gone.kinds.values())
    if added > loss.unknown_kind:
        return loss
    return Loss(loss.from_seq, loss.to_seq, dict(kinds), loss.unknown_kind - added)


def _attribute_window(
    losses: list[Loss], window: tuple[int, int], window_kinds: Counter[str], state: State
) -> list[Loss]:
    """Kinds of the records lost from the WAL, from the counts the state file kept."""
    low, high = window
    touched = [i for i, loss in enumerate(losses) if loss.unknown_kind and loss.to_seq > low]
    if len(touched) != 1 or high <= low:
        return losses
    loss = losses[touched[0]]
    if loss.from_seq <= low or loss.to_seq > high:
        return losses
    expected = Counter(state.counts)
    expected.subtract(state.checkpointed_counts)
    expected.subtract(window_kinds)
    expected.subtract(loss.kinds)
    others = [x for i, x in enumerate(losses) if i != touched[0] and low < x.from_seq <= high]
    for other in others:
        expected.subtract(other.kinds)
    missing = {k: n for k, n in expected.items() if n}
    if any(n < 0 for n in missing.values()) or sum(missing.values()) != loss.unknown_kind:
        return losses
    kinds = Counter(loss.kinds)
    kinds.update(missing)
    losses[touched[0]] = Loss(loss.from_seq, loss.to_seq, dict(kinds), 0)
    return losses
