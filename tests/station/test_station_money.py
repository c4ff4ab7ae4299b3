"""Money of a real session: the capture replayed with a tariff whose boundary falls inside the
session gives two charge details split there, non-zero money and exact sums; the order mapped
to notification_charge_order_info passes the strict receiver's checks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from agent.cli import main
from agent.records.bodies import ChargeOrderBody
from agent.records.envelope import StoredRecord
from agent.uplink.cec.codec import decode_business, encode_business
from agent.uplink.cec.mapping import MappingContext, charge_order_info
from agent.uplink.cec.rules import validate
from sim.platform_schemas import SCHEMAS, money_problem
from tests.conftest import capture_path  # noqa: F401  (fixture)
from tests.station.station_fixtures import BASE

# the capture's session runs 11:08:47-11:09:34 China time; 11:09:00 cuts it in two
TARIFF = """
[[tariffs]]
id = "std"
default = true
periods = [
  { start = "00:00", type = "flat", elec_price = 0.6200, service_price = 0.8000 },
  { start = "11:09:00", type = "peak", elec_price = 1.0200, service_price = 0.8000 },
  { start = "12:00", type = "flat", elec_price = 0.6200, service_price = 0.8000 },
]
"""


def test_capture_order_split_at_a_tariff_boundary(
    capture_path: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = tmp_path / "evgw.toml"
    cfg.write_text(BASE.replace("[[equipment]]", TARIFF + "\n[[equipment]]", 1))
    assert main(["replay", "--can", str(capture_path), "--config", str(cfg)]) == 0
    lines = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    order = next(r for r in lines if r["kind"] == "charge_order")
    body = msgspec.convert(order["body"], ChargeOrderBody)
    assert body.tariff_id == "std" and len(body.charge_details) == 2
    first, second = body.charge_details
    assert first.end_ts == second.start_ts == "2023-12-26T03:09:00.000Z"
    prices = (first.elec_price_yuan_per_kwh, second.elec_price_yuan_per_kwh)
    assert prices == (Decimal("0.62"), Decimal("1.02"))
    assert order["body"]["charge_details"][0]["elec_price_yuan_per_kwh"] == "0.6200"
    energy = [d.energy_kwh for d in body.charge_details]
    assert sum(energy) == Decimal(repr(body.energy_kwh)).quantize(Decimal("0.01"))
    assert body.total_money_yuan > 0
    assert body.total_money_yuan == body.elec_money_yuan + body.service_money_yuan
    stored = msgspec.convert(
        {**order, "seq": 1, "id": "gw:1", "prev": "0" * 64, "hash": "0" * 64}, StoredRecord
    )
    ctx = MappingContext(operator_id="MA5DA0053", equipment_owner_id="MA5DA0053", station_name="S")
    wire = decode_business(encode_business(charge_order_info(stored, body, ctx)))
    assert wire["SumPeriod"] == 2
    assert validate(wire, SCHEMAS["notification_charge_order_info"]) is None
    assert money_problem("notification_charge_order_info", wire) is None
    broken = {**wire, "TotalMoney": wire["TotalMoney"] + Decimal("0.01")}
    assert "is not TotalElecMoney + TotalSeviceMoney" in money_problem(
        "notification_charge_order_info", broken
    )
