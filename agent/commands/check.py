"""``evgw check``: validate the installation in one command, with a hint for every problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.checks import CheckResult, Level, fail, local_checks, ok, render
from agent.config import ConfigError, default_config_path, load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="check config, devices, uplinks, key, disk and clock (run after wiring)",
        description=(
            "Check the installation: validate the config, check the secrets and the gateway "
            "key and their permissions, free disk and clock synchronisation. Prints a table of "
            "OK/WARN/FAIL with a hint for every problem; exit 0 only when nothing FAILs "
            "(1 otherwise)."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help=f"config file (default {default_config_path()})"
    )
    parser.set_defaults(func=_check)


def run_checks(config_path: Path | None) -> list[CheckResult]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [
            fail(
                "config", f"{exc.source}: {problem}", "fix the key named, then run evgw check again"
            )
            for problem in exc.problems
        ]
    results = [ok("config", f"{config_path or default_config_path()} is valid")]
    results += local_checks(config)
    return results


def _check(args: argparse.Namespace) -> int:
    results = run_checks(args.config)
    print(render(results))
    failed = sum(r.level is Level.FAIL for r in results)
    warned = sum(r.level is Level.WARN for r in results)
    print(f"\n{len(results)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0
