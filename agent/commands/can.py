"""``evgw can``: decode GB/T 27930 CAN logs and watch live traffic.

``evgw can decode FILE`` replays any log python-can reads (candump .log, .asc, .blf, .trc,
.csv) through the same pipeline the service uses. ``evgw can sniff`` opens an interface
listen-only and prints decoded traffic until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from typing import Any

from agent.commands.can_table import (
    digest_header,
    digest_rows,
    message_line,
    write_counts,
    write_rows,
    write_table,
)
from agent.errors import UserError
from drivers.gbt27930.bus import BusSpec, BusStateChanged, CanListener
from drivers.gbt27930.events import BmsEvent, ChargingSample, SessionClosed
from drivers.gbt27930.pipeline import Decoded
from drivers.gbt27930.replay import ReplayError, read_frames, run_frames, supported_suffixes
from drivers.gbt27930.report import message_record, pipeline_record, session_record

FORMATS = ("jsonl", "table", "summary")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    can_p = subparsers.add_parser(
        "can",
        help="decode GB/T 27930 CAN logs or watch a CAN bus",
        description="Decode GB/T 27930 (charger↔BMS) CAN traffic from log files or live.",
    )
    sub = can_p.add_subparsers(dest="can_command", metavar="SUBCOMMAND", required=True)

    dec = sub.add_parser(
        "decode",
        help="decode a CAN log file",
        description=(
            "Decode a CAN log (formats by extension: "
            + ", ".join(supported_suffixes())
            + "; .gz accepted). jsonl: one JSON object per decoded message (ts, name, pgn, "
            "src, dst, fields). table: readable lines (repeated cyclic messages collapsed into one "
            "line with their count and value ranges) and a session digest. summary: one "
            "JSON object with every session, frame counts and anomalies."
        ),
    )
    dec.add_argument("file", metavar="FILE", help="log file to decode")
    dec.add_argument("--format", choices=FORMATS, default="table", help="output (default table)")
    dec.add_argument("--connector", default="", help="connector id to stamp on sessions")
    dec.set_defaults(func=cmd_decode)

    sn = sub.add_parser(
        "sniff",
        help="show live decoded traffic (listen-only)",
        description=(
            "Open a CAN interface listen-only and print decoded GB/T 27930 messages and "
            "session events until Ctrl-C. Nothing is ever transmitted."
        ),
    )
    sn.add_argument("--interface", required=True, help="python-can interface: socketcan, slcan, …")
    sn.add_argument("--channel", required=True, help="channel: can0, /dev/ttyACM0, …")
    sn.add_argument("--bitrate", type=int, default=250000, help="bit rate (default 250000)")
    sn.add_argument("--format", choices=("table", "jsonl"), default="table", help="output")
    sn.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sn.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra python-can option (repeatable), e.g. sleep_after_open=0",
    )
    sn.set_defaults(func=cmd_sniff)


def _digest(session: dict[str, Any], out: Any) -> None:
    out.write(f"\n{digest_header(session)}\n")
    write_rows(digest_rows(session), out)


def cmd_decode(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        bad: Counter[str] = Counter()
        frames = read_frames(args.file, bad)
        result = run_frames(
            frames, connector_id=args.connector, keep_messages=args.format != "summary"
        )
    except ReplayError as exc:
        raise UserError(f"{exc}", 2) from None
    sessions = [session_record(e.summary) for e in result.sessions]
    if args.format == "jsonl":
        for d in result.messages:
            out.write(json.dumps(message_record(d), separators=(",", ":")) + "\n")
    elif args.format == "summary":
        doc = {
            "file": str(args.file),
            "bad_log_lines": bad["bad_log_line"],
            "sessions": sessions,
            **pipeline_record(result.pipeline),
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        write_table(result.messages, result.first_ts or 0.0, out)
        for s in sessions:
            _digest(s, out)
        out.write("\n")
        write_counts(pipeline_record(result.pipeline), bad["bad_log_line"], out)
    return 0


def _parse_options(items: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r}: expected KEY=VALUE", 2)
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def cmd_sniff(args: argparse.Namespace) -> int:
    spec = BusSpec(
        args.interface, args.channel, bitrate=args.bitrate, extra=_parse_options(args.option)
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_sniff(spec, args.format, args.duration))
    return 0


async def _sniff(spec: BusSpec, fmt: str, duration: float | None) -> None:
    t0: list[float] = []

    async def show(item: Decoded | BmsEvent | BusStateChanged) -> None:
        if isinstance(item, BusStateChanged):
            print(f"# bus {item.state}: {item.detail}", file=sys.stderr, flush=True)
            return
        if isinstance(item, Decoded):
            if not t0:
                t0.append(item.ts)
            if fmt == "jsonl":
                print(json.dumps(message_record(item), separators=(",", ":")), flush=True)
            else:
                print("\n".join(message_line(item, t0[0])), flush=True)
        elif isinstance(item, SessionClosed):
            if fmt == "jsonl":
                print(json.dumps({"session": session_record(item.summary)}), flush=True)
            else:
                _digest(session_record(item.summary), sys.stdout)
        elif not isinstance(item, ChargingSample) and fmt == "table":
            print(f"# {type(item).__name__}", flush=True)

    listener = CanListener(spec, show, messages=True)
    task = asyncio.create_task(listener.run())
    try:
        if duration is not None:
            await asyncio.sleep(duration)
            listener.stop()
        await task
    finally:
        listener.stop()
        if not task.done():
            await task
