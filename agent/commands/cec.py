"""``evgw cec seal|open``: build or check a T/CEC 102 envelope by hand.

What a technician uses when a platform answers ``Ret 4001`` (signature) or ``4003`` (Data):
seal the exact plaintext with the configured secrets and compare, or open what the platform
sent and see which step fails.
"""

from __future__ import annotations

import argparse
import stat
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from agent.errors import UserError
from agent.uplink.cec.codec import (
    CecCodecError,
    CecSecrets,
    OpenedResponse,
    SeqGenerator,
    envelope_bytes,
    open_envelope,
    parse_envelope,
    seal_request,
)

_SECRET_FLAGS = ("data_secret", "data_iv", "sig_secret")


def load_secrets_file(path: Path) -> dict[str, str]:
    """The ``[cec]`` table of a secrets TOML; refuses a file readable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UserError(f"cannot read secrets file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"secrets file {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"secrets file {path} is not valid TOML: {exc}", 2) from None
    table = doc.get("cec")
    if not isinstance(table, dict):
        raise UserError(f"secrets file {path} has no [cec] table", 2)
    out: dict[str, str] = {}
    for key, value in table.items():
        if not isinstance(value, str):
            raise UserError(f"secrets file {path}: cec.{key} must be a string", 2)
        out[key] = value
    return out


def _secrets(args: argparse.Namespace) -> CecSecrets:
    from_file = load_secrets_file(Path(args.secrets)) if args.secrets else {}
    values: dict[str, str] = {}
    for name in _SECRET_FLAGS:
        value = getattr(args, name) or from_file.get(name)
        if not value:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"missing {name}: pass {flag} or --secrets FILE with cec.{name}", 2)
        values[name] = value
    if args.key_as_iv:
        values["data_iv"] = values["data_secret"]
    try:
        return CecSecrets(**values)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None


def _seal(args: argparse.Namespace) -> int:
    secrets = _secrets(args)
    if len(args.operator_id) != 9:
        raise UserError(f"--operator-id must be 9 characters, got {len(args.operator_id)}", 2)
    stamp, seq = SeqGenerator().next(time.time())
    if args.timestamp is not None:
        if len(args.timestamp) != 14 or not args.timestamp.isdigit():
            raise UserError("--timestamp must be 14 digits yyyyMMddHHmmss", 2)
        stamp = args.timestamp
    if args.seq is not None:
        if len(args.seq) != 4 or not args.seq.isdigit():
            raise UserError("--seq must be 4 digits, e.g. 0001", 2)
        seq = args.seq
    plaintext = sys.stdin.buffer.read()
    envelope = seal_request(
        plaintext, operator_id=args.operator_id, timestamp=stamp, seq=seq, secrets=secrets
    )
    sys.stdout.write(envelope_bytes(envelope).decode("ascii") + "\n")
    return 0


def _open(args: argparse.Namespace) -> int:
    secrets = _secrets(args)
    raw = sys.stdin.buffer.read()
    try:
        envelope: dict[str, Any] = parse_envelope(raw)
        opened = open_envelope(envelope, secrets, accept_lowercase_sig=not args.strict_sig)
    except CecCodecError as exc:
        raise UserError(
            f"cannot open envelope ({exc.problem}, a receiver answers Ret {exc.ret}): {exc}"
        ) from None
    if isinstance(opened, OpenedResponse):
        print(f"response: Sig OK, Ret {opened.ret}, Msg {opened.msg!r}", file=sys.stderr)
        if opened.plaintext is None:
            print("response Data is empty", file=sys.stderr)
            return 0
        plaintext = opened.plaintext
    else:
        print(
            f"request: Sig OK, OperatorID {opened.operator_id}, TimeStamp {opened.timestamp}, "
            f"Seq {opened.seq}",
            file=sys.stderr,
        )
        plaintext = opened.plaintext
    sys.stdout.buffer.write(plaintext + (b"" if plaintext.endswith(b"\n") else b"\n"))
    return 0


def _add_secret_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-secret", metavar="S", help="DataSecret (AES key, 16 characters)")
    parser.add_argument("--data-iv", metavar="S", help="DataSecretIV (AES IV, 16 characters)")
    parser.add_argument("--sig-secret", metavar="S", help="SigSecret (HMAC-MD5 key)")
    parser.add_argument(
        "--secrets",
        metavar="FILE",
        help="secrets TOML with a [cec] table (data_secret, data_iv, sig_secret); mode 0600",
    )
    parser.add_argument(
        "--key-as-iv", action="store_true", help="use the DataSecret as IV (Shenzhen 2020 quirk)"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cec",
        help="seal or open a T/CEC 102 envelope (debugging Ret 4001/4003)",
        description=(
            "Seal a plaintext business object into a T/CEC 102 request envelope, or open an "
            "envelope (request or response) and check its Sig. Secrets come from flags or "
            "from --secrets FILE."
        ),
    )
    sub = parser.add_subparsers(dest="cec_command", metavar="ACTION", required=True)
    seal = sub.add_parser(
        "seal",
        help="plaintext on stdin → request envelope JSON on stdout",
        description=(
            "Read the business JSON from stdin and print the request envelope. The bytes are "
            "encrypted exactly as given, never re-serialised."
        ),
    )
    seal.add_argument("--operator-id", required=True, metavar="ID", help="own OperatorID (9 chars)")
    seal.add_argument("--timestamp", metavar="yyyyMMddHHmmss", help="default: now, UTC+8")
    seal.add_argument("--seq", metavar="NNNN", help="default: 0001")
    _add_secret_flags(seal)
    seal.set_defaults(func=_seal)
    opener = sub.add_parser(
        "open",
        help="envelope JSON on stdin → checks Sig, prints the plaintext",
        description=(
            "Read a request or response envelope from stdin, check its Sig and print the "
            "decrypted Data; on failure say which step failed (Base64, padding, key, Sig)."
        ),
    )
    opener.add_argument(
        "--strict-sig", action="store_true", help="refuse a lowercase Sig (as strict platforms do)"
    )
    _add_secret_flags(opener)
    opener.set_defaults(func=_open)
