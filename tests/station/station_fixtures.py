"""Shared helpers of the station tests: configs, record checks."""

from __future__ import annotations

from collections.abc import Iterable

from agent.config.load import parse_config
from agent.config.schema import Config
from agent.records.bodies import decode_body
from agent.records.envelope import Record, parse_iso_ts

DC = "SZFT0001DC0101"
AC = "SZFT0001AC0101"

BASE = """
[gateway]
gateway_id = "gw-test"
operator_id = "MA5DA0053"
[station]
station_id = "SZ-FT-0001"
name = "Test Station"
service_tel = "0755-00000000"
lng = 114.05
lat = 22.52
[[equipment]]
equipment_id = "SZFT0001DC01"
equipment_type = 1
power_kw = 120.0
  [[equipment.connectors]]
  connector_id = "SZFT0001DC0101"
  connector_type = 4
  power_kw = 120.0
  voltage_upper_v = 950
  voltage_lower_v = 200
  current_a = 250
[[equipment]]
equipment_id = "SZFT0001AC01"
equipment_type = 2
power_kw = 7.0
  [[equipment.connectors]]
  connector_id = "SZFT0001AC0101"
  connector_type = 3
  power_kw = 7.0
  voltage_upper_v = 250
  voltage_lower_v = 190
  current_a = 32
[[can_buses]]
connector_id = "SZFT0001DC0101"
interface = "virtual"
channel = "dc1"
"""

METERS = """
[[meters]]
meter_id = "dc1"
profile = "djsf1352"
transport = "tcp"
host = "127.0.0.1"
unit_id = 1
connector_id = "SZFT0001DC0101"
poll_interval_s = 1
[[meters]]
meter_id = "ac1"
profile = "ddsu666"
transport = "tcp"
host = "127.0.0.1"
unit_id = 2
connector_id = "SZFT0001AC0101"
poll_interval_s = 1
"""


DLT645_DC = """
[[meters]]
meter_id = "dc1"
protocol = "dlt645"
profile = "dcm3366q"
transport = "rtu"
port = "/dev/ttyUSB0"
address = "000012345678"
connector_id = "SZFT0001DC0101"
poll_interval_s = 1
"""


AC_METER = METERS[METERS.index('[[meters]]\nmeter_id = "ac1"') :]


def make_config(*, meters: bool = False, extra: str = "", protocol: str = "modbus") -> Config:
    """The test station; ``meters``: a DC and an AC meter, the DC one of ``protocol``."""
    chosen = METERS
    if protocol == "dlt645":
        chosen = DLT645_DC + AC_METER
    return parse_config(BASE + (chosen if meters else "") + extra)


def check_bodies(records: Iterable[Record]) -> None:
    """Every record's body validates against its kind's schema."""
    for r in records:
        decode_body(r.kind, r.body)


def of(records: Iterable[Record], kind: str, connector_id: str | None = None) -> list[Record]:
    return [
        r
        for r in records
        if r.kind == kind and (connector_id is None or r.connector_id == connector_id)
    ]


def ts(r: Record) -> float:
    return parse_iso_ts(r.ts)
