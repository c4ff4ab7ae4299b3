"""`evgw keys …` and `evgw ledger …` through the real CLI entry point."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from agent.cli import main
from agent.ledger import GatewayKey, Ledger
from tests.ledger.helpers import record


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


async def make_ledger(path: Path, key: GatewayKey) -> None:
    ledger = await Ledger.open(path, gateway_id="GW1", key=key)
    for n in range(12):
        kind = "charge_order" if n % 4 == 0 else "meter_sample"
        await ledger.append(record(kind, n=n))
    await ledger.ack("mqtt", 8)
    await ledger.park("cec", 3, "4004")
    await ledger.close()


@pytest.fixture(autouse=True)
def no_default_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVGW_CONFIG", str(tmp_path / "absent.toml"))


def test_keys_generate_show_and_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    key = tmp_path / "gw.key"
    rc, out, _ = run(capsys, "keys", "generate", "--key", str(key))
    assert rc == 0
    assert os.stat(key).st_mode & 0o777 == 0o600
    loaded = GatewayKey.load(key)
    assert loaded.fingerprint in out
    rc, out, _ = run(capsys, "keys", "show", "--key", str(key))
    assert rc == 0
    assert "-----BEGIN PUBLIC KEY-----" in out
    assert f"fingerprint (key id): {loaded.fingerprint}" in out
    assert loaded.public_der_hex in out
    rc, _, err = run(capsys, "keys", "generate", "--key", str(key))
    assert rc == 1 and "refusing to overwrite" in err
    os.chmod(key, 0o640)
    rc, _, err = run(capsys, "keys", "show", "--key", str(key))
    assert rc == 1 and f"chmod 600 {key}" in err
    rc, _, err = run(capsys, "keys", "show")
    assert rc == 2 and "pass --key PATH" in err


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ledger", "stats", "--bogus"])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


async def test_export_verify_stats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = GatewayKey.generate()
    key_path = tmp_path / "gw.key"
    key.save(key_path)
    pub = tmp_path / "gw.pub"
    pub.write_text(key.public_pem)
    db = tmp_path / "l.db"
    await make_ledger(db, key)

    out_file = tmp_path / "export.jsonl"
    rc, _, err = run(capsys, "ledger", "export", "--ledger", str(db), "-o", str(out_file))
    assert rc == 0 and "wrote 13 lines" in err  # 12 records + final checkpoint
    rc, out, _ = run(capsys, "ledger", "verify", str(out_file), "--pubkey", str(pub))
    assert rc == 0
    assert out.startswith("OK: 12 records (seq 1..12), 1 valid checkpoints, signed up to seq 12")
    # the ledger file itself, with the public half of --key
    rc, out, _ = run(capsys, "ledger", "verify", str(db), "--key", str(key_path))
    assert rc == 0 and out.startswith("OK: 12 records")

    lines = out_file.read_bytes().splitlines()
    obj = json.loads(lines[4])
    obj["body"]["n"] = 1000
    lines[4] = json.dumps(obj).encode()
    del lines[8]
    out_file.write_bytes(b"\n".join(lines) + b"\n")
    rc, out, _ = run(capsys, "ledger", "verify", str(out_file), "--pubkey", str(pub))
    assert rc == 1
    assert out.startswith("FAILED: first broken link at seq 5: edited:")
    assert "seq 9: missing: record 9 is missing" in out

    rc, out, _ = run(
        capsys, "ledger", "export", "--ledger", str(db), "--from", "2", "--to", "4",
        "--kind", "charge_order",
    )  # fmt: skip
    exported = [json.loads(x) for x in out.splitlines()]
    assert [("stub" in x, x.get("seq") or x["stub"]["seq"]) for x in exported] == [
        (True, 2), (True, 3), (True, 4)
    ]  # fmt: skip

    rc, out, _ = run(capsys, "ledger", "stats", "--ledger", str(db), "--json")
    stats = json.loads(out)
    assert stats["kinds"] == {
        "charge_order": {"stored": 3, "dropped": 0},
        "meter_sample": {"stored": 9, "dropped": 0},
    }
    assert stats["uplinks"] == [
        {"uplink": "cec", "cursor": 0, "backlog": 11, "parked": 1},
        {"uplink": "mqtt", "cursor": 8, "backlog": 4, "parked": 0},
    ]
    assert stats["last_checkpoint"]["seq"] == 12
    rc, out, _ = run(capsys, "ledger", "stats", "--ledger", str(db))
    assert "mqtt       cursor          8  backlog          4" in out


def test_keys_rotate_then_verify_with_the_old_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_path = tmp_path / "gw.key"
    old = GatewayKey.generate()
    old.save(key_path)
    db = tmp_path / "l.db"
    asyncio.run(make_ledger(db, old))  # the command runs its own loop: none may be running
    rc, out, _ = run(capsys, "keys", "rotate", "--key", str(key_path), "--ledger", str(db))
    assert rc == 0, out
    assert "announced the new key in ledger record seq 13" in out
    new = GatewayKey.load(key_path)
    assert new.fingerprint != old.fingerprint
    retired = tmp_path / f"gw.key.retired-{old.fingerprint[:16]}"
    assert GatewayKey.load(retired).fingerprint == old.fingerprint
    old_pub = tmp_path / "old.pub"
    old_pub.write_text(old.public_pem)
    rc, out, _ = run(capsys, "ledger", "verify", str(db), "--pubkey", str(old_pub))
    assert rc == 0, out
    assert "followed 1 key rotation" in out


def test_missing_ledger_and_bad_pubkey(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    rc, _, err = run(capsys, "ledger", "stats", "--ledger", str(tmp_path / "none.db"))
    assert rc == 1 and "does not exist" in err
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    (tmp_path / "x.jsonl").write_text("")
    rc, _, err = run(capsys, "ledger", "verify", str(tmp_path / "x.jsonl"), "--pubkey", str(bad))
    assert rc == 2 and "not a P-256 public key" in err
    rc, _, err = run(capsys, "ledger", "verify", str(tmp_path / "x.jsonl"))
    assert rc == 2 and "--pubkey" in err
