"""``evgw demo``: the gateway on an embedded simulated station (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from agent.demo.report import NONE, alarm_text
from agent.service.logs import setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the gateway on an embedded simulated station",
        description=(
            "Run the real gateway service on a simulated station: two DC connectors whose "
            "charging sessions (some with faults) play on virtual CAN buses, one AC connector, "
            "Modbus TCP meters on loopback, a DL/T 645 DC meter whose cover is opened once, and "
            "a service-door input. A live view shows the connectors; at the end a report shows "
            "the records, the verified chain, each order's energy audit and the seal and site "
            "alarms."
        ),
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=90.0,
        help="stop after S seconds (default 90; 0 = until Ctrl-C)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep the ledger, key and config in DIR (default: a temporary folder)",
    )
    parser.add_argument("--report-json", type=Path, help="also write the final report to PATH")
    parser.add_argument(
        "--quiet", action="store_true", help="no live view, only warnings and the final report"
    )
    parser.set_defaults(func=_demo)


def _cell(value: Any) -> str:
    if value is None or value == [] or value == "-":
        return NONE
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _alarms(codes: list[Any] | None) -> str:
    return "; ".join(alarm_text(c) for c in codes) if codes else NONE


def render_live(snapshot: dict[str, Any], elapsed_s: float) -> str:
    rows = [["connector", "status", "phase", "SOC %", "power kW", "energy kWh", "alarms"]]
    for c in snapshot.get("connectors", []):
        keys = ("connector", "status", "phase", "soc_pct", "power_kw", "energy_kwh")
        rows.append([*(_cell(c.get(k)) for k in keys), _alarms(c.get("alarms"))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f"evgw demo — station {snapshot.get('station_id')} — {elapsed_s:.0f} s   (Ctrl-C stops)",
        "",
    ]
    lines += [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows
    ]
    ledger = snapshot.get("ledger", {})
    lines += [
        "",
        f"  ledger: {_cell(ledger.get('last_seq'))} records, {_cell(ledger.get('health'))}",
    ]
    for name, u in snapshot.get("uplinks", {}).items():
        lines.append(
            f"  uplink {name}: delivered {_cell(u.get('acked'))}, backlog "
            f"{_cell(u.get('backlog'))}, errors {_cell(u.get('errors'))}, last error "
            f"{u.get('last_error') or NONE}"
        )
    return "\n".join(lines)


async def _live_view(service: Any, out: TextIO, tty: bool) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        await asyncio.sleep(1.0 if tty else 10.0)
        if service.runtime is None:
            continue
        text = render_live(service.snapshot(), loop.time() - started)
        out.write(("\x1b[H\x1b[2J" + text + "\n") if tty else (text + "\n\n"))
        out.flush()


async def run_demo(state_dir: Path, duration_s: float, live: bool) -> tuple[int, dict[str, Any]]:
    """Run the station and the service; returns the exit code and what the platforms got."""
    from agent.demo.operator import DemoOperator
    from agent.demo.station import (
        DEMO_STATION_ID,
        DemoStation,
        start_broker,
        start_platform,
        write_demo_config,
        write_demo_secrets,
    )
    from agent.service.runner import Service

    station = DemoStation()
    port = await station.start_meters()
    state_dir.mkdir(parents=True, exist_ok=True)
    platform = start_platform(state_dir, write_demo_secrets(state_dir))
    broker = start_broker(state_dir)
    operator = DemoOperator(state_dir, broker[1], DEMO_STATION_ID, "evgw/demo") if broker else None
    config_path = write_demo_config(
        state_dir,
        port,
        station.dlt645_port,
        cec_url=platform.base_url,
        mqtt_port=broker[1] if broker else None,
        command_pubkey_file=operator.public_key_file if operator else None,
    )
    os.environ["EVGW_CONFIG"] = str(config_path)  # the config the MQTT commands read
    service = Service(config_path)
    task = asyncio.create_task(service.run(), name="service")
    station.start_sessions()
    if operator is not None:
        operator.start()
    view = (
        asyncio.create_task(_live_view(service, sys.stdout, sys.stdout.isatty())) if live else None
    )
    try:
        if duration_s > 0:
            done, _ = await asyncio.wait({task}, timeout=duration_s)
            if not done:
                if operator is not None:
                    operator.stop()  # the orders written at the stop stay unbilled
                signal.raise_signal(signal.SIGTERM)  # the service's own clean stop
        rc = await task
        accepted = platform.receiver.accepted()
        received: dict[str, Any] = {
            "cec_platform_accepted": dict(Counter(a["interface"] for a in accepted)),
            "cec_platform_duplicates": sum(a["copies"] - 1 for a in accepted),
            "mqtt_broker": "local mosquitto" if broker else "not installed: MQTT skipped",
            "operator_billed": len(operator.sent) if operator else 0,
            "cec_audit_notes": [
                item["NoteString"]
                for a in accepted
                for item in (a["data"].get("EventInfos") or a["data"].get("AlarmInfos") or [])
                if str(item.get("NoteString", "")).startswith(("9008 ", "9009 ", "9010 "))
            ],
        }
        return rc, received
    finally:
        if view is not None:
            view.cancel()
        await station.stop()
        if operator is not None:
            operator.stop()
        platform.stop()
        if broker is not None:
            broker[0].terminate()
            broker[0].wait(5)


def _demo(args: argparse.Namespace) -> int:
    from agent.demo.report import build_report, render_report

    setup_logging("warning" if args.quiet or sys.stdout.isatty() else "info")
    keep = args.state_dir is not None
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="evgw-demo-"))
    try:
        print(f"evgw demo: state in {state_dir}", file=sys.stderr)
        rc, received = 130, {}
        with contextlib.suppress(KeyboardInterrupt):
            rc, received = asyncio.run(run_demo(state_dir, args.duration, live=not args.quiet))
        logging.shutdown()
        if not (state_dir / "ledger.db").exists():
            print("evgw demo: stopped before the gateway had started", file=sys.stderr)
            return rc
        report = build_report(state_dir / "ledger.db", state_dir / "gateway.key")
        report["platforms"] = received
        print(render_report(report))
        if args.report_json:
            args.report_json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        return rc if report["chain_verified"] else 1
    finally:
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
