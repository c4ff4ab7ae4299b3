"""Gateway restart mid-session: when the session does not continue and the meter does not
answer, the open session's order is written as interrupted once the resume window has passed,
from what the ledger holds, exactly once (the other cases: test_station_resume.py)."""

from __future__ import annotations

from pathlib import Path

from pyocmf import OCMF

from agent.ledger import GatewayKey, Ledger
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from agent.station.writer import (
    StationWriter,
    last_pagination,
    load_open_sessions,
    recent_orders,
)
from sim.charging import SimOptions, VehicleProfile, generate
from tests.station.sim_runner import MeterPlan, run_sim
from tests.station.station_fixtures import DC, make_config


async def test_order_closed_as_interrupted_after_restart(tmp_path: Path) -> None:
    cfg = make_config(meters=True)
    key = GatewayKey.generate()
    path = tmp_path / "ledger.db"
    s = generate(VehicleProfile(capacity_ah=20.0), options=SimOptions())
    charging = s.curve[0].ts
    # first run: 120 s into charging (two heartbeats with the meter register), then power cut
    cut = [f for f in s.frames if f.ts < charging + 120]
    ledger = await Ledger.open(path, gateway_id="gw-test", key=key)
    model = StationModel(cfg, signer=OcmfSigner(key, gateway_id="gw-test", software_version="t"))
    first = run_sim(s, cfg, frames=cut, meter=MeterPlan(), model=model, finish=False).records
    orders: list = []
    for r in first:
        ledger.append_nowait(r)
    await ledger.close()
    session_id = next(r.body["session_id"] for r in first if r.kind == "bms_process")
    last_status = [r for r in first if r.kind == "connector_status" and r.connector_id == DC][-1]
    assert last_status.body["status"] == 3 and last_status.body["session_id"] == session_id

    # second run: the writer finds the open session, the model holds it for the resume
    # window (nothing on the bus, no meter reading) and then closes it
    for _ in range(2):
        ledger = await Ledger.open(path, gateway_id="gw-test", key=key)
        signer = OcmfSigner(key, gateway_id="gw-test", software_version="t")
        writer = StationWriter(
            StationModel(cfg, signer=signer), ledger, clock=lambda: charging + 600
        )
        await writer.start()
        assert await ledger.find("charge_order", session_id=session_id, limit=2) in ([], orders)
        window_s = cfg.sampling.resume_window_s
        for r in writer.model.tick(charging + 600 + window_s):
            ledger.append_nowait(r)
        await ledger.flush()
        orders = await ledger.find("charge_order", session_id=session_id)
        identities = await ledger.find("identity")
        await ledger.close()
        assert len(orders) == 1  # the second restart adds nothing
    assert len(identities) == 3  # one per start
    o = orders[0].body
    assert o["interrupted"] is True
    assert o["end_reason"] == "gateway_restart"
    assert o["stop_reason"] == 4
    # the last fact of the session the ledger holds (a battery record after the heartbeat)
    assert o["end_ts"] == max(r.ts for r in first if r.body.get("session_id") == session_id)
    assert o["meter_energy_start_kwh"] == 1000.0
    assert o["meter_energy_end_kwh"] == last_status.body["energy_kwh"]
    assert o["energy_kwh"] == round(last_status.body["energy_kwh"] - 1000.0, 3)
    assert o["soc_start_pct"] == 30
    assert o["vin"] == s.expected.vin
    parsed = OCMF.from_string(o["ocmf"])
    assert parsed.verify_signature(key.public_der_hex)
    assert parsed.payload.RD[1].TX.value == "P"  # ended by a power failure
    assert parsed.payload.RD[1].ST.value == "T"  # not a reading after the end
    assert o["end_ts_estimated"] is True and o["energy_estimated"] is True
    assert "the meter did not answer after the restart" in o["notes"]
    assert parsed.payload.PG == "T1"

    ledger = await Ledger.open(path, gateway_id="gw-test", key=key)
    assert await load_open_sessions(ledger, [DC]) == []
    assert last_pagination(await recent_orders(ledger)) == 1
    await ledger.close()


async def test_writer_processes_a_queue_and_ticks(tmp_path: Path) -> None:
    """The async adapter: events from the queue, records into the ledger, ticks from the clock."""
    import asyncio

    cfg = make_config(meters=True)
    ledger = await Ledger.open(tmp_path / "l.db", gateway_id="gw-test", key=GatewayKey.generate())
    now = [1_700_000_000.0]
    writer = StationWriter(StationModel(cfg), ledger, clock=lambda: now[0], tick_interval_s=0.01)
    await writer.start()
    from agent.station.inputs import BusActivity

    await writer.queue.put(BusActivity(DC, now[0]))
    task = asyncio.create_task(writer.run())
    while writer.records_written < 2:
        await asyncio.sleep(0.01)
    now[0] += 31  # both connectors' sources silent past offline_after_s
    while writer.records_written < 4:
        await asyncio.sleep(0.01)
    task.cancel()
    await writer.stop()
    statuses = [(r.connector_id, r.body["status"]) for r in await ledger.find("connector_status")]
    await ledger.close()
    assert statuses == [(DC, 1), ("SZFT0001AC0101", 0), (DC, 0)] or statuses == [
        (DC, 1),
        (DC, 0),
        ("SZFT0001AC0101", 0),
    ]
