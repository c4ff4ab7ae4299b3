"""``evgw keys generate|show|rotate``: the gateway signing key."""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
from pathlib import Path

from agent.commands.ledger_settings import add_arguments, resolve
from agent.errors import UserError
from agent.ledger import GatewayKey, Ledger
from agent.ledger.keys import PublicKey

SERVICE_USER = "evgw"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "keys",
        help="create, show or rotate the gateway signing key",
        description=(
            "The gateway signs ledger checkpoints (and OCMF strings) with one ECDSA P-256 "
            "key. Paths default to ledger.key_path / ledger.path from the config."
        ),
    )
    keys = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    gen = keys.add_parser(
        "generate",
        help="create a new private key (mode 0600)",
        description=(
            "Create a new P-256 private key readable only by the service user. Refuses to "
            "overwrite an existing key: use `evgw keys rotate` to replace one in service."
        ),
    )
    add_arguments(gen, ledger=False, key=True)
    gen.add_argument(
        "--owner",
        metavar="USER",
        help=f"owner of the key file (default: {SERVICE_USER} when run as root and the user "
        "exists, else the current user)",
    )
    gen.set_defaults(func=_generate)

    show = keys.add_parser(
        "show",
        help="print the public key (PEM and hex DER) and its fingerprint",
        description=(
            "Print the public key as PEM, as the hex DER form OCMF verifiers take, and its "
            "fingerprint (the key id in checkpoints). Give it to whoever verifies exports."
        ),
    )
    add_arguments(show, ledger=False, key=True)
    show.set_defaults(func=_show)

    rotate = keys.add_parser(
        "rotate",
        help="replace the key, announced in the ledger by the old key",
        description=(
            "Generate a new key, append an `event` record announcing it signed by the old "
            "key (so verifiers can follow the chain of keys), then install the new key at "
            "--key; the old one is kept next to it as KEY.retired-<fingerprint>. Stop the "
            "service first: only one process may write the ledger."
        ),
    )
    add_arguments(rotate, ledger=True, key=True)
    rotate.add_argument(
        "--gateway-id", metavar="ID", help="gateway id (default: gateway.gateway_id)"
    )
    rotate.set_defaults(func=_rotate)


def _owner(name: str | None) -> tuple[int, int] | None:
    if name is None:
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UserError(f"--owner: no user named {name!r} on this system", 2) from None
    return entry.pw_uid, entry.pw_gid


def _generate(args: argparse.Namespace) -> int:
    path = resolve(args).need_key()
    if path.exists():
        raise UserError(
            f"{path} already exists; refusing to overwrite a key (use `evgw keys rotate` to "
            "replace the key of a gateway in service)"
        )
    if not path.parent.is_dir():
        raise UserError(f"directory {path.parent} does not exist; create it first")
    owner = _owner(args.owner)
    key = GatewayKey.generate()
    try:
        key.save(
            path,
            owner_uid=None if owner is None else owner[0],
            owner_gid=None if owner is None else owner[1],
        )
    except PermissionError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}; run as root or the owner") from exc
    print(f"wrote {path} (mode 0600)")
    _print_public(key.public)
    return 0


def _print_public(public: PublicKey) -> None:
    print(public.pem, end="")
    print(f"public key (hex DER, for OCMF verifiers): {public.der_hex}")
    print(f"fingerprint (key id): {public.fingerprint}")


def _show(args: argparse.Namespace) -> int:
    _print_public(GatewayKey.load(resolve(args).need_key()).public)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    settings = resolve(args)
    key_path, ledger_path = settings.need_key(), settings.need_ledger()
    old = GatewayKey.load(key_path)
    new = GatewayKey.generate()
    staged = key_path.with_name(key_path.name + ".new")
    if staged.exists():
        raise UserError(f"{staged} exists from an interrupted rotation; remove it and run again")
    st = key_path.stat()
    new.save(staged, owner_uid=st.st_uid, owner_gid=st.st_gid)
    try:
        event_seq = asyncio.run(
            _announce(ledger_path, settings.gateway_id, settings.station_id, old, new)
        )
    except BaseException:
        staged.unlink()
        raise
    retired = key_path.with_name(f"{key_path.name}.retired-{old.fingerprint[:16]}")
    os.replace(key_path, retired)
    os.replace(staged, key_path)
    print(f"announced the new key in ledger record seq {event_seq} (signed by the old key)")
    print(f"old key kept as {retired}")
    _print_public(new.public)
    return 0


async def _announce(
    ledger_path: Path,
    gateway_id: str | None,
    station_id: str | None,
    old: GatewayKey,
    new: GatewayKey,
) -> int:
    ledger = await Ledger.open(ledger_path, gateway_id=gateway_id, key=old, station_id=station_id)
    try:
        event = await ledger.rotate_key(new)
    finally:
        await ledger.close()
    return event.seq
