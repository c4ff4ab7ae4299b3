"""``evgw replay --can FILE [--connector ID] [--config CFG] [--plot OUT]``: what the gateway
would report for a recorded session, and optionally its plot (as ``evgw session plot``)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import msgspec

from agent.commands.session import from_capture
from agent.commands.session_plot import draw
from agent.config.load import load_config
from agent.errors import UserError
from agent.station.replay import (
    DEFAULT_CONNECTOR,
    ReplayStats,
    default_config,
    pick_connector,
    run_capture,
)
from drivers.gbt27930.replay import ReplayError, read_frames, supported_suffixes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="run the station model over a CAN capture and print the records as JSON Lines",
        description=(
            "Replay a recorded CAN capture of one DC connector through the GB/T 27930 decoder "
            "and the station model, with the times from the file, and print the records the "
            "gateway would write (identity, connector_status, bms_process, alarm, "
            "charge_order …) as JSON Lines on stdout. Nothing is written to the ledger and "
            "nothing is sent. A summary goes to stderr."
        ),
        epilog=(
            "Capture formats (by extension, optionally .gz): "
            f"{', '.join(supported_suffixes())}. Example: "
            "evgw replay --can session.log --config /etc/evgw/evgw.toml "
            "--connector SZFT0001DC0101 | jq -c 'select(.kind==\"charge_order\")'"
        ),
    )
    parser.add_argument("--can", required=True, metavar="FILE", help="CAN capture file")
    parser.add_argument(
        "--connector",
        metavar="ID",
        help=(
            "connector the capture belongs to (default: the first CAN bus of the config, or "
            f"{DEFAULT_CONNECTOR} without a config)"
        ),
    )
    parser.add_argument(
        "--config",
        metavar="CFG",
        help="evgw.toml for station ids and thresholds (default: a one-connector DC station)",
    )
    parser.add_argument(
        "--plot",
        metavar="OUT",
        type=Path,
        help=(
            "also draw the capture's first session to OUT (.png, .svg, .pdf; needs the "
            "optional extra evgw[plot]); other sessions: evgw session plot --can FILE N OUT"
        ),
    )
    parser.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    if args.config:
        config = load_config(args.config)
        connector = args.connector or pick_connector(config)
        if connector not in config.connectors():
            known = ", ".join(config.connectors())
            raise UserError(
                f"{args.config}: no connector {connector!r}; connectors in this config: {known}",
                exit_code=2,
            )
    else:
        connector = args.connector or DEFAULT_CONNECTOR
        if len(connector) > 26:
            raise UserError(f"--connector {connector!r}: at most 26 characters", exit_code=2)
        config = default_config(connector)
    encoder = msgspec.json.Encoder()
    kinds: Counter[str] = Counter()
    out = sys.stdout.buffer
    stats = ReplayStats()
    try:
        for record in run_capture(read_frames(args.can), config, connector, stats=stats):
            kinds[record.kind] += 1
            out.write(encoder.encode(record) + b"\n")
    except ReplayError as exc:
        raise UserError(f"{exc}", exit_code=2) from None
    except BrokenPipeError:  # e.g. piped into head
        return 0
    out.flush()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no records"
    if stats.timestamps_constant:
        summary += (
            "; timestamps_constant: the capture's timestamps do not advance, battery samples"
            " were taken per message cycle and durations are unknown"
        )
    print(f"evgw replay: {args.can}: {summary}", file=sys.stderr)
    if args.plot is not None:
        series = from_capture(Path(args.can), None)
        draw(series, args.plot)
        print(f"evgw replay: wrote {args.plot}: {len(series.t_s)} samples", file=sys.stderr)
    return 0
