"""``evgw session plot``: draw one charging session from a CAN capture or from the ledger."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from agent.commands.session_plot import SessionSeries, draw
from agent.demo.report import alarm_text
from agent.errors import UserError
from agent.ledger.export import export_lines, open_for_reading
from agent.records.envelope import parse_iso_ts
from drivers.gbt27930.events import ChargingSample, StopRequested
from drivers.gbt27930.replay import ReplayError
from drivers.gbt27930.replay import replay_file as replay_can


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "session",
        help="draw a charging session (needs the optional extra evgw[plot])",
        description="Work with one charging session.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    plot = actions.add_parser(
        "plot",
        help="draw demand vs output voltage and current, SOC, temperatures and alarms",
        description=(
            "Draw one session on a time axis: BMS demand, BMS measured and charger output "
            "voltage and current, SOC, battery temperatures, alarms and the stop request. "
            "From a CAN capture (--can FILE, every sample; the first session unless "
            "SESSION is its number) or from the bms_process and alarm records of a ledger "
            "(--ledger PATH and the SESSION id). Needs matplotlib: pip install 'evgw[plot]'."
        ),
    )
    plot.add_argument("session", nargs="?", help="session id (ledger) or number (capture)")
    plot.add_argument("out", type=Path, help="image to write (.png, .svg, .pdf)")
    source = plot.add_mutually_exclusive_group(required=True)
    source.add_argument("--can", type=Path, help="a CAN capture (any format evgw can decode)")
    source.add_argument("--ledger", type=Path, help="a ledger file (read-only)")
    plot.set_defaults(func=_plot)


def from_capture(path: Path, number: str | None) -> SessionSeries:
    try:
        result = replay_can(path)
    except ReplayError as exc:
        raise UserError(str(exc), 2) from None
    samples = [e for e in result.events if isinstance(e, ChargingSample)]
    wanted = int(number) if number and number.isdigit() else None
    if number is not None and wanted is None:
        raise UserError(f"session {number!r}: a capture's sessions are numbered 1, 2, …", 2)
    chosen = wanted if wanted is not None else (samples[0].session_id if samples else 1)
    series = SessionSeries(f"{path.name}, session {chosen}")
    mine = [s for s in samples if s.session_id == chosen]
    t0 = mine[0].ts if mine else 0.0
    for s in mine:
        series.add(
            s.ts - t0,
            **{"voltage:demand": s.voltage_demand_v, "voltage:measured": s.bms_voltage_v},
            **{"voltage:charger output": s.charger_voltage_v, "current:demand": s.current_demand_a},
            **{"current:measured": s.bms_current_a, "current:charger output": s.charger_current_a},
            **{"soc:SOC": s.soc_pct, "temp:highest": s.max_battery_temp_c},
            **{"temp:lowest": s.min_battery_temp_c},
        )
    for e in result.events:
        if isinstance(e, StopRequested) and e.session_id == chosen:
            series.marks.append((e.ts - t0, f"{e.side} stop ({', '.join(e.reasons)})"))
    return series


def _ledger_items(path: Path, session_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    conn = open_for_reading(path)
    samples, alarms = [], []
    try:
        for line in export_lines(conn, kinds=["bms_process", "alarm"]):
            item = msgspec.json.decode(line)
            body = item.get("body") if isinstance(item, dict) else None
            if not isinstance(body, dict):
                continue
            if item.get("kind") == "bms_process" and body.get("session_id") == session_id:
                samples.append(item)
            elif item.get("kind") == "alarm":
                alarms.append(item)
    finally:
        conn.close()
    return samples, alarms


def from_ledger(path: Path, session_id: str | None) -> SessionSeries:
    if not session_id:
        raise UserError(
            "--ledger needs the SESSION id (see evgw ledger export --kind charge_order)", 2
        )
    samples, alarms = _ledger_items(path, session_id)
    if not samples:
        raise UserError(f"{path}: no bms_process records of session {session_id!r}", 1)
    series = SessionSeries(f"session {session_id}")
    t0 = parse_iso_ts(samples[0]["ts"])
    end = parse_iso_ts(samples[-1]["ts"])
    connector = samples[0].get("connector_id")
    for item in samples:
        b = item["body"]
        series.add(
            parse_iso_ts(item["ts"]) - t0,
            **{
                "voltage:demand": b["demand_voltage_v"],
                "voltage:measured": b["measured_voltage_v"],
            },
            **{"voltage:charger output": b["charger_output_voltage_v"]},
            **{
                "current:demand": b["demand_current_a"],
                "current:measured": b["measured_current_a"],
            },
            **{"current:charger output": b["charger_output_current_a"], "soc:SOC": b["soc_pct"]},
            **{"temp:highest": b["max_temp_c"], "temp:lowest": b["min_temp_c"]},
        )
    for item in alarms:
        ts = parse_iso_ts(item["ts"])
        if item.get("connector_id") == connector and t0 <= ts <= end:
            body = item["body"]
            series.marks.append((ts - t0, f"{alarm_text(body['code'])} {body['status']}"))
    return series


def _plot(args: argparse.Namespace) -> int:
    series = (
        from_capture(args.can, args.session) if args.can else from_ledger(args.ledger, args.session)
    )
    draw(series, args.out)
    print(f"wrote {args.out}: {len(series.t_s)} samples, {len(series.marks)} marks")
    return 0
