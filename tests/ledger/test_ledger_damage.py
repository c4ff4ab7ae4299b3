"""The damage matrix (issue 12): real ledger files written by a real writer process that is
SIGKILLed, then damaged on disk like a worn SD card or a power cut would.

In every case the ledger opens and writes new records, the loss is declared exactly
(compared with what the writer had acknowledged), no seq or id ever names two contents, a
second and a third open change nothing, and ``evgw ledger verify`` names what was lost or
damaged without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from agent.cli import main
from agent.ledger import GatewayKey, Ledger
from agent.ledger.chain import parse_record_id
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.verify import Report, verify_lines
from tests.ledger.damage import DAMAGE, written
from tests.ledger.helpers import record

NO_LOSS = {"garble_signature", "garble_keys"}
"""Damage that loses no record: a bad signature or keys row is set aside (in the WAL, a
flipped byte also breaks the frame's checksum: the WAL is then salvaged, losing nothing)."""
MAY_BE_HARMLESS = {"truncate_one_page"}
"""The page cut off may have a newer copy in the WAL; if not, it costs about one page."""
ROWS_PER_PAGE = 16


def file_digest(path: Path) -> str | None:
    """The file's SHA-256; None for a missing or empty one (the start-up check's read-only
    connection may leave an empty WAL where there was none)."""
    data = path.read_bytes() if path.exists() else b""
    return hashlib.sha256(data).hexdigest() if data else None


def exported(path: Path) -> tuple[list[dict[str, object]], list[bytes]]:
    conn = open_for_reading(path)
    try:
        lines = list(export_lines(conn))
    finally:
        conn.close()
    records = [json.loads(x) for x in lines if x.startswith(b'{"body"')]
    return records, lines


def declared(records: list[dict[str, object]]) -> set[int]:
    """Every seq a loss event in the ledger declares lost."""
    seqs: set[int] = set()
    for rec in records:
        body = rec["body"]
        assert isinstance(body, dict)
        if rec["kind"] == "event" and body.get("event") in ("ledger_recovered", "records_lost"):
            for loss in body["lost"]:
                seqs.update(range(loss["from_seq"], loss["to_seq"] + 1))
                assert sum(loss["kinds"].values()) + loss["unknown_kind"] == loss["count"]
    return seqs


async def open_and_check(path: Path, key: GatewayKey) -> Ledger:
    ledger = await Ledger.open(path, gateway_id="CRASH", key=key, integrity_delay_s=0)
    await ledger.integrity_checked()
    return ledger


def state_of(path: Path) -> tuple[list[str], list[bytes]]:
    """What a later open must not change: the files and every record line."""
    files = sorted(p.name for p in path.parent.iterdir() if ".corrupt-" in p.name)
    _records, lines = exported(path)
    return files, [x for x in lines if not x.startswith(b'{"checkpoint"')]


def verify_cli(capsys: pytest.CaptureFixture[str], target: Path, pub: Path) -> tuple[int, str]:
    rc = main(["ledger", "verify", str(target), "--pubkey", str(pub)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_damage_is_declared_once_and_never_stops_the_ledger(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVGW_CONFIG", str(tmp_path / "absent.toml"))
    key = GatewayKey.generate()
    key_path, pub = tmp_path / "gw.key", tmp_path / "gw.pub"
    key.save(key_path)
    pub.write_text(key.public_pem)
    path = tmp_path / "ledger.db"
    acked = written(path, key_path)
    DAMAGE[damage](path)
    damaged = {suffix: file_digest(Path(f"{path}{suffix}")) for suffix in ("", "-wal")}

    ledger = await open_and_check(path, key)
    after = await ledger.append(record("charge_order", n=1))
    recovered = ledger.recovery
    await ledger.close()

    records, lines = exported(path)
    by_seq = {int(r["seq"]): r for r in records}  # type: ignore[call-overload]
    lost = declared(records)
    # the loss is declared exactly: an acknowledged record is there, unchanged, or declared lost
    for seq, digest in acked.items():
        if seq in by_seq:
            assert by_seq[seq]["hash"] == digest, f"seq {seq} names other content"
            assert seq not in lost
        else:
            assert seq in lost, f"acknowledged record {seq} vanished without a declaration"
    assert not lost & set(by_seq), "a record declared lost is still there"
    # no seq is reused: new records come after everything the writer ever acknowledged
    assert after.seq > max(acked)
    if damage in NO_LOSS:
        assert not lost
    if damage in MAY_BE_HARMLESS:
        assert len(lost & set(acked)) <= ROWS_PER_PAGE
    if damage not in NO_LOSS | MAY_BE_HARMLESS:
        assert recovered is not None
    epoch = 0 if recovered is None else recovered.epoch
    assert parse_record_id(after.id) == ("CRASH", epoch, after.seq)
    if recovered is not None:
        assert recovered.moved_to is None or recovered.moved_to.exists()
        assert recovered.lost == len(lost)
        if recovered.moved_to is not None and not recovered.reason.startswith("integrity"):
            # recovered at open: the damaged file and its WAL are kept exactly as they were
            kept = {s: file_digest(Path(f"{recovered.moved_to}{s}")) for s in ("", "-wal")}
            assert kept == damaged
    report: Report = verify_lines(lines, [key.public])
    assert report.ok, report.problems[:5]
    assert len(report.declared) == len({r for r in report.declared})

    # a second and a third open change nothing
    before = state_of(path)
    for _ in range(2):
        ledger = await open_and_check(path, key)
        assert ledger.recovery is None and ledger.health == "ok", ledger.conditions
        await ledger.close()
        assert state_of(path) == before

    # verify names what was lost (active file) and the damage (the file moved aside)
    rc, out = verify_cli(capsys, path, pub)
    assert rc == 0, out
    if lost:
        assert "declared lost" in out
    for aside in sorted(tmp_path.glob("ledger.db.corrupt-*")):
        if aside.name.endswith(("-wal", "-shm")):
            continue
        rc, out = verify_cli(capsys, aside, pub)
        assert rc in (0, 1), out


async def test_a_recovered_gap_is_accepted_by_the_start_up_check(tmp_path: Path) -> None:
    """After a recovery that lost records, later starts keep what was written since."""
    key = GatewayKey.generate()
    key_path = tmp_path / "gw.key"
    key.save(key_path)
    path = tmp_path / "ledger.db"
    written(path, key_path)
    DAMAGE["delete_wal"](path)
    ledger = await open_and_check(path, key)
    assert ledger.recovery is not None and ledger.recovery.lost > 0
    for n in range(50):
        await ledger.append(record("charge_order", n=n))
    last = ledger.last_seq
    await ledger.close()
    for _ in range(3):
        ledger = await open_and_check(path, key)
        assert ledger.recovery is None and ledger.last_seq == last
        await ledger.close()
    conn = sqlite3.connect(path)
    assert (
        conn.execute("SELECT count(*) FROM records WHERE seq > ?", (last - 50,)).fetchone()[0] == 50
    )
    conn.close()
