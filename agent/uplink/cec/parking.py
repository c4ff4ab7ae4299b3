"""Parked records: listing, releasing and what a resend request selects.

The ``parked`` table belongs to the ledger (``agent/ledger/store.py``); the ledger has no API
for listing or releasing its rows yet, so these queries take its connections — the reader's
for the list (served by the table's ``(uplink, seq)`` primary key), the writer's, inside a
group commit, for a release — and run through the ledger's own threads.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from agent.ledger import Ledger

MAX_RESEND: Final = 10_000
"""The most records one resend request may select."""


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """What ``evgw uplink resend`` asks for: one seq, a range, or everything parked."""

    seq: int | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    parked: bool = False

    @classmethod
    def parse(cls, request: dict[str, Any]) -> ResendRequest:
        """From the status-socket request; ValueError with a message for the technician."""
        values = {k: request.get(k) for k in ("seq", "from_seq", "to_seq")}
        for key, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key} must be a whole number, got {value!r}")
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{key} must be 1 or more, got {value}")
        parked = request.get("parked") is True
        chosen = [values["seq"] is not None, values["from_seq"] is not None, parked]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of --seq N, --from N [--to M], --parked")
        if values["to_seq"] is not None and values["from_seq"] is None:
            raise ValueError("--to needs --from")
        return cls(values["seq"], values["from_seq"], values["to_seq"], parked)

    def span(self, last_seq: int) -> tuple[int, int]:
        """The seq range a seq/range request covers (not for ``parked``)."""
        if self.seq is not None:
            first = last = self.seq
        else:
            assert self.from_seq is not None
            first = self.from_seq
            last = self.to_seq if self.to_seq is not None else last_seq
        if first > last_seq:
            raise ValueError(f"seq {first} is not in the ledger yet (last seq {last_seq})")
        last = min(last, last_seq)
        if last < first:
            raise ValueError(f"--to {last} is before --from {first}")
        if last - first + 1 > MAX_RESEND:
            raise ValueError(f"{last - first + 1} records selected; at most {MAX_RESEND} at once")
        return first, last


LIST_SQL: Final = (
    "SELECT p.seq, p.reason, p.ts, r.kind FROM parked p LEFT JOIN records r USING (seq) "
    "WHERE p.uplink = ? ORDER BY p.seq LIMIT ?"
)
COUNT_SQL: Final = "SELECT count(*) FROM parked WHERE uplink = ?"
RELEASE_SQL: Final = "DELETE FROM parked WHERE uplink = ? AND seq IN ({marks})"


def _parked_rows(
    conn: sqlite3.Connection, uplink: str, limit: int
) -> list[tuple[int, str, str, str | None]]:
    return conn.execute(LIST_SQL, (uplink, limit)).fetchall()


def _parked_count(conn: sqlite3.Connection, uplink: str) -> int:
    return int(conn.execute(COUNT_SQL, (uplink,)).fetchone()[0])


async def parked(ledger: Ledger, uplink: str, limit: int = MAX_RESEND) -> list[dict[str, Any]]:
    """The records parked for ``uplink``, by seq: ``seq``, ``kind``, ``reason``, ``ts``."""
    rows = await ledger._read(_parked_rows, uplink, limit)
    return [{"seq": s, "kind": k, "reason": reason, "ts": ts} for s, reason, ts, k in rows]


async def parked_count(ledger: Ledger, uplink: str) -> int:
    return await ledger._read(_parked_count, uplink)


async def release(ledger: Ledger, uplink: str, seqs: list[int]) -> int:
    """Unpark ``seqs`` for ``uplink`` (durably, in the next group commit); how many were."""

    def op(conn: sqlite3.Connection) -> int:
        released = 0
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            sql = RELEASE_SQL.format(marks=",".join("?" * len(chunk)))
            cur = conn.execute(sql, (uplink, *chunk))
            released += cur.rowcount
        return released

    return await ledger._run_op(op)
