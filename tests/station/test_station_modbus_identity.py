"""Modbus meters' identity in the station: the pollers the service builds read the profiles'
identity registers from the simulator over TCP; a CT ratio reprogrammed on the station main
meter between polls is a ``meter_replaced`` event and alarm 9107 of the station, a DC meter
whose firmware differs after a restart is one of its connector."""

from __future__ import annotations

from collections.abc import Sequence

from agent.config.load import parse_config
from agent.records.envelope import Record
from agent.service.devices import build_pollers, meter_profiles
from agent.station import codes
from agent.station.model import StationModel
from agent.station.site import site_facts
from drivers.modbus.link import quiet_library_logging
from drivers.modbus.poller import LinePoller
from drivers.modbus.profile import load_profiles
from sim.meter import MeterSimServer, SimMeter
from tests.station.station_fixtures import BASE, DC, check_bodies, of

T0 = 1_780_000_000.0
PROFILES = load_profiles()
quiet_library_logging()

METERS = """
[[meters]]
meter_id = "dc1"
profile = "djsf1352"
transport = "tcp"
host = "127.0.0.1"
tcp_port = {port}
unit_id = 1
connector_id = "SZFT0001DC0101"
seal_interval_s = 10
[[meters]]
meter_id = "main"
profile = "dtsu666"
transport = "tcp"
host = "127.0.0.1"
tcp_port = {port}
unit_id = 4
role = "station_main"
seal_interval_s = 10
"""


def _pollers(config, got: list) -> LinePoller:
    [poller] = build_pollers(config, meter_profiles(config), got.append)
    assert isinstance(poller, LinePoller)
    return poller


async def _poll(model: StationModel, poller: LinePoller, inbox: list, ts: float) -> list[Record]:
    """One poll of the line, what the pollers emitted fed to the station model."""
    await poller.poll_line(ts)
    out: list[Record] = []
    for item in inbox:
        out += model.feed(item)
    inbox.clear()
    check_bodies(out)
    return out


def _alarms(records: Sequence[Record]) -> list[tuple[int, str, str | None]]:
    return [(r.body["code"], r.body["status"], r.connector_id) for r in of(records, "alarm")]


def _events(records: Sequence[Record], name: str) -> list[Record]:
    return [r for r in of(records, "event") if r.body["event"] == name]


async def test_ct_ratio_reprogrammed_and_a_meter_swapped_across_a_restart() -> None:
    dc = SimMeter(PROFILES["djsf1352"], 1, voltage_v=0.0, energy_import_kwh=10.0)
    main = SimMeter(PROFILES["dtsu666"], 4, power_w=20_000.0, energy_import_kwh=500.0)
    main.set_identity("ct_ratio", 40)
    server = MeterSimServer([dc, main])
    port = await server.start_tcp()
    config = parse_config(BASE + METERS.format(port=port))
    inbox: list = []
    poller = _pollers(config, inbox)
    model = StationModel(config)
    records = model.startup([], T0, None)
    try:
        first = await _poll(model, poller, inbox, T0 + 1)
        identities = {r.body["details"]["meter_id"]: r for r in _events(first, "meter_identity")}
        assert identities["main"].connector_id is None
        assert identities["main"].body["details"]["identity"] == {
            "ct_ratio": "40",
            "pt_ratio": "1",
            "protocol": "1",
            "baud_code": "1",
            "modbus_address": "4",
        }
        assert identities["dc1"].connector_id == DC
        assert identities["dc1"].body["details"]["identity"] == {
            "pt_ratio": "1",
            "rated_current_a": "1",
            "firmware": "1",
        }
        assert _alarms(first) == []

        main.set_identity("ct_ratio", 80)  # someone reprogrammed the CT ratio
        assert _events(await _poll(model, poller, inbox, T0 + 5), "meter_replaced") == []  # not due
        changed = await _poll(model, poller, inbox, T0 + 12)
        [replaced] = _events(changed, "meter_replaced")
        assert replaced.connector_id is None
        assert replaced.body["details"]["previous"]["ct_ratio"] == "40"
        assert replaced.body["details"]["current"]["ct_ratio"] == "80"
        assert _alarms(changed) == [(codes.METER_REPLACED, "raised", None)]
        [alarm] = of(changed, "alarm")
        assert "meter main: ct_ratio 40 → 80" in alarm.body["message"]
        records += first + changed
    finally:
        poller.close()

    # evgw restarts; meanwhile the DC meter was exchanged for one with other firmware
    dc.set_identity("firmware", 7)
    newest = list(reversed(records))
    model2 = StationModel(config)
    model2.startup([], T0 + 100, site_facts(of(newest, "event"), of(newest, "alarm")))
    poller2 = _pollers(config, inbox)
    try:
        after = await _poll(model2, poller2, inbox, T0 + 101)
        [swapped] = _events(after, "meter_replaced")
        assert swapped.connector_id == DC
        assert swapped.body["details"]["current"]["firmware"] == "7"
        assert (codes.METER_REPLACED, "raised", DC) in _alarms(after)
        assert [r.body["details"]["meter_id"] for r in _events(after, "meter_replaced")] == ["dc1"]
    finally:
        poller2.close()
        await server.stop()
