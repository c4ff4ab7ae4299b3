"""``evgw``: the command-line entry point.

Sub-commands live in :mod:`agent.commands`, one module each, discovered at start-up.
Usage errors exit 2 with the usage line; a handled failure (bad config, missing device)
prints one clear message and exits with the code the command chose; nothing prints a
traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from agent import commands
from agent.errors import UserError
from agent.version import VERSION

TRACEBACK_ENV = "EVGW_TRACEBACK"
"""Set to show the traceback of an internal error (for a bug report)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evgw",
        description=(
            "evgw: edge gateway for EV charging stations. Reads Modbus meters and GB/T 27930 "
            "CAN traffic, keeps a signed ledger of charging records and forwards it over "
            "MQTT and T/CEC 102."
        ),
    )
    parser.add_argument("--version", action="version", version=f"evgw {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):  # a command; the rest are helpers the commands share
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # a library's malformed log call must not print "--- Logging error ---" and a traceback
    logging.raiseExceptions = False
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except UserError as exc:
        print(f"evgw: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `evgw … | head` closed the pipe: not an error worth a traceback
        sys.stderr.close()
        return 0
    except Exception as exc:  # the last guard: a bug must not show a user a traceback
        print(
            f"evgw: internal error in `evgw {args.command}`: {type(exc).__name__}: {exc}\n"
            f"  this is a bug; run again with {TRACEBACK_ENV}=1 and report the output",
            file=sys.stderr,
        )
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
