"""``evgw demo``: the gateway on an embedded simulated station (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from agent.ledger import GatewayKey
from agent.logs import setup_logging
from agent.resources import read_resource


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the gateway on an embedded simulated station",
        description=(
            "Run the gateway service on the simulated station of config/demo.toml, with its "
            "state (ledger, key) in a temporary folder removed at exit unless --state-dir is given."
        ),
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="stop after S seconds (default 30; 0 = until Ctrl-C)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="keep the ledger and key in DIR for inspection"
    )
    parser.set_defaults(func=_demo)


def write_demo_config(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    text = read_resource("demo.toml").replace("@STATE_DIR@", str(state_dir.resolve()))
    path = state_dir / "evgw.toml"
    path.write_text(text, "utf-8")
    key = state_dir / "gateway.key"
    if not key.exists():
        GatewayKey.generate().save(key)
    return path


async def _run_for(config_path: Path, duration_s: float) -> int:
    from agent.service import Service

    service = Service(config_path)
    task = asyncio.create_task(service.run())
    if duration_s > 0:
        done, _ = await asyncio.wait({task}, timeout=duration_s)
        if not done:
            signal.raise_signal(signal.SIGTERM)
    return await task


def _demo(args: argparse.Namespace) -> int:
    setup_logging("info")
    keep = args.state_dir is not None
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="evgw-demo-"))
    try:
        config_path = write_demo_config(state_dir)
        print(f"evgw demo: station of {config_path}; state in {state_dir}", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_run_for(config_path, args.duration))
        return 0
    finally:
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
