"""Receipts a driver can check: the charging order as the ledger holds it, attested by the
gateway key.

A receipt carries the stored ``charge_order`` record (its body holds the charge details, the
money and the OCMF string), a fresh **attestation** — a checkpoint for exactly that record's
``seq`` and ``hash``, signed by the gateway key (:func:`agent.ledger.chain.sign_checkpoint`,
the same statement the ledger signs for its uplinks) — and the ledger's own signed checkpoint
that already covered it, for comparison with what the platforms hold. No other record is in
it, so a receipt never shows another driver's data.

:func:`verify` checks offline, with only the gateway's public key: the record's hash is
recomputed from its content and ``prev``, the attestation names that hash at that seq for the
record's gateway and is signed by the key, and the ledger checkpoint (if present) is signed by
the key and covers the seq.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from agent.ledger import reader
from agent.ledger.chain import (
    Checkpoint,
    checkpoint_signature_ok,
    parse_record_id,
    recompute_hash,
    sign_checkpoint,
)
from agent.ledger.keys import GatewayKey, PublicKey
from agent.records.envelope import StoredRecord, iso_ts

RECEIPT_VERSION: Final = 1
MAX_RECEIPT_BYTES: Final = 1_048_576


class ReceiptError(ValueError):
    """A receipt that cannot be built or read; the message says what is wrong."""


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    v: int
    record: dict[str, Any]
    attestation: Checkpoint
    ledger_checkpoint: Checkpoint | None = None


def find_order(conn: sqlite3.Connection, session_id: str) -> StoredRecord:
    found = reader.find(conn, "charge_order", session_id, None, 1, newest_first=True)
    if not found:
        damaged = "; ".join(d.reason for d in found.damaged)
        raise ReceiptError(
            f"no charging order for session {session_id!r} in the ledger"
            + (f" (damaged rows: {damaged})" if damaged else "")
        )
    return found[0]


def covering_checkpoint(conn: sqlite3.Connection, gateway_id: str, seq: int) -> Checkpoint | None:
    row = conn.execute(
        "SELECT seq, hash, ts, key_id, sig FROM checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1",
        (seq,),
    ).fetchone()
    if row is None:
        return None
    cp_seq, digest, ts, key_id, sig = row
    digest_hex = digest.hex() if isinstance(digest, bytes) else str(digest)
    return Checkpoint(
        gateway_id=gateway_id, seq=cp_seq, hash=digest_hex, ts=ts, key_id=key_id, sig=sig
    )


def build(
    conn: sqlite3.Connection, gateway_id: str, session_id: str, key: GatewayKey, now_s: float
) -> Receipt:
    order = find_order(conn, session_id)
    attestation = sign_checkpoint(key, gateway_id, order.seq, order.hash, iso_ts(now_s))
    return Receipt(
        v=RECEIPT_VERSION,
        record=msgspec.to_builtins(order),
        attestation=attestation,
        ledger_checkpoint=covering_checkpoint(conn, gateway_id, order.seq),
    )


def encode(receipt: Receipt) -> bytes:
    return msgspec.json.format(msgspec.json.encode(receipt), indent=2) + b"\n"


def qr_text(receipt: Receipt) -> str:
    """What the terminal QR code holds: the attestation, enough for an app with the gateway's
    public key to check a record hash it was given."""
    a = receipt.attestation
    return f"EVGW-RCPT:{a.gateway_id}:{a.seq}:{a.hash}:{a.ts}:{a.sig}"


def decode(data: bytes) -> Receipt:
    if len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptError(f"{len(data)} bytes: larger than any receipt")
    try:
        return msgspec.json.decode(data, type=Receipt)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ReceiptError(f"not an evgw receipt: {exc}") from None


def verify(receipt: Receipt, key: PublicKey) -> list[str]:
    """Every reason the receipt does not hold (empty when it does)."""
    problems: list[str] = []
    record = receipt.record
    try:
        recomputed = recompute_hash(record)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"the record cannot be hashed: {type(exc).__name__}: {exc}"]
    if recomputed != record.get("hash"):
        problems.append("the order was changed: its content does not match its hash")
    if record.get("kind") != "charge_order":
        problems.append(f"the record is a {record.get('kind')!r}, not a charging order")
    a = receipt.attestation
    parsed = parse_record_id(record.get("id"))
    if parsed is None or parsed[0] != a.gateway_id:
        problems.append(
            f"the record id {record.get('id')!r} is not one of gateway {a.gateway_id!r}"
        )
    if a.seq != record.get("seq") or a.hash != record.get("hash"):
        problems.append("the attestation is for another record (seq or hash differ)")
    if a.key_id != key.fingerprint:
        problems.append(
            f"attested by key {a.key_id[:16]}, not by the key given ({key.fingerprint[:16]})"
        )
    elif not checkpoint_signature_ok(a, key):
        problems.append("the attestation's signature does not verify with the gateway key")
    cp = receipt.ledger_checkpoint
    if cp is not None:
        if cp.seq < a.seq or cp.gateway_id != a.gateway_id:
            problems.append("the ledger checkpoint does not cover this record")
        elif cp.key_id == key.fingerprint and not checkpoint_signature_ok(cp, key):
            problems.append("the ledger checkpoint's signature does not verify")
    return problems


def fixed(value: object, places: int) -> str:
    """A money, price or billed-energy figure of the order with its fixed decimals: ``"12.30"``
    as it is, the number ``12.3`` of an order written by an earlier version as ``12.30``;
    anything that is no number as it is."""
    try:
        return f"{Decimal(str(value)):.{places}f}"
    except InvalidOperation:
        return str(value)


def summary(receipt: Receipt) -> list[str]:
    """Readable lines for the driver (from the verified record)."""
    body = receipt.record.get("body", {})
    lines = [
        f"session {body.get('session_id')}  connector {receipt.record.get('connector_id')}",
        f"  {body.get('start_ts', '')} → {body.get('end_ts', '')}",
        f"  energy {body.get('energy_kwh')} kWh, total {fixed(body.get('total_money_yuan'), 2)} "
        "yuan",
    ]
    for d in body.get("charge_details", []) or []:
        lines.append(
            f"  {d.get('start_ts', '')}–{d.get('end_ts', '')}: {fixed(d.get('energy_kwh'), 2)} "
            f"kWh × ({fixed(d.get('elec_price_yuan_per_kwh'), 4)} + "
            f"{fixed(d.get('service_price_yuan_per_kwh'), 4)}) = "
            f"{fixed(d.get('elec_money_yuan'), 2)} + {fixed(d.get('service_money_yuan'), 2)} yuan"
        )
    lines.append(
        f"  ledger seq {receipt.record.get('seq')}, hash {str(receipt.record.get('hash'))[:16]}…, "
        f"attested {receipt.attestation.ts}"
    )
    return lines


def now_utc() -> float:
    return dt.datetime.now(dt.UTC).timestamp()
