"""``evgw check``: validate the installation in one command, with a hint for every problem."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agent.commission.devices import device_checks
from agent.commission.local import local_checks
from agent.commission.results import CheckResult, Level, fail, ok, render, skip
from agent.config.errors import ConfigError
from agent.config.labels import labelled
from agent.config.load import default_config_path, load_config
from agent.config.schema import Config
from agent.config.secrets import Secrets, load_secrets
from agent.uplink.registry import enabled_uplinks


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="check config, devices, uplinks, key, disk and clock (run after wiring)",
        description=(
            "Check the installation: validate the config, check the secrets and the gateway "
            "key and their permissions, free disk and clock synchronisation, read each meter "
            "once, listen on each CAN bus, connect to the MQTT broker with a test publish and "
            "ask the T/CEC platform for a token. Prints a table of OK/WARN/FAIL with a hint for "
            "every problem; exit 0 only when nothing FAILs (1 otherwise). Stop the service "
            "first if a serial port is shared."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help=f"config file (default {default_config_path()})"
    )
    parser.add_argument(
        "--listen-s",
        type=float,
        default=3.0,
        help="seconds to listen on each CAN bus (default 3)",
    )
    parser.add_argument(
        "--local-only",
        action="store_true",
        help="only the config, files, disk and clock: do not touch meters, buses or platforms",
    )
    parser.set_defaults(func=_check)


def _skipped_devices(config: Config, reason: str) -> list[CheckResult]:
    names = [f"meter {m.meter_id}" for m in config.meters]
    names += [f"CAN {b.connector_id}" for b in config.can_buses]
    names += [plugin.title for plugin, _ in enabled_uplinks(config)]
    return [skip(name, reason) for name in names]


def run_checks(
    config_path: Path | None, *, devices: bool = False, listen_s: float = 3.0
) -> list[CheckResult]:
    path = config_path or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        hint = "fix the key named, then run evgw check again"
        results = [fail("config", f"{exc.source}: {p}", hint) for p in labelled(exc, Path(path))]
        reason = "not tried: the config is not valid"
        return results + [skip(n, reason) for n in ("local files", "devices", "uplinks")]
    results = [ok("config", f"{path} is valid")]
    results += local_checks(config)
    if not devices:
        return results + _skipped_devices(config, "not tried: --local-only")
    try:
        secrets: Secrets | None = load_secrets(config)
    except ConfigError:
        secrets = None  # already a FAIL line of local_checks; the uplinks say they are skipped
    return results + asyncio.run(device_checks(config, secrets, listen_s))


def _check(args: argparse.Namespace) -> int:
    results = run_checks(args.config, devices=not args.local_only, listen_s=args.listen_s)
    print(render(results))
    failed = sum(r.level is Level.FAIL for r in results)
    warned = sum(r.level is Level.WARN for r in results)
    skipped = sum(r.level is Level.SKIP for r in results)
    print(f"\n{len(results)} checks: {failed} failed, {warned} warnings, {skipped} skipped")
    return 1 if failed else 0
