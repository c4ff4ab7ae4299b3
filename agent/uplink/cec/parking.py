"""What a resend request selects (``evgw uplink resend``). The parked records themselves are
the ledger's (:meth:`agent.ledger.Ledger.parked`, ``unpark``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
