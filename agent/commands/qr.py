"""``evgw qr CONNECTOR_ID``: the connector's QR code (T/CEC 102.1 Annex A, DB4403 Annex A)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import segno

from agent.config.load import default_config_path, load_config
from agent.errors import UserError

WORD = re.compile(r"^\w+$", re.ASCII)


def connector_qr(connector_id: str, operator_id: str, custom: str = "") -> str:
    """``hlht://<ConnectorID>.<OperatorID>/<custom>`` (the custom part optional)."""
    if not WORD.match(connector_id):
        raise UserError(
            f"connector id {connector_id!r}: the QR format allows letters, digits and _ only",
            exit_code=2,
        )
    if not (len(operator_id) == 9 and WORD.match(operator_id)):
        raise UserError(f"operator id {operator_id!r}: must be 9 letters or digits", exit_code=2)
    return (
        f"hlht://{connector_id}.{operator_id}/{custom}"
        if custom
        else f"hlht://{connector_id}.{operator_id}"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "qr",
        help="the QR code drivers scan to start charging at a connector",
        description=(
            "Print the connector's QR code, hlht://<ConnectorID>.<OperatorID>[/<data>] "
            "(T/CEC 102.1 Annex A; DB4403/T 77 Annex A is assumed to use the same format), "
            "as text and as a terminal QR code, or write it as an image (--out FILE.png/.svg)."
        ),
    )
    parser.add_argument("connector_id", metavar="CONNECTOR_ID")
    parser.add_argument("--data", default="", help="operator-defined data after the '/'")
    parser.add_argument("--operator-id", help="OperatorID (default: gateway.operator_id)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="evgw config (connector ids)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write a PNG or SVG image")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    operator_id = args.operator_id
    if args.config is not None or operator_id is None:
        config = load_config(args.config or default_config_path())
        known = config.connectors()
        if args.connector_id not in known:
            raise UserError(
                f"no connector {args.connector_id!r} in the config (known: "
                f"{', '.join(sorted(known))})",
                exit_code=2,
            )
        operator_id = operator_id or config.gateway.operator_id
    text = connector_qr(args.connector_id, operator_id, args.data)
    code = segno.make(text, error="m")
    print(text)
    if args.out is not None:
        if args.out.suffix.lower() not in (".png", ".svg"):
            raise UserError(f"{args.out}: write a .png or an .svg", exit_code=2)
        try:
            code.save(str(args.out), scale=8, border=4)
        except OSError as exc:
            raise UserError(f"cannot write {args.out}: {exc.strerror}", exit_code=2) from None
    else:
        code.terminal(out=sys.stdout, compact=True)
    return 0
