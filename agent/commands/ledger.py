"""``evgw ledger export|verify|stats``: look into a ledger file, or a copy of one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from agent.commands.ledger_settings import add_arguments, resolve
from agent.errors import UserError
from agent.ledger import GatewayKey
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.keys import PublicKey
from agent.ledger.stats import ledger_stats, render
from agent.ledger.verify import Report, verify_lines
from agent.records.bodies import KINDS

_SQLITE_MAGIC = b"SQLite format 3\x00"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "ledger",
        help="export, verify or summarise the signed ledger",
        description=(
            "Work on the ledger file (ledger.path from the config, or --ledger PATH for any "
            "copy). Reading is safe while the service runs."
        ),
    )
    actions = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    export = actions.add_parser(
        "export",
        help="write records and checkpoints as JSON Lines",
        description=(
            "Write records, signed checkpoints and stubs (records whose body is not "
            "exported) as JSON Lines, in chain order, for `evgw ledger verify` or a regulator."
        ),
    )
    add_arguments(export, ledger=True, key=False)
    export.add_argument("--from", dest="from_seq", type=int, metavar="SEQ", help="first seq")
    export.add_argument("--to", dest="to_seq", type=int, metavar="SEQ", help="last seq")
    export.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        choices=KINDS,
        metavar="KIND",
        help="export only records of this kind (repeatable); others become hash-only stubs. "
        f"One of: {', '.join(KINDS)}",
    )
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout"
    )
    export.set_defaults(func=_export)

    verify = actions.add_parser(
        "verify",
        help="check the chain and every signature of an export",
        description=(
            "Recompute every hash and link, check every checkpoint signature with the given "
            "public key(s) and follow key rotations. Reports the first broken link with its "
            "seq and every problem found. Exit 0 only when everything holds."
        ),
    )
    verify.add_argument(
        "file",
        metavar="FILE",
        help="an export (JSON Lines, '-' for stdin) or a ledger file itself",
    )
    verify.add_argument(
        "--pubkey",
        action="append",
        type=Path,
        metavar="PEM",
        help="trusted public key file (PEM or hex DER; repeatable). Default: the public half "
        "of --key / ledger.key_path",
    )
    add_arguments(verify, ledger=False, key=True)
    verify.add_argument(
        "--allow-unsigned-tail",
        action="store_true",
        help="do not fail on records after the last checkpoint (a live ledger's newest minute)",
    )
    verify.set_defaults(func=_verify)

    stats = actions.add_parser(
        "stats",
        help="counts by kind, size on disk, cursors and backlog per uplink",
        description="Summarise a ledger: records by kind, size, last checkpoint, uplinks.",
    )
    add_arguments(stats, ledger=True, key=False)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_stats)


def _export(args: argparse.Namespace) -> int:
    path = resolve(args).need_ledger()
    if args.from_seq is not None and args.to_seq is not None and args.from_seq > args.to_seq:
        raise UserError(f"--from {args.from_seq} is after --to {args.to_seq}", 2)
    conn = open_for_reading(path)
    count = 0
    with ExitStack() as stack:
        out: BinaryIO = (
            stack.enter_context(args.output.open("wb"))
            if args.output is not None
            else sys.stdout.buffer
        )
        for line in export_lines(
            conn, from_seq=args.from_seq, to_seq=args.to_seq, kinds=args.kinds
        ):
            out.write(line + b"\n")
            count += 1
        out.flush()
    conn.close()
    if args.output is not None:
        print(f"wrote {count} lines to {args.output}", file=sys.stderr)
    return 0


def _trusted_keys(args: argparse.Namespace) -> list[PublicKey]:
    if args.pubkey:
        return [PublicKey.from_file(p) for p in args.pubkey]
    if args.key is None and args.config is None:
        raise UserError("give the gateway's public key with --pubkey PEM", 2)
    return [GatewayKey.load(resolve(args).need_key()).public]


def _lines(source: str) -> Iterator[bytes]:
    if source == "-":
        yield from sys.stdin.buffer
        return
    path = Path(source)
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
            if head.startswith(_SQLITE_MAGIC):
                handle.close()
                conn = open_for_reading(path)
                try:
                    yield from export_lines(conn)
                finally:
                    conn.close()
                return
            if b"\0" in head:
                raise UserError(
                    f"{path} is neither an export (JSON Lines) nor a ledger file with a "
                    "readable header (a damaged ledger? the service salvages it at its next "
                    "start and keeps the damaged file as <ledger>.corrupt-<time>)"
                )
            handle.seek(0)
            yield from handle
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc


def _verify(args: argparse.Namespace) -> int:
    keys = _trusted_keys(args)
    report = verify_lines(_lines(args.file), keys, allow_unsigned_tail=args.allow_unsigned_tail)
    span = f"seq {report.first_seq}..{report.last_seq}" if report.last_seq is not None else "none"
    summary = (
        f"{report.records} records ({span}), {report.checkpoints_ok} valid checkpoints, "
        f"signed up to seq {report.signed_upto}"
    )
    if report.stubs_dropped or report.stubs_omitted:
        summary += (
            f"; {report.stubs_dropped} dropped by retention, {report.stubs_omitted} omitted "
            "by the export (hash only)"
        )
    if report.keys_followed:
        summary += f"; followed {len(report.keys_followed)} key rotation(s)"
    first = report.first_problem
    if first is None:
        print(f"OK: {summary}")
        _notes(report)
        return 0
    print(f"FAILED: first broken link at {first}")
    for problem in report.problems:
        print(f"  {problem}")
    if report.problems_truncated:
        print("  … more problems not listed")
    print(f"checked: {summary}")
    _notes(report)
    return 1


def _notes(report: Report) -> None:
    """Losses the ledger declared and rows it set aside: not failures, but named."""
    for note in report.declared:
        print(f"  declared lost: {note}")
    for note in report.quarantined:
        print(f"  quarantined: {note}")


def _stats(args: argparse.Namespace) -> int:
    path = resolve(args).need_ledger()
    conn = open_for_reading(path)
    try:
        stats = ledger_stats(conn, path)
    finally:
        conn.close()
    print(json.dumps(stats, indent=2) if args.json else render(stats))
    return 0
