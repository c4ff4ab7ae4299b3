"""``evgw status``: ask the running service what it is doing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent.commands.service_link import ask_running
from agent.config.errors import ConfigError
from agent.config.load import default_config_path, load_config
from agent.ops.layout import Layout
from agent.service.status_socket import SOCKET_NAME, socket_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="show what the running service is doing",
        description=(
            "Ask the running evgw service (over its Unix socket) for connectors (sessions, "
            "alarms, the tariff in force), the station's own alarms (site inputs, the main "
            "meter, input modules), the ledger and each uplink's backlog and last error."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help=f"config file (default {default_config_path()})"
    )
    parser.add_argument(
        "--socket", type=Path, help=f"the service's socket (default: <runtime_dir>/{SOCKET_NAME})"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    parser.add_argument(
        "--root", type=Path, default=Path("/"), help="where /opt/evgw is (default /)"
    )
    parser.set_defaults(func=_status)


def _resolve_socket(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    try:
        config = load_config(args.config)
    except ConfigError:
        return socket_path("/run/evgw")
    return socket_path(config.gateway.runtime_dir)


def _status(args: argparse.Namespace) -> int:
    path = _resolve_socket(args)
    snapshot = ask_running(path, None, timeout_s=5.0)
    layout = Layout(args.root)
    snapshot["release"] = {
        "current": layout.version_of(layout.current),
        "previous": layout.version_of(layout.previous),
    }
    if args.json:
        print(json.dumps(snapshot, indent=2, ensure_ascii=False))
    else:
        print(render(snapshot))
    return 0


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def render(snapshot: dict[str, Any]) -> str:
    lines = [
        f"gateway {snapshot.get('gateway_id')}  station {snapshot.get('station_id')}  "
        f"up {snapshot.get('uptime_s', 0):.0f} s",
        f"  {snapshot.get('status', '')}",
    ]
    release = snapshot.get("release") or {}
    if release.get("current"):
        lines.append(
            f"  release {release['current']} (previous {release.get('previous') or '—'}; "
            "evgw update status)"
        )
    for title, key in (
        ("station alarms", "station_alarms"),
        ("connectors", "connectors"),
        ("CAN buses", "can_buses"),
        ("meters", "meters"),
        ("uplinks", "uplinks"),
    ):
        items = snapshot.get(key)
        if not items:
            continue
        if isinstance(items, dict):
            items = [{"name": k, **v} for k, v in items.items()]
        columns = list(dict.fromkeys(k for item in items for k in item))
        rows = [columns] + [[_fmt(item.get(c)) for c in columns] for item in items]
        lines += ["", f"{title}:", *("  " + line for line in _table(rows))]
    ledger = snapshot.get("ledger")
    if ledger:
        lines += ["", "ledger:", *(f"  {k}: {_fmt(v)}" for k, v in ledger.items())]
    tasks = snapshot.get("tasks", {})
    troubled = {n: t for n, t in tasks.items() if t.get("restarts") or t.get("state") != "running"}
    if troubled:
        lines += ["", "tasks needing attention:"]
        lines += [
            f"  {n}: {t['state']}, {t['restarts']} restarts, last error: {t['last_error']}"
            for n, t in troubled.items()
        ]
    return "\n".join(lines)
