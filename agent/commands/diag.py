"""``evgw diag``: one archive for support (version, config, checks, status, ledger, journal)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from agent.config.load import default_config_path, load_config
from agent.errors import UserError
from agent.ops.diag import build_archive


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "diag",
        help="build a diagnostics archive for support (no secrets in it)",
        description=(
            "Build one .tar.gz a support engineer can read: version, the config, the local "
            "checks of evgw check, evgw status of the running service, ledger stats and the last "
            "records of each kind, CAN and meter counters, the unit's recent journal lines. "
            "Every value of the secrets file is replaced by *** in every file of it."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help=f"config file (default {default_config_path()})"
    )
    parser.add_argument(
        "--out",
        help="where to write it (default evgw-diag-<gateway>-<time>.tar.gz here; - for stdout)",
    )
    parser.add_argument(
        "--records", type=int, default=20, help="last records of each kind (default 20, 0..1000)"
    )
    parser.add_argument(
        "--journal-lines", type=int, default=500, help="journal lines (default 500, 0..100000)"
    )
    parser.set_defaults(func=_diag)


def _diag(args: argparse.Namespace) -> int:
    if not 0 <= args.records <= 1000:
        raise UserError(f"--records {args.records}: expected 0..1000", 2)
    if not 0 <= args.journal_lines <= 100_000:
        raise UserError(f"--journal-lines {args.journal_lines}: expected 0..100000", 2)
    path = Path(args.config or default_config_path())
    config = load_config(path)
    data = build_archive(config, path, per_kind=args.records, journal_lines=args.journal_lines)
    if args.out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out or f"evgw-diag-{config.gateway.gateway_id}-{stamp}.tar.gz")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}", 2) from None
    print(f"wrote {out} ({len(data)} bytes): send it to support")
    return 0
