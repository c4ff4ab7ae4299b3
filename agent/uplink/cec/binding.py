"""Binding a platform's answer to the request it answers.

T/CEC 102 signs an answer over ``Ret + Msg + Data`` only (spec §6), and ``Data`` is AES-CBC
under a fixed IV, so every ``Ret 0`` / ``{"Status": 0}`` answer of a platform is the same
bytes: a captured genuine answer is a valid answer to any other request. What the protocol
allows the gateway to check, and what :func:`reply_problem` checks:

- the business keys a reply echoes by the standard: ``StartChargeSeq`` and ``ConnectorID``
  of an order (§13.11), ``StartChargeSeq`` of a session sample (§13.10), ``CheckOrderSeq`` of
  a reconciliation (§13.12), ``OperatorID`` of a token (§8.1) — a reply for another record
  is refused, and so is a ``Ret 0`` without the reply these interfaces must carry;
- ``TimeStamp`` and ``Seq`` inside the reply ``Data`` (encrypted and signed, so a replay
  cannot alter them): when a reply carries them they must be this request's, and with
  ``reply_echoes_seq`` (for platforms that always echo) a reply without them is refused.

A ``Status``-only answer from a platform that does not echo cannot be told from a replay:
there TLS with certificate verification (``ca_file``) is what keeps a fake front out.
"""

from __future__ import annotations

from typing import Any, Final

from agent.uplink.cec.mapping import CHARGE_STATUS, CHECK_ORDERS, ORDER_INFO

TOKEN: Final = "query_token"
ECHOED_KEYS: Final[dict[str, tuple[str, ...]]] = {
    ORDER_INFO: ("StartChargeSeq", "ConnectorID"),
    CHARGE_STATUS: ("StartChargeSeq",),
    CHECK_ORDERS: ("CheckOrderSeq",),
    TOKEN: ("OperatorID",),
}
"""Per interface, the request members its reply echoes (spec §8.1, §13.10–§13.12)."""


def reply_problem(
    interface: str,
    request: dict[str, Any],
    reply: Any,
    stamp_seq: tuple[str, str],
    *,
    echo_required: bool,
) -> str | None:
    """Why ``reply`` (None: ``Data ""``) is not an answer to ``request``, or None if it is."""
    keys = ECHOED_KEYS.get(interface, ())
    if reply is None:
        if keys:
            return f"Ret 0 without the reply Data that must echo {', '.join(keys)}"
        return "Ret 0 without reply Data, which must echo TimeStamp/Seq" if echo_required else None
    if not isinstance(reply, dict):
        return f"reply Data is a JSON {type(reply).__name__}, not an object"
    for key in keys:
        if reply.get(key) != request.get(key):
            return (
                f"reply {key} {reply.get(key)!r} is not the request's {request.get(key)!r} "
                "(an answer to another request, or replayed)"
            )
    echoed = (reply.get("TimeStamp"), reply.get("Seq"))
    if echoed == (None, None) and not echo_required:
        return None
    if echoed != stamp_seq:
        return (
            f"reply echoes TimeStamp/Seq {echoed[0]!r}/{echoed[1]!r}, the request was "
            f"{stamp_seq[0]}/{stamp_seq[1]} (replayed or for another request)"
        )
    return None
