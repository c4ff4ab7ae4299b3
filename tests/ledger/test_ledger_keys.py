"""The gateway key: generation, file permissions, public forms, rotation."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agent.errors import UserError
from agent.ledger import GatewayKey, Ledger
from agent.ledger.chain import checkpoint_signature_ok, rotation_payload
from agent.ledger.keys import PublicKey
from tests.ledger.helpers import record


def test_saved_key_is_private_and_round_trips(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    path = tmp_path / "k.pem"
    key.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = GatewayKey.load(path)
    assert loaded.fingerprint == key.fingerprint
    assert loaded.fingerprint == hashlib.sha256(bytes.fromhex(key.public_der_hex)).hexdigest()
    assert key.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    der = serialization.load_pem_public_key(key.public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert der.hex().upper() == key.public_der_hex
    signature = key.sign(b"payload")
    assert PublicKey.from_text(key.public_pem, "pem").verify(signature, b"payload")
    assert PublicKey.from_text(key.public_der_hex, "hex").verify(signature, b"payload")
    assert not key.public.verify(signature, b"other payload")
    with pytest.raises(UserError, match="refusing to overwrite"):
        key.save(path)


def test_key_readable_by_others_is_refused_with_fix(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    GatewayKey.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError) as err:
        GatewayKey.load(path)
    assert "mode 0644" in str(err.value)
    assert f"chmod 600 {path}" in str(err.value)


def test_missing_and_garbage_key_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist; create it with `evgw keys generate"):
        GatewayKey.load(tmp_path / "none.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(UserError, match="not an unencrypted PEM private key"):
        GatewayKey.load(bad)
    with pytest.raises(UserError, match="not a P-256 public key"):
        PublicKey.from_text("zz", "cli")


async def test_rotation_is_announced_by_the_old_key(tmp_path: Path) -> None:
    old, new = GatewayKey.generate(), GatewayKey.generate()
    ledger = await Ledger.open(tmp_path / "l.db", gateway_id="GW1", key=old)
    await ledger.append(record(n=1))
    event = await ledger.rotate_key(new)
    assert event.kind == "event"
    assert event.body["new_key_id"] == new.fingerprint
    assert event.body["old_key_id"] == old.fingerprint
    sig = base64.b64decode(event.body["announcement_sig"])
    assert old.public.verify(sig, rotation_payload("GW1", old.fingerprint, new.public))
    await ledger.append(record(n=2))
    cp = await ledger.checkpoint()
    assert cp.key_id == new.fingerprint
    assert checkpoint_signature_ok(cp, new.public)
    assert ledger.key_id == new.fingerprint
    await ledger.close()
