"""``evgw uplink parked`` / ``evgw uplink resend``: parked records, released by the service.

Both ask the running service over its status socket; the uplink applies a resend itself
(release from parking, send in seq order) and records the request and its outcome as
``event`` records (``uplink_resend_requested``, ``uplink_resend_done``).
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
from agent.service.status_socket import SOCKET_NAME, socket_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "uplink",
        help="list parked records and send them again (through the running service)",
        description=(
            "Records a platform refused for good (T/CEC 4004, …) are parked: later records go "
            "on without them. List them, and once the cause is fixed, have the running "
            "service send them again."
        ),
    )
    actions = parser.add_subparsers(dest="uplink_command", metavar="ACTION", required=True)
    parked = actions.add_parser("parked", help="list the parked records with the reasons")
    parked.add_argument("--uplink", metavar="NAME", help="only this uplink (e.g. cec)")
    parked.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parked.set_defaults(func=_parked)
    resend = actions.add_parser(
        "resend",
        help="send records again: one seq, a range, or everything parked",
        description="Release the records from parking and have the uplink send them again.",
    )
    resend.add_argument("--uplink", metavar="NAME", required=True, help="e.g. cec")
    which = resend.add_mutually_exclusive_group(required=True)
    which.add_argument("--seq", type=int, metavar="N", help="the record with this seq")
    which.add_argument("--from", dest="from_seq", type=int, metavar="N", help="from this seq")
    which.add_argument("--parked", action="store_true", help="every parked record")
    resend.add_argument("--to", dest="to_seq", type=int, metavar="M", help="with --from")
    resend.set_defaults(func=_resend)
    for action in (parked, resend):
        action.add_argument(
            "--config", type=Path, help=f"config file (default {default_config_path()})"
        )
        action.add_argument(
            "--socket",
            type=Path,
            help=f"service socket (default <runtime_dir>/{SOCKET_NAME})",
        )


def _ask(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    path = args.socket
    if path is None:
        try:
            path = socket_path(load_config(args.config).gateway.runtime_dir)
        except ConfigError:
            path = socket_path("/run/evgw")
    reply = ask_running(Path(path), "uplink", request)
    if "error" in reply and "ok" not in reply:
        raise UserError(f"the service does not know uplink requests ({reply['error']}): update it")
    if not reply.get("ok"):
        raise UserError(str(reply.get("error", "refused")), 2)
    return reply


def _parked(args: argparse.Namespace) -> int:
    reply = _ask(args, {"op": "parked", "uplink": args.uplink})
    if args.json:
        print(json.dumps(reply, indent=2, ensure_ascii=False))
        return 0
    for item in reply["uplinks"]:
        print(f"{item['uplink']}: {item['count']} parked")
        for row in item["parked"]:
            print(f"  seq {row['seq']}  {row['kind'] or '?'}  {row['ts']}  {row['reason']}")
    if not reply["uplinks"]:
        print("no running uplink parks records")
    return 0


def _resend(args: argparse.Namespace) -> int:
    if args.to_seq is not None and args.from_seq is None:
        raise UserError("--to needs --from", 2)
    request: dict[str, Any] = {"op": "resend", "uplink": args.uplink, "requested_by": "evgw uplink"}
    if args.parked:
        request["parked"] = True
    elif args.seq is not None:
        request["seq"] = args.seq
    else:
        request["from_seq"] = args.from_seq
        if args.to_seq is not None:
            request["to_seq"] = args.to_seq
    reply = _ask(args, request)
    if not reply["queued"]:
        print(f"{args.uplink}: nothing to send")
        return 0
    print(
        f"{args.uplink}: {reply['queued']} records queued (seq {reply['first_seq']}.."
        f"{reply['last_seq']}), {reply['released_from_parking']} released from parking; "
        "the outcome is recorded as an uplink_resend_done event"
    )
    return 0
