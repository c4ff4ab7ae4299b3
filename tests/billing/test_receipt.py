"""`evgw receipt`: a receipt built from a real ledger verifies offline with the gateway's public
key; a tampered receipt, a foreign key or a receipt of another record is refused; `evgw qr`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.ledger import Ledger
from tests.ledger.helpers import key_file
from tests.uplink.conftest import order_record, status_record

EVGW = [sys.executable, "-m", "agent.cli"]


def evgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVGW, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
async def station_ledger(tmp_path: Path) -> tuple[Path, Path, Path]:
    key, key_path = key_file(tmp_path)
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path, gateway_id="gw-test", key=key, commit_interval_s=0.01)
    for i in range(5):
        ledger.append_nowait(status_record(offset_s=i))
    await ledger.append(order_record("SESSION-1"))
    for i in range(5):
        ledger.append_nowait(status_record(offset_s=10 + i))
    await ledger.checkpoint()
    await ledger.close()
    pub = tmp_path / "gateway.pub"
    shown = evgw("keys", "show", "--key", str(key_path))
    assert shown.returncode == 0, shown.stderr
    pub.write_text(
        shown.stdout[
            shown.stdout.index("-----BEGIN") : shown.stdout.index("-----END PUBLIC KEY-----") + 24
        ]
        + "\n"
    )
    return path, key_path, pub


def test_receipt_verifies_offline(station_ledger: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ledger, key, pub = station_ledger
    made = evgw(
        "receipt",
        "SESSION-1",
        "--ledger",
        str(ledger),
        "--key",
        str(key),
        "-o",
        str(tmp_path / "r.json"),
    )
    assert made.returncode == 0, made.stderr
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["record"]["kind"] == "charge_order" and receipt["record"]["seq"] == 6
    assert (
        receipt["attestation"]["seq"] == 6
        and receipt["attestation"]["hash"] == receipt["record"]["hash"]
    )
    assert receipt["ledger_checkpoint"]["seq"] >= 6
    checked = evgw("receipt", "verify", str(tmp_path / "r.json"), "--pubkey", str(pub))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK:" in checked.stdout and "energy 30.125 kWh, total 45.50 yuan" in checked.stdout
    assert receipt["record"]["body"]["total_money_yuan"] == "45.50"  # the exact text, hashed


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda r: r["record"]["body"].update(total_money_yuan="45.51"), "the order was changed"),
        (lambda r: r["record"]["body"].update(energy_kwh=3.0), "the order was changed"),
        (lambda r: r["attestation"].update(seq=5), "the attestation is for another record"),
        (
            lambda r: r["attestation"].update(ts="2030-01-01T00:00:00.000Z"),
            "signature does not verify",
        ),
        (lambda r: r["record"].update(kind="alarm"), "not a charging order"),
    ],
)
def test_tampered_receipt_is_refused(
    station_ledger: tuple[Path, Path, Path], tmp_path: Path, tamper, reason: str
) -> None:
    ledger, key, pub = station_ledger
    made = evgw("receipt", "SESSION-1", "--ledger", str(ledger), "--key", str(key))
    receipt = json.loads(made.stdout)
    tamper(receipt)
    (tmp_path / "bad.json").write_text(json.dumps(receipt))
    checked = evgw("receipt", "verify", str(tmp_path / "bad.json"), "--pubkey", str(pub))
    assert checked.returncode == 1 and "FAILED" in checked.stdout and reason in checked.stdout


def test_foreign_key_and_bad_input(station_ledger: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ledger, key, _pub = station_ledger
    made = evgw("receipt", "SESSION-1", "--ledger", str(ledger), "--key", str(key), "--qr")
    assert made.returncode == 0 and "session SESSION-1" in made.stderr and "█" in made.stderr
    (tmp_path / "r.json").write_text(made.stdout)
    _other, other_key = key_file(tmp_path, "other.key")
    shown = evgw("keys", "show", "--key", str(other_key)).stdout
    (tmp_path / "other.pub").write_text(
        shown[shown.index("-----BEGIN") : shown.index("-----END PUBLIC KEY-----") + 24] + "\n"
    )
    foreign = evgw(
        "receipt", "verify", str(tmp_path / "r.json"), "--pubkey", str(tmp_path / "other.pub")
    )
    assert foreign.returncode == 1 and "not by the key given" in foreign.stdout
    (tmp_path / "junk.json").write_bytes(b"\xff{not json")
    junk = evgw(
        "receipt", "verify", str(tmp_path / "junk.json"), "--pubkey", str(tmp_path / "other.pub")
    )
    assert (
        junk.returncode == 2
        and "not an evgw receipt" in junk.stderr
        and "Traceback" not in junk.stderr
    )
    missing = evgw("receipt", "NO-SUCH-SESSION", "--ledger", str(ledger), "--key", str(key))
    assert (
        missing.returncode == 1
        and "no charging order for session 'NO-SUCH-SESSION'" in missing.stderr
    )
    usage = evgw("receipt", "verify", str(tmp_path / "r.json"))
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_connector_qr_code(tmp_path: Path) -> None:
    from agent.config.resources import read_resource

    config = tmp_path / "evgw.toml"
    config.write_text(read_resource("evgw.example.toml"))
    shown = evgw("qr", "SZFT0001DC0101", "--config", str(config), "--data", "A1")
    assert (
        shown.returncode == 0
        and shown.stdout.splitlines()[0] == "hlht://SZFT0001DC0101.MA5DA0053/A1"
    )
    image = evgw("qr", "SZFT0001DC0101", "--config", str(config), "--out", str(tmp_path / "qr.png"))
    assert image.returncode == 0 and (tmp_path / "qr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unknown = evgw("qr", "NOPE", "--config", str(config))
    assert unknown.returncode == 2 and "no connector 'NOPE'" in unknown.stderr
    bad = evgw("qr", "has-dash", "--operator-id", "MA5DA0053")
    assert bad.returncode == 2 and "letters, digits and _ only" in bad.stderr
