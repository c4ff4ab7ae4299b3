"""OCMF strings of orders: an independent verifier (pyocmf) accepts them, and rejects them
when one reading is changed; the transaction counter continues."""

from __future__ import annotations

import pytest
from pyocmf import OCMF

from agent.ledger import GatewayKey
from agent.station.ocmf import OcmfReading, OcmfSigner, ocmf_time, pagination_of
from sim.charging import SimOptions, VehicleProfile, generate
from tests.station.sim_runner import MeterPlan, run_sim
from tests.station.station_fixtures import DC, make_config, of


def _sign(signer: OcmfSigner, begin_kwh: float = 1234.5, end_kwh: float = 1240.125) -> str:
    return signer.sign_order(
        meter_serial="dc1",
        meter_model="djsf1352",
        connector_id=DC,
        session_id=f"{DC}-20231226030847487",
        current_type="DC",
        begin=OcmfReading(1703560127.487, begin_kwh, "B"),
        end=OcmfReading(1703560174.273, end_kwh, "L"),
    )


def test_order_ocmf_verifies_and_fails_when_a_reading_changes() -> None:
    key = GatewayKey.generate()
    signer = OcmfSigner(key, gateway_id="gw-test", software_version="1.0")
    s = generate(VehicleProfile(capacity_ah=20.0), options=SimOptions())
    records = run_sim(s, make_config(meters=True), meter=MeterPlan(), signer=signer).records
    [order] = of(records, "charge_order", DC)
    text = order.body["ocmf"]
    parsed = OCMF.from_string(text)
    assert parsed.verify_signature(key.public_der_hex)
    begin, end = parsed.payload.RD
    assert (begin.TX.value, end.TX.value) == ("B", "E")  # BMS reached its SOC target
    assert float(begin.RV) == order.body["meter_energy_start_kwh"]
    assert float(end.RV) == pytest.approx(order.body["meter_energy_end_kwh"], abs=0.0005)
    assert parsed.payload.MS == "dc1" and parsed.payload.CI == DC
    for old in (f'"RV":{begin.RV}', f'"RV":{end.RV}'):
        changed = text.replace(old, old[:-1] + ("1" if old[-1] != "1" else "2"), 1)
        assert changed != text
        assert not OCMF.from_string(changed).verify_signature(key.public_der_hex)
    # another key does not verify it either
    assert not parsed.verify_signature(GatewayKey.generate().public_der_hex)


def test_readings_keep_three_decimals_and_the_time_format() -> None:
    signer = OcmfSigner(GatewayKey.generate(), gateway_id="gw|1", software_version="1.0")
    text = _sign(signer, 1234.5, 1240.125)
    payload = text.split("|")[1]
    assert '"RV":1234.500' in payload and '"RV":1240.125' in payload
    assert '"GS":"gw/1"' in payload  # no "|" inside a section
    assert ocmf_time(1703560127.487, "S") == "2023-12-26T03:08:47,487+0000 S"
    assert text.count("|") == 2


def test_pagination_continues_from_the_last_counter() -> None:
    key = GatewayKey.generate()
    signer = OcmfSigner(key, gateway_id="gw", software_version="1.0", last_pagination=41)
    first, second = _sign(signer), _sign(signer)
    assert (pagination_of(first), pagination_of(second)) == (42, 43)
    assert OCMF.from_string(second).payload.PG == "T43"
    assert pagination_of("not ocmf") is None
    assert pagination_of("OCMF|{broken|{}") is None
