"""Where the ledger commands find their paths: explicit flags first, then the config.

This is the one place that reads ledger settings from ``evgw.toml``; every ``evgw keys …``
and ``evgw ledger …`` command goes through :func:`resolve`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.config.load import default_config_path, load_config
from agent.errors import UserError


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    ledger_path: Path | None
    key_path: Path | None
    gateway_id: str | None
    station_id: str | None
    size_cap_bytes: int | None
    source: str
    """Where the values came from, for messages: the config path or "command line"."""

    def need_ledger(self) -> Path:
        if self.ledger_path is None:
            raise UserError(
                f"no ledger path: pass --ledger PATH or a config file with --config "
                f"(none at {default_config_path()})",
                2,
            )
        return self.ledger_path

    def need_key(self) -> Path:
        if self.key_path is None:
            raise UserError(
                f"no key path: pass --key PATH or a config file with --config "
                f"(none at {default_config_path()})",
                2,
            )
        return self.key_path


def add_arguments(parser: argparse.ArgumentParser, *, ledger: bool, key: bool) -> None:
    """The flags every ledger/keys command shares."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"evgw config to take default paths from (default {default_config_path()})",
    )
    if ledger:
        parser.add_argument(
            "--ledger", type=Path, metavar="PATH", help="ledger file (default: ledger.path)"
        )
    if key:
        parser.add_argument(
            "--key", type=Path, metavar="PATH", help="gateway key file (default: ledger.key_path)"
        )


def resolve(args: argparse.Namespace) -> LedgerSettings:
    """Explicit flags win; the config (``--config`` or the default file) fills the rest."""
    ledger = getattr(args, "ledger", None)
    key = getattr(args, "key", None)
    gateway_id = getattr(args, "gateway_id", None)
    explicit: Path | None = getattr(args, "config", None)
    wants_config = explicit is not None or (
        default_config_path().is_file() and (ledger is None or key is None or gateway_id is None)
    )
    if not wants_config:
        return LedgerSettings(ledger, key, gateway_id, None, None, "command line")
    config = load_config(explicit)
    return LedgerSettings(
        ledger_path=ledger or Path(config.ledger.path),
        key_path=key or Path(config.ledger.key_path),
        gateway_id=gateway_id or config.gateway.gateway_id,
        station_id=config.station.station_id,
        size_cap_bytes=int(config.ledger.size_cap_mb * 1024 * 1024),
        source=str(explicit or default_config_path()),
    )
