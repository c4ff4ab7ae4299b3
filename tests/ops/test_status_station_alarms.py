"""`evgw status` shows the station's own alarms (those without a connector): the main meter's
over-voltage 201 and an input module's fault 9201, asked over the status socket by a real
`evgw status` process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from agent.records.envelope import iso_ts
from agent.service.status_socket import StatusServer
from agent.service.views import connector_rows, station_alarm_rows
from agent.station import codes
from agent.station.model import StationModel
from drivers.inputs.events import InputFault
from tests.station.test_station_seal import CONFIG, T0, reading


async def test_status_lists_the_station_alarms(tmp_path: Path) -> None:
    model = StationModel(CONFIG)
    model.startup([], T0, None)
    model.feed(reading("main", T0 + 1, voltage_l1_v=252.0))
    model.feed(InputFault("di1", T0 + 2, True, "no answer (timeout)", ("door-dc",)))
    server = StatusServer(
        tmp_path / "status.sock",
        lambda: {
            "gateway_id": "gw-test",
            "station_alarms": station_alarm_rows(model),
            "connectors": connector_rows(model),
        },
    )
    await server.start()
    try:
        run = [sys.executable, "-m", "agent.cli", "status", "--socket", str(server.path)]
        text, raw = await asyncio.gather(
            asyncio.to_thread(subprocess.run, run, capture_output=True, text=True, timeout=30),
            asyncio.to_thread(
                subprocess.run, [*run, "--json"], capture_output=True, text=True, timeout=30
            ),
        )
    finally:
        await server.close()
    assert text.returncode == 0, text.stderr
    rows = json.loads(raw.stdout)["station_alarms"]
    assert rows == [
        {
            "code": 201,
            "meaning": "grid over-voltage",
            "since": iso_ts(T0 + 1),
            "causes": ["grid.main.over_voltage"],
        },
        {
            "code": codes.INPUT_SOURCE_FAULT,
            "meaning": codes.ALARM_CODES[codes.INPUT_SOURCE_FAULT].meaning,
            "since": iso_ts(T0 + 2),
            "causes": ["input.fault.di1"],
        },
    ]
    lines = text.stdout.splitlines()
    at = lines.index("station alarms:")
    header, over, fault = lines[at + 1 : at + 4]
    assert header.split() == ["code", "meaning", "since", "causes"]
    assert over.split() == ["201", "grid", "over-voltage", iso_ts(T0 + 1), "grid.main.over_voltage"]
    assert fault.split()[0] == "9201" and fault.endswith("input.fault.di1")
    assert lines.index("connectors:") > at  # the station first, then its connectors
