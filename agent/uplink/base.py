"""The counters every uplink keeps (the plug-in contract is :mod:`agent.uplink.plugin`).

An uplink reads batches from the ledger after its own cursor, sends them, and acknowledges
(moves the cursor) only after the platform acknowledged; ``stats`` feeds ``evgw status`` and
the metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class UplinkStats:
    """Counters of one uplink (monotonic except ``backlog``, ``connected`` and errors)."""

    sent: int = 0
    """Records handed to the transport (retries not counted)."""
    acked: int = 0
    """Records acknowledged by the platform (cursor moved past them)."""
    retries: int = 0
    parked: int = 0
    backlog: int = 0
    connected: bool = False
    last_error: str | None = None
    last_error_ts: float | None = None

    def error(self, message: str, now_s: float) -> None:
        self.last_error, self.last_error_ts = message, now_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class ResendingUplink(Protocol):
    """An uplink that parks records and lets an operator list and release them
    (``evgw uplink parked`` / ``evgw uplink resend`` through the status socket)."""

    name: str

    async def parked_records(self) -> dict[str, Any]:
        """``{"uplink", "count", "parked": [{"seq", "kind", "reason", "ts"}, …]}``."""
        ...

    async def resend(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue the records ``request`` selects (``seq``, ``from_seq``/``to_seq`` or
        ``parked``); ValueError with a message for the technician when it is wrong."""
        ...
