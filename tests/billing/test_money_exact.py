"""Money is exact in the records (#13): the money and price fields of the bodies are Decimals,
held in the record as decimal strings with their fixed decimals; a record of an earlier version
(JSON numbers there) still decodes to the same figures, still verifies in its ledger and still
maps to the same T/CEC text; a record keeps its hash through the ledger, export and verify."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.billing.split import FEN, round_half_up
from agent.ledger import Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.verify import verify_lines
from agent.records.bodies import ChargeDetailBody, ChargeOrderBody, body_to_dict, decode_body
from agent.records.envelope import Record, StoredRecord, canonical_json
from agent.station.billed import AuditState, check_billed, order_figures
from agent.uplink.cec.codec import encode_business
from agent.uplink.cec.mapping import MappingContext, charge_order_info
from tests.billing.test_billed import T_END, TOL, figure, stored
from tests.ledger.helpers import key_file
from tests.uplink.conftest import order_record, ts

CTX = MappingContext(operator_id="MA5DA0053", equipment_owner_id="MA5DA0053", station_name="S")
MONEY = ("elec_money_yuan", "service_money_yuan", "total_money_yuan")
DETAIL_MONEY = ("elec_price_yuan_per_kwh", "service_price_yuan_per_kwh", "energy_kwh", *MONEY[:2])


def detail(kwh: str, elec: str, service: str) -> ChargeDetailBody:
    energy, elec_price, service_price = Decimal(kwh), Decimal(elec), Decimal(service)
    return ChargeDetailBody(
        start_ts=ts(), end_ts=ts(1800), elec_price_yuan_per_kwh=elec_price,
        service_price_yuan_per_kwh=service_price, energy_kwh=energy,
        elec_money_yuan=round_half_up(energy * elec_price, FEN),
        service_money_yuan=round_half_up(energy * service_price, FEN),
    )  # fmt: skip


def order_body(details: tuple[ChargeDetailBody, ...]) -> ChargeOrderBody:
    elec = sum((d.elec_money_yuan for d in details), Decimal("0.00"))
    service = sum((d.service_money_yuan for d in details), Decimal("0.00"))
    return ChargeOrderBody(
        session_id="SESSION-1", start_ts=ts(), end_ts=ts(3600), energy_kwh=30.125,
        duration_s=3600, stop_reason=2, tariff_id="std", elec_money_yuan=elec,
        service_money_yuan=service, total_money_yuan=elec + service, charge_details=details,
    )  # fmt: skip


def as_floats(body: dict[str, Any]) -> dict[str, Any]:
    """The body as an earlier version wrote it: money, prices and billed kWh as JSON numbers."""
    old = {k: float(v) if k in MONEY else v for k, v in body.items()}
    old["charge_details"] = [
        {k: float(v) if k in DETAIL_MONEY else v for k, v in d.items()}
        for d in body["charge_details"]
    ]
    return old


BODY = order_body((detail("12.34", "0.3100", "0.8000"), detail("17.79", "1.0200", "0.8000")))


def test_the_record_holds_decimal_strings_with_fixed_decimals() -> None:
    got = body_to_dict(BODY)
    assert (got["elec_money_yuan"], got["service_money_yuan"], got["total_money_yuan"]) == (
        "21.98",
        "24.10",
        "46.08",
    )
    first = got["charge_details"][0]
    assert (first["elec_price_yuan_per_kwh"], first["energy_kwh"], first["elec_money_yuan"]) == (
        "0.3100",
        "12.34",
        "3.83",
    )
    unbilled = ChargeOrderBody(
        session_id="S", start_ts=ts(), end_ts=ts(60), energy_kwh=1.0, duration_s=60, stop_reason=0
    )  # no tariff: money 0, with its decimals
    assert [body_to_dict(unbilled)[name] for name in MONEY] == ["0.00", "0.00", "0.00"]


def test_an_earlier_versions_float_money_decodes_to_the_same_figures() -> None:
    new = body_to_dict(BODY)
    old = as_floats(new)
    assert old["total_money_yuan"] == 46.08 and old["charge_details"][0]["energy_kwh"] == 12.34
    from_old, from_new = decode_body("charge_order", old), decode_body("charge_order", new)
    for name in MONEY:
        assert getattr(from_old, name) == getattr(from_new, name)
        assert isinstance(getattr(from_old, name), Decimal)
    for a, b in zip(from_old.charge_details, from_new.charge_details, strict=True):
        assert all(getattr(a, k) == getattr(b, k) for k in DETAIL_MONEY)
    # the T/CEC wire text is the same whichever form the record holds
    rec = stored(Record(kind="charge_order", ts=ts(3600), station_id="S1", body=new))
    old_rec = stored(Record(kind="charge_order", ts=ts(3600), station_id="S1", body=old))
    wire = encode_business(charge_order_info(rec, from_new, CTX))
    assert encode_business(charge_order_info(old_rec, from_old, CTX)) == wire
    assert b'"TotalMoney":46.08' in wire and b'"ElecPrice":0.3100' in wire
    # and the billed audit reads the same own money
    assert (
        order_figures(from_old) == order_figures(from_new) == (Decimal("30.125"), Decimal("46.08"))
    )


def test_the_billed_audit_of_an_earlier_versions_order() -> None:
    new = body_to_dict(decode_body("charge_order", order_record().body))
    old = {**new, "total_money_yuan": 45.5, "elec_money_yuan": 30.0, "service_money_yuan": 15.5}
    rec = stored(Record(kind="charge_order", ts=ts(3600), station_id="S1", body=old))
    records, result = check_billed(rec, figure("30.125", "45.50"), TOL, AuditState(), T_END)
    assert result["agrees"] is True and records[0].body["details"]["own_yuan"] == "45.50"


amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
prices = st.decimals(min_value=0, max_value=10, places=4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(amounts, prices, prices), min_size=0, max_size=8))
def test_any_orders_money_survives_dict_json_and_decode_exactly(
    lines: list[tuple[Decimal, Decimal, Decimal]],
) -> None:
    body = order_body(tuple(detail(str(k), str(e), str(s)) for k, e, s in lines))
    as_dict = body_to_dict(body)
    text = msgspec.json.encode(as_dict)
    again = decode_body("charge_order", msgspec.json.decode(text))
    assert again == body
    for name in MONEY:  # the same digits, not only the same value
        assert str(getattr(again, name)) == str(getattr(body, name))
    for a, b in zip(again.charge_details, body.charge_details, strict=True):
        assert [str(getattr(a, k)) for k in DETAIL_MONEY] == [
            str(getattr(b, k)) for k in DETAIL_MONEY
        ]
    assert body_to_dict(again) == as_dict  # the dict the ledger hashed, after a load
    assert again.total_money_yuan == again.elec_money_yuan + again.service_money_yuan


async def test_money_records_keep_their_hash_through_the_ledger_export_and_verify(
    tmp_path: Path,
) -> None:
    key, _path = key_file(tmp_path)
    path = tmp_path / "ledger.db"
    new = Record(kind="charge_order", ts=ts(3600), station_id="S1", connector_id="C1",
                 body=body_to_dict(BODY))  # fmt: skip
    old = Record(kind="charge_order", ts=ts(3700), station_id="S1", connector_id="C1",
                 body=as_floats(body_to_dict(BODY)))  # fmt: skip
    ledger = await Ledger.open(path, gateway_id="gw-test", key=key, commit_interval_s=0.01)
    try:
        written = [await ledger.append(new), await ledger.append(old)]
        await ledger.checkpoint()
        batch = await ledger.read_after(0, 10)
    finally:
        await ledger.close()
    read = [r for r in batch if r.kind == "charge_order"]
    assert [r.hash for r in read] == [w.hash for w in written]
    assert canonical_json(read[0].body) == canonical_json(new.body)
    assert read[0].body["total_money_yuan"] == "46.08"
    assert read[1].body["total_money_yuan"] == 46.08  # an earlier version's record, as it was
    conn = open_for_reading(path)
    try:
        lines = list(export_lines(conn))
    finally:
        conn.close()
    report = verify_lines(lines, [key.public])
    assert report.ok, report.problems[:5]
    exported = [msgspec.json.decode(x) for x in lines if x.startswith(b'{"body"')]
    orders = [msgspec.convert(x, StoredRecord) for x in exported if x["kind"] == "charge_order"]
    assert [o.hash for o in orders] == [w.hash for w in written]
    assert canonical_json(orders[0].body) == canonical_json(new.body)
    # both map to the same money on the wire
    wires = [
        encode_business(charge_order_info(o, decode_body("charge_order", o.body), CTX))
        for o in orders
    ]
    assert wires[0] == wires[1]
