"""``evgw receipt SESSION_ID`` and ``evgw receipt verify FILE``: receipts a driver can check."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import segno

from agent.billing import receipt as receipts
from agent.commands.ledger_settings import add_arguments, resolve
from agent.errors import UserError
from agent.ledger import GatewayKey
from agent.ledger.export import open_for_reading
from agent.ledger.keys import PublicKey

USAGE = "evgw receipt SESSION_ID [--qr] [-o FILE] | evgw receipt verify FILE --pubkey PEM"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "receipt",
        help="a signed receipt of one charging session, or check one offline",
        usage=USAGE,
        description=(
            "Print the receipt of a session as JSON: its charging order as the ledger holds it "
            "(charge details, money, OCMF string, seq and hash), attested by the gateway key, "
            "with the signed ledger checkpoint that covers it. --qr adds a terminal QR code of "
            "the attestation. `evgw receipt verify FILE --pubkey PEM` checks a receipt offline "
            "with the gateway's public key (`evgw keys show`): exit 0 when it holds, 1 when not."
        ),
    )
    parser.add_argument(
        "words", nargs="+", metavar="SESSION_ID | verify FILE", help="what to print or check"
    )
    parser.add_argument("--qr", action="store_true", help="also print a terminal QR code")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE", help="write the JSON here")
    parser.add_argument(
        "--pubkey", type=Path, metavar="PEM", help="the gateway's public key (for verify)"
    )
    add_arguments(parser, ledger=True, key=True)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.words[0] == "verify":
        if len(args.words) != 2 or args.pubkey is None:
            raise UserError(f"usage: {USAGE}", exit_code=2)
        return _verify(Path(args.words[1]), args.pubkey)
    if len(args.words) != 1:
        raise UserError(f"usage: {USAGE}", exit_code=2)
    return _print(args, args.words[0])


def _print(args: argparse.Namespace, session_id: str) -> int:
    settings = resolve(args)
    key = GatewayKey.load(settings.need_key())
    conn = open_for_reading(settings.need_ledger())
    try:
        gateway_id = conn.execute("SELECT value FROM meta WHERE key = 'gateway_id'").fetchone()[0]
        receipt = receipts.build(conn, gateway_id, session_id, key, receipts.now_utc())
    except receipts.ReceiptError as exc:
        raise UserError(str(exc), exit_code=1) from None
    finally:
        conn.close()
    data = receipts.encode(receipt)
    if args.out is not None:
        try:
            args.out.write_bytes(data)
        except OSError as exc:
            raise UserError(f"cannot write {args.out}: {exc.strerror}", exit_code=2) from None
    else:
        sys.stdout.write(data.decode())
    if args.qr:
        print("\n".join(receipts.summary(receipt)), file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr if args.out is None else sys.stdout):
            segno.make(receipts.qr_text(receipt), error="m").terminal(compact=True)
    return 0


def _verify(path: Path, pubkey: Path) -> int:
    key = PublicKey.from_file(pubkey)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", exit_code=2) from None
    try:
        receipt = receipts.decode(data)
    except receipts.ReceiptError as exc:
        raise UserError(f"{path}: {exc}", exit_code=2) from None
    problems = receipts.verify(receipt, key)
    if problems:
        print(f"FAILED: {path}", *(f"  - {p}" for p in problems), sep="\n")
        return 1
    print(f"OK: {path} — the gateway's key attests this order at seq {receipt.record['seq']}")
    print("\n".join(receipts.summary(receipt)))
    return 0
