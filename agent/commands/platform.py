"""``evgw platform serve``: run the T/CEC 102 test receiver on loopback.

For technicians who want to try a gateway's T/CEC uplink without the real city platform:
point ``[uplink.cec] base_url`` at the printed URL and give both sides the same secrets.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agent.commands.cec import load_secrets_file
from agent.errors import UserError
from agent.uplink.cec.codec import CecSecrets


def _serve(args: argparse.Namespace) -> int:
    from sim.platform import PlatformServer, PlatformSettings

    from_file = load_secrets_file(Path(args.secrets)) if args.secrets else {}
    values: dict[str, str] = {}
    for name in ("data_secret", "data_iv", "sig_secret", "operator_secret"):
        value = getattr(args, name) or from_file.get(name)
        if not value:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"missing {name}: pass {flag} or --secrets FILE with cec.{name}", 2)
        values[name] = value
    if len(args.operator_id) != 9:
        raise UserError(f"--operator-id must be 9 characters, got {len(args.operator_id)}", 2)
    base_path = "/" + args.base_path.strip("/") + "/"
    try:
        secrets = CecSecrets(
            values["data_secret"],
            values["data_secret"] if args.key_as_iv else values["data_iv"],
            values["sig_secret"],
        )
        settings = PlatformSettings(
            operators={args.operator_id: values["operator_secret"]},
            secrets=secrets,
            db_path=Path(args.db),
            base_path=base_path,
            token_lifetime_s=args.token_lifetime,
            accept_lowercase_sig=not args.strict_sig,
            port=args.port,
            echo_seq=args.echo_seq,
        )
        server = PlatformServer(settings)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    except OSError as exc:
        raise UserError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; try --port 0"
        ) from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(
        f"T/CEC test receiver at {server.base_url} (storing in {args.db}); Ctrl-C stops",
        file=sys.stderr,
    )
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        stats = server.receiver.stats
        print(
            f"{stats.requests} requests, {stats.accepted} accepted, {stats.duplicates} duplicates",
            file=sys.stderr,
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "platform",
        help="run a T/CEC 102 test receiver (plays the city platform) on loopback",
        description="Simulated T/CEC 102 city platform for testing a gateway without the real one.",
    )
    sub = parser.add_subparsers(dest="platform_command", metavar="ACTION", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve query_token and the notifications on 127.0.0.1",
        description=(
            "Serve query_token and every notification the gateway pushes, with strict checks "
            "(4001 Sig, 4002 token, 4003 envelope/Data, 4004 business fields), storing what it "
            "accepts in SQLite with duplicate detection."
        ),
    )
    serve.add_argument("--port", type=int, default=8802, help="loopback port (default 8802)")
    serve.add_argument(
        "--base-path", default="/evcs/v1/", help="URL path before the interface name"
    )
    serve.add_argument("--db", default="platform.sqlite", help="SQLite file for accepted pushes")
    serve.add_argument(
        "--operator-id", required=True, metavar="ID", help="the gateway's OperatorID"
    )
    serve.add_argument("--operator-secret", metavar="S", help="OperatorSecret for query_token")
    serve.add_argument("--data-secret", metavar="S", help="DataSecret (16 characters)")
    serve.add_argument("--data-iv", metavar="S", help="DataSecretIV (16 characters)")
    serve.add_argument("--sig-secret", metavar="S", help="SigSecret")
    serve.add_argument(
        "--secrets", metavar="FILE", help="secrets TOML with a [cec] table; mode 0600"
    )
    serve.add_argument("--key-as-iv", action="store_true", help="use the DataSecret as IV")
    serve.add_argument(
        "--token-lifetime", type=float, default=7200.0, help="seconds (default 7200)"
    )
    serve.add_argument("--strict-sig", action="store_true", help="refuse lowercase Sig")
    serve.add_argument(
        "--echo-seq",
        action="store_true",
        help="echo TimeStamp/Seq in every reply Data (for gateways with reply_echoes_seq)",
    )
    serve.set_defaults(func=_serve)
