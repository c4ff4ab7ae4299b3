"""The real `evgw run` against a simulated DL/T 645 DC meter and a Modbus DI module, each on a
socat pty: the meter's identity and counts are recorded, a cover opened during a session is
a tamper alarm naming the session and flags its order, the service door raises and clears
alarm 26, and a restart with the cover opened again while evgw was down raises it again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.ledger import GatewayKey
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.inputs.profile import load_module_profiles
from sim.di_module import SimDiModule
from sim.dlt645_meter import Dlt645SimServer, SimDltMeter
from sim.meter import MeterSimServer
from tests.conftest import open_pty_pair
from tests.e2e.helpers import ledger_records

EVGW = [sys.executable, "-m", "agent.cli"]
ADDRESS = "000012345678"
DC = "SEALDC0101"


def config_text(d: Path, meter_port: str, di_port: str) -> str:
    return f"""
[gateway]
gateway_id = "seal-gw"
operator_id = "MA5DEMO01"
state_dir = "{d}"
secrets_file = "{d}/secrets.toml"
runtime_dir = "{d}"
[station]
station_id = "SEAL-0001"
name = "seal test station"
[[equipment]]
equipment_id = "SEALDC01"
equipment_type = 1
power_kw = 60.0
  [[equipment.connectors]]
  connector_id = "{DC}"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 200
[[meters]]
meter_id = "dc1"
protocol = "dlt645"
profile = "dcm3366q"
transport = "rtu"
port = "{meter_port}"
baud = 9600
parity = "N"
address = "{ADDRESS}"
connector_id = "{DC}"
poll_interval_s = 0.5
seal_interval_s = 5
[[input_modules]]
module_id = "di1"
profile = "generic-di8"
port = "{di_port}"
unit_id = 9
poll_interval_s = 0.2
[[inputs]]
input_id = "door"
module = "di1"
channel = 2
role = "door"
active_level = "low"
debounce_s = 0
connectors = ["{DC}"]
[ledger]
path = "{d}/ledger.db"
key_path = "{d}/gateway.key"
checkpoint_interval_s = 1
[sampling]
ac_session_end_s = 1
"""


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["RUNTIME_DIRECTORY"] = str(config.parent)
    return subprocess.Popen(
        [*EVGW, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )


async def wait_for(
    ledger: Path, proc: subprocess.Popen[bytes], what: str, found: Callable[[list[Any]], Any]
) -> Any:
    """Until ``found(records)`` is truthy (the simulators keep running meanwhile)."""
    async with asyncio.timeout(30):
        while True:
            assert proc.poll() is None, f"evgw exited ({proc.returncode}) waiting for {what}"
            if ledger.exists():
                value = found(ledger_records(ledger))
                if value:
                    return value
            await asyncio.sleep(0.2)


def events(name: str, at_least: int = 1) -> Callable[[list[Any]], list[Any]]:
    def found(rs: list[Any]) -> list[Any]:
        hits = [r for r in rs if r["kind"] == "event" and r["body"]["event"] == name]
        return hits if len(hits) >= at_least else []

    return found


def alarm(code: int, status: str, at_least: int = 1) -> Callable[[list[Any]], list[Any]]:
    def found(rs: list[Any]) -> list[Any]:
        hits = [
            r
            for r in rs
            if r["kind"] == "alarm" and r["body"]["code"] == code and r["body"]["status"] == status
        ]
        return hits if len(hits) >= at_least else []

    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


async def test_tamper_and_door_alarms_from_a_running_gateway(tmp_path: Path) -> None:
    meter_line, di_line = open_pty_pair(tmp_path, "meter"), open_pty_pair(tmp_path, "di")
    meter = SimDltMeter(
        load_dlt645_profiles()["dcm3366q"], ADDRESS, voltage_v=500.0, energy_import_kwh=100.0
    )
    meter.counts["meter_cover_open"] = 2  # opened twice before it was commissioned
    meters = Dlt645SimServer([meter])
    # 8N1: a Linux pty refuses even parity once a first run opened and closed it
    await meters.start_serial(meter_line.b, baud=9600, parity="N")
    module = SimDiModule(load_module_profiles()["generic-di8"], 9)
    module.set(2, True)  # the door loop is closed
    modules = MeterSimServer([module])
    await modules.start_serial(di_line.b)
    GatewayKey.generate().save(tmp_path / "gateway.key")
    config = tmp_path / "evgw.toml"
    config.write_text(config_text(tmp_path, meter_line.a, di_line.a))
    ledger = tmp_path / "ledger.db"
    proc = start(config, tmp_path / "run-1.log")
    try:
        [identity] = await wait_for(ledger, proc, "the meter's identity", events("meter_identity"))
        assert identity["body"]["details"]["identity"]["address"] == ADDRESS
        [counts] = await wait_for(ledger, proc, "the meter's counts", events("meter_counters"))
        assert counts["body"]["details"]["counts"]["meter_cover_open"] == 2

        meter.set_current(50.0)  # a session (no CAN on this connector: the current decides)
        meter.set_power(25_000.0)

        def session_id(rs: list[Any]) -> str | None:
            statuses = [r for r in rs if r["kind"] == "connector_status"]
            return statuses[-1]["body"]["session_id"] if statuses else None

        sid = await wait_for(ledger, proc, "a session", session_id)
        meter.open_cover()
        [raised] = await wait_for(ledger, proc, "the tamper alarm", alarm(9101, "raised"))
        assert raised["connector_id"] == DC
        assert "meter_cover_open 2→3" in raised["body"]["message"]
        assert sid in raised["body"]["message"]
        assert raised["body"]["type"] == "meter_seal"

        module.set(2, False)  # the door opens
        [door] = await wait_for(ledger, proc, "the door alarm", alarm(26, "raised"))
        assert door["connector_id"] == DC
        module.set(2, True)
        await wait_for(ledger, proc, "the door closed", alarm(26, "cleared"))

        meter.set_current(0.0)
        meter.set_power(0.0)
        orders = await wait_for(
            ledger, proc, "the order", lambda rs: [r for r in rs if r["kind"] == "charge_order"]
        )
        assert orders[0]["body"]["session_id"] == sid
        assert orders[0]["body"]["stop_bits"]["meter.tamper.meter_cover_open"] == 1
        stop(proc)

        meter.open_cover()  # while evgw is down
        proc = start(config, tmp_path / "run-2.log")
        _, found = await wait_for(ledger, proc, "the restart's count", events("meter_counters", 2))
        assert found["body"]["details"]["rose"] == {"meter_cover_open": [3, 4]}
        _, while_down = await wait_for(ledger, proc, "the alarm again", alarm(9101, "raised", 2))
        assert "3→4 while evgw was not running" in while_down["body"]["message"]
        stop(proc)
        assert not alarm(9107, "raised")(ledger_records(ledger))  # the same meter
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await meters.stop()
        await modules.stop()
        meter_line.close()
        di_line.close()
