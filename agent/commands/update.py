"""``evgw update pack|apply|status``: signed software updates with automatic rollback."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
from pathlib import Path

from agent.config.load import default_config_path, load_config
from agent.errors import UserError
from agent.ledger import GatewayKey, PublicKey
from agent.ops.layout import Layout
from agent.ops.release import pack
from agent.ops.update import UpdateSettings, apply, apply_pending
from agent.ops.update_ledger import running_version


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "update",
        help="apply a signed software update (rolled back when unhealthy), or show versions",
        description=(
            "Signed software updates: a release artefact (the evgw wheel and its locked "
            "dependency wheels, signed by the release key) is verified, installed into "
            "/opt/evgw/releases/VERSION, switched to atomically and restarted through systemd; "
            "if it does not reach READY and a healthy first minute, the previous release is "
            "restored. Every step is logged in /opt/evgw/updates.jsonl and as ledger events."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("pack", help="build a signed artefact from a folder of wheels")
    p.add_argument("wheels", type=Path, help="folder with evgw-*.whl and its dependency wheels")
    p.add_argument("--key", type=Path, required=True, help="the release private key (PEM)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    p.set_defaults(func=_pack)
    a = actions.add_parser("apply", help="verify, install, switch, restart; roll back if unhealthy")
    a.add_argument("artefact", type=Path, help="evgw-VERSION.tar (its .sig beside it)")
    a.add_argument("--signature", type=Path, help="the detached signature (default ARTEFACT.sig)")
    _apply_options(a)
    a.set_defaults(func=_apply)
    pending = actions.add_parser(
        "apply-pending",
        help="apply what the MQTT update command downloaded (run by evgw-update.path as root)",
    )
    _apply_options(pending)
    pending.set_defaults(func=_apply_pending)
    st = actions.add_parser("status", help="current, previous and running versions, last steps")
    _common(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=_status)


def _apply_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--release-key", type=Path, help="default <root>/etc/evgw/release.pub")
    parser.add_argument(
        "--systemctl",
        default="systemctl",
        help="program that runs `stop|start evgw.service` (default systemctl)",
    )
    parser.add_argument("--start-timeout-s", type=float, default=60.0, help="READY (default 60)")
    parser.add_argument("--health-s", type=float, default=60.0, help="healthy run (default 60)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help=f"config file (default {default_config_path()})"
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="install root (default /)")


def _pack(args: argparse.Namespace) -> int:
    if not args.wheels.is_dir():
        raise UserError(f"{args.wheels} is not a folder of wheels", 2)
    if not args.key.is_file():
        raise UserError(
            f"release key {args.key} does not exist (make one: evgw keys generate --key FILE)", 2
        )
    try:
        artefact, version = pack(args.wheels, GatewayKey.load(args.key), args.out)
    except OSError as exc:
        raise UserError(f"{exc.filename or args.out}: {exc.strerror}", 2) from None
    print(f"wrote {artefact} and {artefact.name}.sig (evgw {version})")
    return 0


def _settings(args: argparse.Namespace) -> UpdateSettings:
    layout = Layout(args.root)
    for name in ("start_timeout_s", "health_s"):
        if not 0 < getattr(args, name) <= 3600:
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{flag} {getattr(args, name)}: expected 0..3600", 2)
    return UpdateSettings(
        layout=layout,
        config=load_config(args.config),
        release_key=PublicKey.from_file(args.release_key or layout.release_key),
        systemctl=tuple(shlex.split(args.systemctl)),
        start_timeout_s=args.start_timeout_s,
        health_s=args.health_s,
    )


def _apply(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        version = apply(settings, args.artefact, args.signature)
    except OSError as exc:
        where = exc.filename or settings.layout.opt
        raise UserError(f"{where}: {exc.strerror}: run as root", 2) from None
    print(f"evgw {version} is running and healthy; previous release kept for a rollback")
    return 0


def _apply_pending(args: argparse.Namespace) -> int:
    done = apply_pending(_settings(args))
    for name, outcome in done:
        print(f"{name}: {outcome}")
    return 1 if any(not outcome.startswith("applied") for _, outcome in done) else 0


def _status(args: argparse.Namespace) -> int:
    layout = Layout(args.root)
    config = load_config(args.config)
    info = {
        "current": layout.version_of(layout.current),
        "previous": layout.version_of(layout.previous),
        "running": running_version(config),
        "releases": sorted(p.name for p in layout.releases.glob("*") if p.is_dir()),
        "steps": layout.steps()[-10:],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("current", "previous", "running"):
        print(f"{key:<9} {info[key] or '—'}")
    print(f"releases  {', '.join(info['releases']) or '—'}")
    for step in info["steps"]:
        when = dt.datetime.fromtimestamp(step["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        detail = step.get("reason") or step.get("version") or ""
        print(f"  {when}  {step['step']:<20} {detail}")
    return 0
