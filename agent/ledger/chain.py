"""The hash chain and the signed checkpoint (DESIGN §5).

``hash = sha256(prev_bytes ‖ canonical_json(record without prev/hash))`` where ``prev_bytes``
is the 32-byte digest the hex ``prev`` spells and the first record of a chain has
``prev = "00…00"`` (64 zeros). "The record without prev/hash" is the stored envelope with its
``seq`` and ``id``, every field present (``null`` when empty), keys sorted. The ``id`` names
the chain epoch after a recovery (:func:`record_id`); seqs go on rising across epochs.

A checkpoint signs ``canonical_json({gateway_id, seq, hash, ts})`` with the gateway key, so
one signature vouches for every record up to ``seq``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

import msgspec

from agent.ledger.keys import GatewayKey, PublicKey
from agent.records.envelope import Record, StoredRecord, canonical_json

GENESIS: Final = bytes(32)
"""The ``prev`` of the first record of a chain (hex: 64 zeros)."""


class Unchained(msgspec.Struct, frozen=True, kw_only=True):
    """A stored record without ``prev``/``hash``: exactly the bytes that are hashed."""

    kind: str
    ts: str
    station_id: str
    body: dict[str, Any]
    equipment_id: str | None = None
    connector_id: str | None = None
    seq: int
    id: str


_SORTED = msgspec.json.Encoder(order="sorted")
_STORED_DECODER = msgspec.json.Decoder(StoredRecord)


def record_id(gateway_id: str, seq: int, epoch: int = 0) -> str:
    """``<gateway_id>:<seq>`` in epoch 0, ``<gateway_id>:<epoch>:<seq>`` after a recovery.

    The epoch changes at every recovery of a damaged ledger, so an id can never name two
    different records even if a damaged file lost the newest seqs (gateway ids have no ``:``).
    """
    return f"{gateway_id}:{seq}" if epoch == 0 else f"{gateway_id}:{epoch}:{seq}"


def parse_record_id(text: object) -> tuple[str, int, int] | None:
    """``(gateway_id, epoch, seq)`` of a record id, or None when it is not one."""
    if not isinstance(text, str):
        return None
    parts = text.split(":")
    numbers = parts[1:]
    if len(parts) not in (2, 3) or not all(
        p.isascii() and p.isdigit() and len(p) < 19 for p in numbers
    ):
        return None
    if len(parts) == 2:
        return parts[0], 0, int(parts[1])
    epoch = int(parts[1])
    return (parts[0], epoch, int(parts[2])) if epoch > 0 else None


def unchained_json(record: Record, seq: int, gateway_id: str, epoch: int = 0) -> bytes:
    """The canonical bytes hashed for ``record`` stored at ``seq`` in chain ``epoch``."""
    return _SORTED.encode(
        Unchained(
            kind=record.kind,
            ts=record.ts,
            station_id=record.station_id,
            body=record.body,
            equipment_id=record.equipment_id,
            connector_id=record.connector_id,
            seq=seq,
            id=record_id(gateway_id, seq, epoch),
        )
    )


def link_hash(prev: bytes, unchained: bytes) -> bytes:
    """The chain step: the digest of ``prev ‖ unchained``."""
    digest = hashlib.sha256(prev)
    digest.update(unchained)
    return digest.digest()


def stored_from_row(unchained: bytes, prev: bytes, digest: bytes) -> StoredRecord:
    """Rebuild the :class:`StoredRecord` from what the ledger keeps in a row."""
    return _STORED_DECODER.decode(
        b"".join(
            (
                unchained[:-1],
                b',"prev":"',
                prev.hex().encode(),
                b'","hash":"',
                digest.hex().encode(),
                b'"}',
            )
        )
    )


def recompute_hash(fields: dict[str, Any]) -> str:
    """Hash of an exported record (a decoded JSON object with ``prev`` and ``hash``)."""
    unchained = {k: v for k, v in fields.items() if k not in ("prev", "hash")}
    return link_hash(bytes.fromhex(fields["prev"]), canonical_json(unchained)).hex()


class Checkpoint(msgspec.Struct, frozen=True):
    """A signed statement that the chain of ``gateway_id`` reached ``hash`` at ``seq``."""

    gateway_id: str
    seq: int
    hash: str
    ts: str
    key_id: str
    sig: str
    """Base64 DER ECDSA signature over :func:`checkpoint_payload`."""


def checkpoint_payload(gateway_id: str, seq: int, hash_hex: str, ts: str) -> bytes:
    return canonical_json({"gateway_id": gateway_id, "seq": seq, "hash": hash_hex, "ts": ts})


def sign_checkpoint(
    key: GatewayKey, gateway_id: str, seq: int, hash_hex: str, ts: str
) -> Checkpoint:
    signature = key.sign(checkpoint_payload(gateway_id, seq, hash_hex, ts))
    return Checkpoint(
        gateway_id=gateway_id,
        seq=seq,
        hash=hash_hex,
        ts=ts,
        key_id=key.fingerprint,
        sig=base64.b64encode(signature).decode("ascii"),
    )


def checkpoint_signature_ok(checkpoint: Checkpoint, key: PublicKey) -> bool:
    try:
        signature = base64.b64decode(checkpoint.sig, validate=True)
    except ValueError:
        return False
    payload = checkpoint_payload(
        checkpoint.gateway_id, checkpoint.seq, checkpoint.hash, checkpoint.ts
    )
    return key.verify(signature, payload)


def rotation_payload(gateway_id: str, old_key_id: str, new_key: PublicKey) -> bytes:
    """What the old key signs when it announces its successor."""
    return canonical_json(
        {
            "event": "key_rotated",
            "gateway_id": gateway_id,
            "old_key_id": old_key_id,
            "new_key_id": new_key.fingerprint,
            "new_public_der_hex": new_key.der_hex,
        }
    )


def rotation_body(gateway_id: str, old_key: GatewayKey, new_key: PublicKey) -> dict[str, Any]:
    """The body of the ``event`` record that announces a new key, signed by the old one."""
    signature = old_key.sign(rotation_payload(gateway_id, old_key.fingerprint, new_key))
    return {
        "event": "key_rotated",
        "old_key_id": old_key.fingerprint,
        "new_key_id": new_key.fingerprint,
        "new_public_der_hex": new_key.der_hex,
        "announcement_sig": base64.b64encode(signature).decode("ascii"),
    }
