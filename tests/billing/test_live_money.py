"""Money while a session runs and in its OCMF record (#13 item 2): the live
``notification_equip_charge_status`` carries the bill so far (details split at the boundary,
totals their exact sums, accepted by the strict receiver's schema), and the OCMF string of the
order names its tariff (``TT``) and still verifies."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from pyocmf import OCMF

from agent.ledger import GatewayKey
from agent.records.bodies import ConnectorStatusBody
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from agent.uplink.cec.codec import decode_business, encode_business
from agent.uplink.cec.mapping import MappingContext, equip_charge_status
from agent.uplink.cec.rules import validate
from sim.charging import SimOptions, VehicleProfile, generate
from sim.platform_schemas import SCHEMAS
from tests.station.sim_runner import MeterPlan, run_sim
from tests.station.station_fixtures import AC, DC, make_config, of
from tests.station.test_station_model import reading, run

T0 = 1_700_000_000.0  # 06:13:20 station time; the tariff below changes at 06:15
TARIFF = """
[[tariffs]]
id = "std"
default = true
periods = [
  { start = "00:00", type = "valley", elec_price = 0.3100, service_price = 0.8000 },
  { start = "06:15", type = "flat", elec_price = 0.6200, service_price = 0.8000 },
]
"""
CTX = MappingContext(operator_id="MA5DA0053", equipment_owner_id="MA5DA0053", station_name="S")


def test_live_samples_carry_the_money_so_far() -> None:
    model = StationModel(make_config(meters=True, extra=TARIFF))
    out = model.startup([], T0)
    energy = 100.0
    events = [reading(T0 + i, energy, 0.0) for i in range(5)]
    for i in range(300):
        energy += 230.0 * 32 / 3.6e6
        events.append(reading(T0 + 5 + i, energy, 32.0))
    out += run(model, events)
    charging = [r for r in of(out, "connector_status", AC) if r.body["status"] == 3]
    before, last = charging[1], charging[-1]
    # the record holds the exact decimal text, the decoded body the Decimal
    assert [d["elec_price_yuan_per_kwh"] for d in before.body["charge_details"]] == ["0.3100"]
    body = msgspec.convert(last.body, ConnectorStatusBody)
    prices = [d.elec_price_yuan_per_kwh for d in body.charge_details]
    assert prices == [Decimal("0.31"), Decimal("0.62")]
    sample_s = T0 + 5 + 299
    wire = decode_business(encode_business(equip_charge_status(AC, body, sample_s, CTX) or {}))
    assert validate(wire, SCHEMAS["notification_equip_charge_status"]) is None
    assert wire["SumPeriod"] == 2 and len(wire["ChargeDetails"]) == 2
    powers = [d["DetailPower"] for d in wire["ChargeDetails"]]
    assert sum(powers) == wire["TotalPower"] > 0
    for detail, total in (("DetailElecMoney", "ElecMoney"), ("DetailSeviceMoney", "SeviceMoney")):
        assert sum(d[detail] for d in wire["ChargeDetails"]) == wire[total]
    assert wire["TotalMoney"] == wire["ElecMoney"] + wire["SeviceMoney"] > Decimal(0)


def test_ocmf_names_the_tariff_and_verifies() -> None:
    key = GatewayKey.generate()
    signer = OcmfSigner(key, gateway_id="gw-test", software_version="1.0")
    s = generate(VehicleProfile(capacity_ah=20.0), options=SimOptions())
    config = make_config(meters=True, extra=TARIFF)
    records = run_sim(s, config, meter=MeterPlan(), signer=signer).records
    [order] = of(records, "charge_order", DC)
    parsed = OCMF.from_string(order.body["ocmf"])
    assert parsed.verify_signature(key.public_der_hex)
    assert parsed.payload.TT == "std: 00:00 valley 0.31+0.8; 06:15 flat 0.62+0.8 CNY/kWh"
    tampered = order.body["ocmf"].replace("flat 0.62+", "flat 0.52+", 1)
    assert not OCMF.from_string(tampered).verify_signature(key.public_der_hex)


def test_no_tariff_no_tt_and_no_money() -> None:
    key = GatewayKey.generate()
    signer = OcmfSigner(key, gateway_id="gw-test", software_version="1.0")
    s = generate(VehicleProfile(capacity_ah=20.0), options=SimOptions())
    records = run_sim(s, make_config(meters=True), meter=MeterPlan(), signer=signer).records
    [order] = of(records, "charge_order", DC)
    assert '"TT"' not in order.body["ocmf"]
    charging = [r for r in of(records, "connector_status", DC) if r.body["status"] == 3]
    assert charging and all(not r.body["charge_details"] for r in charging)
    assert all(r.body["elec_money_yuan"] == "0.00" for r in charging)
