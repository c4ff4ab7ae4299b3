"""Export and verify: a clean export holds; every kind of tampering is named with its seq."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.verify import Report, verify_lines
from tests.ledger.helpers import record

KINDS = ["meter_sample", "bms_process", "charge_order", "alarm", "meter_sample"]


async def build(path: Path, key: GatewayKey, count: int = 30, gateway_id: str = "GW1") -> None:
    ledger = await Ledger.open(path, gateway_id=gateway_id, key=key)
    for n in range(count):
        await ledger.append(record(KINDS[n % len(KINDS)], n=n, session_id=f"S{n // 10}"))
        if n % 7 == 6:
            await ledger.checkpoint()
    await ledger.close()  # final checkpoint


def lines_of(path: Path, **kw: object) -> list[bytes]:
    conn = open_for_reading(path)
    try:
        return list(export_lines(conn, **kw))  # type: ignore[arg-type]
    finally:
        conn.close()


def index_of(lines: list[bytes], seq: int) -> int:
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj.get("seq") == seq:
            return i
    raise AssertionError(f"seq {seq} not exported")


def problems(report: Report) -> list[tuple[int | None, str]]:
    return sorted((p.seq, p.what) for p in report.problems)


@pytest.fixture
async def exported(tmp_path: Path) -> tuple[GatewayKey, list[bytes]]:
    key = GatewayKey.generate()
    await build(tmp_path / "l.db", key)
    return key, lines_of(tmp_path / "l.db")


async def test_clean_export_verifies(exported: tuple[GatewayKey, list[bytes]]) -> None:
    key, lines = exported
    report = verify_lines(lines, [key.public])
    assert report.ok, report.problems
    assert (report.records, report.first_seq, report.last_seq) == (30, 1, 30)
    assert report.checkpoints_ok == 5  # seq 7, 14, 21, 28 and the final one at 30
    assert report.signed_upto == 30
    cps = [json.loads(x)["checkpoint"]["seq"] for x in lines if b'"checkpoint"' in x[:14]]
    assert cps == [7, 14, 21, 28, 30]


async def test_edited_body_is_named(exported: tuple[GatewayKey, list[bytes]]) -> None:
    key, lines = exported
    i = index_of(lines, 7)
    obj = json.loads(lines[i])
    obj["body"]["power_kw"] = 99.0
    lines[i] = json.dumps(obj).encode()
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(7, "edited")]
    assert report.first_problem is not None and report.first_problem.seq == 7


async def test_edited_and_rehashed_record_breaks_the_next_link(
    exported: tuple[GatewayKey, list[bytes]],
) -> None:
    from agent.ledger.chain import recompute_hash

    key, lines = exported
    i = index_of(lines, 9)
    obj = json.loads(lines[i])
    obj["body"]["power_kw"] = 0.0
    obj["hash"] = recompute_hash(obj)
    lines[i] = json.dumps(obj).encode()
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(10, "broken_link")]


async def test_deleted_line_is_a_missing_record(exported: tuple[GatewayKey, list[bytes]]) -> None:
    key, lines = exported
    del lines[index_of(lines, 10)]
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(10, "missing")]


async def test_swapped_lines_are_reordered(exported: tuple[GatewayKey, list[bytes]]) -> None:
    key, lines = exported
    i, j = index_of(lines, 12), index_of(lines, 13)
    lines[i], lines[j] = lines[j], lines[i]
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(12, "reordered")]


async def test_duplicated_line(exported: tuple[GatewayKey, list[bytes]]) -> None:
    key, lines = exported
    i = index_of(lines, 15)
    lines.insert(i + 1, lines[i])
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(15, "duplicate")]
    assert "same content" in report.problems[0].message


async def test_checkpoint_replayed_from_another_key(
    tmp_path: Path, exported: tuple[GatewayKey, list[bytes]]
) -> None:
    key, lines = exported
    other = GatewayKey.generate()
    await build(tmp_path / "other.db", other)  # same gateway id, same records, other key
    foreign = [x for x in lines_of(tmp_path / "other.db") if x.startswith(b'{"checkpoint"')]
    replayed = json.loads(foreign[0])  # signs seq 7 with the other key
    lines.insert(index_of(lines, 7) + 1, json.dumps(replayed).encode())
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(7, "unknown_key")]
    # the same signature presented under the trusted key id: a bad signature
    replayed["checkpoint"]["key_id"] = key.fingerprint
    lines.insert(index_of(lines, 7) + 1, json.dumps(replayed).encode())
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(7, "bad_signature"), (7, "unknown_key")]


async def test_wrong_trusted_key_fails_every_checkpoint(
    exported: tuple[GatewayKey, list[bytes]],
) -> None:
    _key, lines = exported
    report = verify_lines(lines, [GatewayKey.generate().public])
    whats = {p.what for p in report.problems}
    assert whats == {"unknown_key", "unsigned_tail"}


async def test_unsigned_tail(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    ledger = await Ledger.open(tmp_path / "l.db", gateway_id="GW1", key=key)
    for n in range(5):
        await ledger.append(record(n=n))
    await ledger.checkpoint()
    await ledger.append(record(n=5))
    await ledger.flush()
    lines = lines_of(tmp_path / "l.db")
    await ledger.close()
    report = verify_lines(lines, [key.public])
    assert problems(report) == [(6, "unsigned_tail")]
    assert verify_lines(lines, [key.public], allow_unsigned_tail=True).ok


async def test_partial_and_kind_filtered_exports(tmp_path: Path) -> None:
    key = GatewayKey.generate()
    await build(tmp_path / "l.db", key)
    part = lines_of(tmp_path / "l.db", from_seq=8, to_seq=21)
    report = verify_lines(part, [key.public])
    assert report.ok, report.problems
    assert (report.first_seq, report.last_seq, report.signed_upto) == (8, 21, 21)
    orders = lines_of(tmp_path / "l.db", kinds=["charge_order"])
    report = verify_lines(orders, [key.public])
    assert report.ok, report.problems
    assert (report.records, report.stubs_omitted) == (6, 24)


async def test_key_rotation_is_followed_from_the_old_key(tmp_path: Path) -> None:
    old, new = GatewayKey.generate(), GatewayKey.generate()
    ledger = await Ledger.open(tmp_path / "l.db", gateway_id="GW1", key=old)
    await ledger.append(record(n=0))
    await ledger.rotate_key(new)
    await ledger.append(record(n=1))
    await ledger.close()
    lines = lines_of(tmp_path / "l.db")
    report = verify_lines(lines, [old.public])
    assert report.ok, report.problems
    assert report.keys_followed == [new.fingerprint]
    # without the announcement the new key's checkpoint is unknown
    i = next(i for i, x in enumerate(lines) if b"key_rotated" in x)
    forged = json.loads(lines[i])
    forged["body"]["announcement_sig"] = forged["body"]["announcement_sig"][::-1]
    lines[i] = json.dumps(forged).encode()
    whats = {p.what for p in verify_lines(lines, [old.public]).problems}
    assert {"edited", "unknown_key"} <= whats


def test_garbage_lines_are_malformed_not_a_crash() -> None:
    key = GatewayKey.generate()
    report = verify_lines([b"{not json", b"[1,2]", b'{"seq": "x"}', b""], [key.public])
    assert [p.what for p in report.problems] == ["malformed"] * 4
