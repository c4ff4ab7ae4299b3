"""``evgw config example|check|diff|apply``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.commands import config_apply
from agent.config.errors import ConfigError
from agent.config.files import referenced_file_problems
from agent.config.labels import labelled
from agent.config.load import config_warnings, default_config_path, load_config
from agent.config.resources import read_resource
from agent.config.secrets import load_secrets
from agent.ops.config_diff import affected, diff


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "config",
        help="print the example config; check, compare or apply a config file",
        description=(
            "Print the commented example configuration, validate a config file, compare it "
            "with the running one, or have the running service apply it."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    example = actions.add_parser(
        "example",
        help="print the commented example evgw.toml",
        description="Print a complete, commented evgw.toml to copy and edit.",
    )
    example.add_argument(
        "--secrets", action="store_true", help="print the example secrets.toml instead"
    )
    example.set_defaults(func=_example)
    check = actions.add_parser(
        "check",
        help="validate a config file (exit 0 when valid, 2 with the list of problems)",
        description=(
            "Validate a config file: every key, range and cross-reference, all problems at once "
            "(array entries named by their id), and warn about each file it names (CA, "
            "certificates, command key) that is missing or unreadable here. With --secrets, "
            "also read the secrets file and check its permissions."
        ),
    )
    check.add_argument(
        "file", nargs="?", help=f"config file (default: $EVGW_CONFIG or {default_config_path()})"
    )
    check.add_argument(
        "--secrets", action="store_true", help="also load and check the secrets the uplinks need"
    )
    check.set_defaults(func=_check)
    compare = actions.add_parser(
        "diff",
        help="what a new config changes, and which running parts that touches",
        description=(
            "Compare a new config with the running one (its file): every changed key by path, "
            "arrays of tables by their ids (meters.dc-01.poll_interval_s), then the parts of "
            "the service the changes concern (a meter line, a CAN bus, an uplink, the station "
            "model, or a restart). Exit 0 when they are the same, 1 when they differ, 2 when "
            "either file is not a valid config."
        ),
    )
    compare.add_argument("file", type=Path, help="the new config")
    compare.add_argument(
        "--against",
        type=Path,
        help=f"the running config (default: $EVGW_CONFIG or {default_config_path()})",
    )
    compare.set_defaults(func=_diff)
    config_apply.register(actions)


def _example(args: argparse.Namespace) -> int:
    sys.stdout.write(read_resource("secrets.example.toml" if args.secrets else "evgw.example.toml"))
    return 0


def _check(args: argparse.Namespace) -> int:
    path = Path(args.file or default_config_path())
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"evgw: {ConfigError(exc.source, labelled(exc, path))}", file=sys.stderr)
        return 2
    if args.secrets:
        try:
            load_secrets(config)
        except ConfigError as exc:
            print(f"evgw: {exc}", file=sys.stderr)
            return 2
    # files are warnings: a config may be checked away from the gateway it is written for
    for warning in config_warnings(config) + referenced_file_problems(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{path}: OK — gateway {config.gateway.gateway_id}, station {config.station.station_id}, "
        f"{len(config.connectors())} connectors, {len(config.meters)} meters, "
        f"{len(config.can_buses)} CAN buses"
    )
    return 0


def _diff(args: argparse.Namespace) -> int:
    running = args.against or default_config_path()
    old, new = load_config(running), load_config(args.file)
    changes = diff(old, new)
    if not changes:
        print(f"{args.file}: the same as {running}")
        return 0
    print(f"{args.file} against {running}: {len(changes)} changes")
    print("".join(f"  {change}\n" for change in changes), end="")
    parts = affected(old, new, changes)
    print("touches: " + ", ".join(parts))
    return 1
