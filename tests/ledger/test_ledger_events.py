"""Every ``event`` and ``alarm`` the ledger writes about itself passes the record-body schema
(an uplink that validates bodies must never park them), and ids carry the chain epoch."""

from __future__ import annotations

from pathlib import Path

from agent.ledger import GatewayKey, Ledger
from agent.ledger.chain import parse_record_id, record_id
from agent.ledger.opening import lost_event_body
from agent.ledger.pressure import Drops
from agent.ledger.state import Abandoned
from agent.records.bodies import LedgerEventBody, decode_body
from tests.ledger.helpers import record


async def ledger_written_records(tmp_path: Path) -> list[tuple[str, dict[str, object]]]:
    """A recovery, retention drops and a key rotation, as the ledger writes them."""
    key = GatewayKey.generate()
    path = tmp_path / "l.db"
    path.write_bytes(b"not a ledger" * 100)
    ledger = await Ledger.open(path, gateway_id="GW1", key=key, size_cap_bytes=96 * 1024)
    await ledger.register_uplink("mqtt")
    for n in range(600):
        ledger.append_nowait(record("meter_sample", n=n, pad="s" * 300))
    await ledger.flush()
    await ledger.rotate_key(GatewayKey.generate())
    batch = await ledger.read_batch("audit", 10_000)
    await ledger.close()
    return [(r.kind, r.body) for r in batch if r.kind in ("event", "alarm")]


async def test_every_ledger_event_and_alarm_fits_the_body_schema(tmp_path: Path) -> None:
    written = await ledger_written_records(tmp_path)
    events = {body["event"] for kind, body in written if kind == "event"}
    assert {"ledger_recovered", "retention_dropped", "key_rotated"} <= events
    for kind, body in written:
        decoded = decode_body(kind, body)
        if kind == "event":
            assert isinstance(decoded, LedgerEventBody)
    gone = Abandoned(from_seq=5, to_seq=9, kinds={"charge_order": 5}, dropped=[])
    drops = Drops()
    drops.add("meter_sample", 3)
    for body in (lost_event_body(gone), drops.event_body("write_failed", 1024)):
        assert isinstance(decode_body("event", body), LedgerEventBody)


def test_ids_name_the_epoch_after_a_recovery() -> None:
    assert record_id("GW1", 7) == "GW1:7"
    assert record_id("GW1", 7, epoch=2) == "GW1:2:7"
    assert parse_record_id("GW1:7") == ("GW1", 0, 7)
    assert parse_record_id("GW1:2:7") == ("GW1", 2, 7)
    for bad in ("GW1", "GW1:0:7", "GW1:x:7", "GW1:1:2:3", "GW1:" + "9" * 5000, 7, None):
        assert parse_record_id(bad) is None
