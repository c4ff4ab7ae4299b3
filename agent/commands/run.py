"""``evgw run``: the gateway service (what systemd starts)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.config.load import CONFIG_ENV, default_config_path
from agent.service.logs import setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "run",
        help="run the gateway service in the foreground",
        description=(
            "Run the gateway service: read meters and CAN buses, keep the ledger, forward to "
            "the platforms. systemd starts it as Type=notify; SIGHUP reloads the config, "
            "SIGTERM stops it cleanly."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file (default: $EVGW_CONFIG or {default_config_path()})",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="override gateway.log_level from the config",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agent.config.load import load_config
    from agent.service.runner import run_service

    path = args.config or default_config_path()
    # what the service's own helpers (the MQTT commands, `evgw` children) read as its config
    os.environ[CONFIG_ENV] = str(path.resolve())
    setup_logging(args.log_level or "info")
    if args.log_level is None:
        setup_logging(load_config(path).gateway.log_level)
    return run_service(path)
