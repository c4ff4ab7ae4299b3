"""``evgw config apply FILE``: the running service takes a new config part by part.

The file goes to the running service over its status socket (verb ``config``), which
validates it, switches only the parts the change concerns, and keeps it only when every bus,
meter and uplink that worked before works again within the apply timeout; otherwise it
restores the previous config (:mod:`agent.service.apply`). Exit 0 applied (or already
running), 1 rolled back, refused or no service to ask, 2 usage or an unreadable file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent.commands.service_link import ask_running
from agent.config.errors import ConfigError
from agent.config.load import default_config_path, load_config
from agent.errors import UserError
from agent.service.apply import MAX_CONFIG_BYTES
from agent.service.status_socket import SOCKET_NAME, socket_path

REPLY_MARGIN_S = 30.0
"""Beyond the apply and a rollback, how long the answer may take."""


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{value:g} s is outside 1..600")
    return value


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = actions.add_parser(
        "apply",
        help="have the running service take a new config, part by part, with rollback",
        description=(
            "Send a complete config file (never secrets: the secrets file stays as it is) to "
            "the running service. It validates the file in full, rebuilds only the parts that "
            "changed (an unchanged CAN bus keeps listening, an unchanged meter line keeps its "
            "poller, a changed uplink reconnects alone) and waits until every bus, meter and "
            "uplink that worked before works again; then it replaces its config file (the "
            "old one kept as evgw.toml.1 …), else it restores the previous config and says "
            "why. Keys only a restart applies (other [gateway] keys, [ledger], [metrics]) "
            "are refused. Exit 0 applied, 1 rolled back or refused (or no service running), "
            "2 usage or an unreadable file."
        ),
    )
    apply.add_argument("file", type=Path, help="the new config (a complete evgw.toml)")
    apply.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        help="how long the parts may take to work again (default: gateway.apply_timeout_s)",
    )
    apply.add_argument("--json", action="store_true", help="print the service's JSON answer")
    apply.add_argument(
        "--config",
        type=Path,
        help=f"the running service's config, to find its socket (default {default_config_path()})",
    )
    apply.add_argument(
        "--socket", type=Path, help=f"service socket (default <runtime_dir>/{SOCKET_NAME})"
    )
    apply.add_argument(
        "--requested-by",
        default="evgw config apply",
        metavar="WHO",
        help="who asks, as the config_applied / config_rolled_back event records it",
    )
    apply.set_defaults(func=_apply)


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found", 2) from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a TOML file", 2) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})", 2) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {len(data)} bytes, a config has at most {MAX_CONFIG_BYTES}", 2)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})", 2) from None


def _where(args: argparse.Namespace) -> tuple[Path, float]:
    """The service's socket, and how long the apply may take there."""
    try:
        running = load_config(args.config)
    except ConfigError:
        return Path(args.socket or socket_path("/run/evgw")), 60.0
    path = args.socket or socket_path(running.gateway.runtime_dir)
    return Path(path), running.gateway.apply_timeout_s


def _ask(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    path, apply_timeout_s = _where(args)
    wait_s = 2 * (args.timeout or apply_timeout_s) + REPLY_MARGIN_S
    reply = ask_running(path, "config", request, timeout_s=wait_s, unchanged="nothing was applied")
    if "outcome" not in reply:
        raise UserError(f"the service cannot apply configs ({reply.get('error')}): update it")
    return reply


def render(reply: dict[str, Any]) -> str:
    """The service's answer for a person."""
    outcome = reply["outcome"]
    if outcome == "refused":
        problems = reply.get("problems", [])
        return "refused, nothing changed:\n" + "".join(f"  - {p}\n" for p in problems)
    if outcome == "unchanged":
        return "unchanged: the service already runs this config\n"
    lines = [f"{c}" for c in reply.get("changes", [])]
    head = {"applied": "applied", "rolled_back": "rolled back"}.get(outcome, outcome)
    text = f"{head} (sha256 {reply['sha256'][:16]}…): {len(lines)} changes\n"
    text += "".join(f"  {line}\n" for line in lines)
    text += f"touches: {', '.join(reply.get('parts', [])) or 'no running part'}\n"
    if outcome == "rolled_back":
        text += f"restored the previous config: {reply.get('reason')}\n"
    elif reply.get("kept"):
        text += f"kept the replaced file as {reply['kept']}\n"
    return text


def _apply(args: argparse.Namespace) -> int:
    text = _read(args.file)
    request: dict[str, Any] = {"op": "apply", "toml": text, "requested_by": args.requested_by}
    if args.timeout is not None:
        request["timeout_s"] = args.timeout
    reply = _ask(args, request)
    if args.json:
        print(json.dumps(reply, indent=2, ensure_ascii=False))
    else:
        print(render(reply), end="")
    return 0 if reply.get("ok") else 1
