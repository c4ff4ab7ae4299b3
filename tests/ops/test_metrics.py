"""The Prometheus endpoint of a running service on the simulated station."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from agent.demo.station import (
    DemoStation,
    start_platform,
    write_demo_config,
    write_demo_secrets,
)
from agent.service.runner import Service
from tests.conftest import free_port


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        r"^"
        + re.escape(name)
        + (r"\{" + re.escape(label_text) + r"\}" if labels else "")
        + r" (\S+)"
    )
    match = re.search(pattern, text, re.M)
    assert match, f"{name}{{{label_text}}} not in the scrape"
    return float(match.group(1))


async def test_metrics_endpoint(tmp_path: Path) -> None:
    station = DemoStation()
    port = await station.start_meters()
    platform = start_platform(tmp_path, write_demo_secrets(tmp_path))
    platform.receiver.inject("ret", 4003, count=10_000, interface="notification_stationInfo")
    config = write_demo_config(tmp_path, port, station.dlt645_port, cec_url=platform.base_url)
    metrics_port = free_port()
    config.write_text(config.read_text() + f"\n[metrics]\nenabled = true\nport = {metrics_port}\n")
    service = Service(config)
    task = asyncio.create_task(service.run())
    station.start_sessions()
    try:
        text = ""
        async with httpx.AsyncClient() as client:
            for _ in range(100):  # until both buses carried frames and the meters were read
                await asyncio.sleep(0.2)
                try:
                    text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                except httpx.TransportError:
                    continue
                if (
                    'evgw_can_frames_total{connector="DEMODC0102"}' in text
                    and 'outcome="ok"' in text
                    and 'evgw_uplink_peer_open{uplink="cec"} 0.0' in text
                ) and metric(text, "evgw_can_frames_total", connector="DEMODC0102") > 0:
                    break
        assert metric(text, "evgw_can_frames_total", connector="DEMODC0101") > 0
        assert metric(text, "evgw_meter_polls_total", meter="dc-a", outcome="ok") >= 1
        assert metric(text, "evgw_meter_online", meter="main") == 1.0
        assert metric(text, "evgw_records_total", kind="identity") == 1.0
        assert metric(text, "evgw_ledger_last_seq") >= 3
        assert metric(text, "evgw_ledger_size_bytes") > 0
        assert (
            metric(text, "evgw_can_anomalies_total", connector="DEMODC0101", layer="transport") == 0
        )
        assert metric(text, "evgw_uplink_peer_open", uplink="cec") == 0.0  # 4003 parks it
        assert metric(text, "evgw_uplink_parked", uplink="cec") == 0.0  # no record parked
        assert metric(text, "evgw_uplink_link_alarm", uplink="cec") == 0.0  # not for 300 s
        assert service.metrics_server.server_address[0] == "127.0.0.1"
    finally:
        service._stop.set()
        assert await asyncio.wait_for(task, 15) == 0
        await station.stop()
        platform.stop()
