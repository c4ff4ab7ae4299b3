"""`evgw check` against real devices and platforms: a simulated meter over Modbus TCP, a
missing serial port, a meter that does not answer, a real mosquitto, the T/CEC receiver with
the right and a wrong secret, a virtual CAN bus — hints asserted."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.demo.station import DEMO_OPERATOR_ID, start_platform, write_demo_secrets
from agent.ledger import GatewayKey
from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import Broker

CONFIG = """
[gateway]
gateway_id = "gw-check"
operator_id = "{operator}"
secrets_file = "{dir}/secrets.toml"

[station]
station_id = "S-CHECK"
name = "Check station"
address = "1 Check Road, Futian, Shenzhen"
service_tel = "0755-00000000"

[[equipment]]
equipment_id = "E1"
equipment_type = 1
power_kw = 60.0
manufacturer_id = "MA5DA0053"

  [[equipment.connectors]]
  connector_id = "C1"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 150

  [[equipment.connectors]]
  connector_id = "C2"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 150

  [[equipment.connectors]]
  connector_id = "C3"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 150

[[meters]]
meter_id = "answers"
profile = "djsf1352"
transport = "tcp"
host = "127.0.0.1"
tcp_port = {modbus_port}
unit_id = 1
connector_id = "C1"
timeout_s = 0.3
retries = 0

[[meters]]
meter_id = "silent"
profile = "djsf1352"
transport = "tcp"
host = "127.0.0.1"
tcp_port = {modbus_port}
unit_id = 2
connector_id = "C2"
timeout_s = 0.3
retries = 0

[[meters]]
meter_id = "unplugged"
profile = "djsf1352"
transport = "rtu"
port = "{dir}/ttyUSB9"
unit_id = 1
connector_id = "C3"

[[can_buses]]
connector_id = "C1"
interface = "virtual"
channel = "check-bus"

[uplinks.mqtt]
brokers = ["127.0.0.1:{mqtt_port}"]
tls = false

[uplinks.cec]
base_url = "{cec_url}"
platform_operator_id = "MA5GOV001"

[[tariffs]]
id = "std"
default = true
periods = [{{ start = "00:00", type = "flat", elec_price = 0.62, service_price = 0.8 }}]

[ledger]
path = "{dir}/ledger.db"
key_path = "{dir}/gateway.key"
"""


async def evgw_check(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "check",
        "--config",
        str(config),
        "--listen-s",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def line_of(output: str, name: str) -> tuple[str, str]:
    """The result line of one check and its hint line (if any)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line[6:].startswith(name):
            hint = lines[i + 1].strip() if i + 1 < len(lines) and "→" in lines[i + 1] else ""
            return line, hint
    raise AssertionError(f"no line for {name!r} in:\n{output}")


async def test_check_against_devices_and_platforms(tmp_path: Path, broker: Broker) -> None:
    profiles = load_profiles()
    meter = SimMeter(profiles["djsf1352"], 1, energy_import_kwh=1234.5)
    silent = SimMeter(profiles["djsf1352"], 2)
    silent.no_answer = True
    server = MeterSimServer([meter, silent])
    modbus_port = await server.start_tcp("127.0.0.1", 0)
    platform = start_platform(tmp_path, write_demo_secrets(tmp_path))
    GatewayKey.generate().save(tmp_path / "gateway.key")
    config = tmp_path / "evgw.toml"
    config.write_text(
        CONFIG.format(
            operator=DEMO_OPERATOR_ID,
            dir=tmp_path,
            modbus_port=modbus_port,
            mqtt_port=broker.port,
            cec_url=platform.base_url,
        )
    )
    try:
        rc, out = await evgw_check(config)
        assert rc == 1, out  # the silent and the unplugged meter FAIL
        line, _ = line_of(out, "meter answers")
        assert line.startswith("OK") and "1234.50 kWh" in line
        line, hint = line_of(out, "meter silent")
        assert line.startswith("FAIL")
        # a TCP meter gets TCP hints, never RS-485 wiring ones
        assert "A/B" not in hint and "Modbus TCP" in hint
        assert f"evgw meter read --tcp 127.0.0.1:{modbus_port}" in hint
        line, hint = line_of(out, "meter unplugged")
        assert line.startswith("FAIL") and f"serial port {tmp_path}/ttyUSB9 does not exist" in line
        assert "is the RS-485 adapter plugged in" in hint
        line, hint = line_of(out, "CAN C1")
        assert line.startswith("WARN") and "no frames" in line
        assert "no vehicle is plugged in" in hint
        line, _ = line_of(out, "MQTT 127.0.0.1")
        assert line.startswith("OK") and "published" in line
        line, _ = line_of(out, "T/CEC platform")
        assert line.startswith("OK") and "query_token" in line and "accepted" in line

        # a wrong SigSecret: the platform answers 4001, and the hint says which secret
        secrets = (tmp_path / "secrets.toml").read_text().splitlines()
        wrong = [
            'sig_secret = "WRONGWRONGWRONG1"' if s.startswith("sig_secret") else s for s in secrets
        ]
        (tmp_path / "secrets.toml").write_text("\n".join(wrong) + "\n")
        rc, out = await evgw_check(config)
        line, hint = line_of(out, "T/CEC platform")
        assert line.startswith("FAIL"), out
        assert "sig_secret in secrets.toml differs" in hint

        # the broker is down
        broker.stop()
        rc, out = await evgw_check(config)
        line, hint = line_of(out, "MQTT 127.0.0.1")
        assert line.startswith("FAIL") and "cannot reach the broker" in hint
    finally:
        platform.stop()
        await server.stop()
