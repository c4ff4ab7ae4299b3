"""Arguments of ``evgw meter …``: value types, the line options, and the profiles they name.

Profiles come from ``--profiles DIR|FILE`` alone when given; otherwise the shipped ones
overlaid with the ``[meter_profiles] dirs`` of the config (``--config``, else
``$EVGW_CONFIG`` or ``/etc/evgw/evgw.toml`` when that file exists), as the service reads them.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from agent.config.load import default_config_path
from agent.config.schema import MeterProfilesSection
from agent.errors import UserError
from drivers.modbus.profile import ProfileSet, load_profile, load_profile_dirs, load_profiles
from drivers.modbus.profile_check import ProfileError
from drivers.modbus.profile_model import BAUDS, Profile


def fmt(value: float) -> float:
    """A value as printed: 4 decimals, never ``-0.0``."""
    return round(value, 4) + 0.0  # + 0.0 turns -0.0 into 0.0


def unit_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a unit id: {text!r} (expected 1-247)") from None
    if not 1 <= value <= 247:
        raise argparse.ArgumentTypeError(f"unit id {value} out of range 1-247")
    return value


def unit_ids(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        first = unit_id(lo)
        last = unit_id(hi) if sep else first
        if last < first:
            raise argparse.ArgumentTypeError(f"empty unit range {part!r}")
        out.extend(u for u in range(first, last + 1) if u not in out)
    return out


def int_list(allowed: Sequence[int], what: str) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        out = []
        for part in text.split(","):
            try:
                value = int(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a {what}: {part!r}") from None
            if value not in allowed:
                raise argparse.ArgumentTypeError(
                    f"{what} {value} not one of {', '.join(map(str, allowed))}"
                )
            out.append(value)
        return out

    return parse


def parity_list(text: str) -> list[str]:
    out = [p.strip().upper() for p in text.split(",")]
    for p in out:
        if p not in ("N", "E", "O"):
            raise argparse.ArgumentTypeError(f"parity {p!r} not one of N, E, O")
    return out


def option_pair(text: str) -> tuple[str, str]:
    name, sep, choice = text.partition("=")
    if not sep or not name or not choice:
        raise argparse.ArgumentTypeError(f"expected NAME=CHOICE, found {text!r}")
    return name, choice


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def line_args(p: argparse.ArgumentParser, serial_single: bool) -> None:
    p.add_argument(
        "--protocol",
        choices=("modbus", "dlt645"),
        default="modbus",
        help="meter protocol (default modbus; dlt645: DL/T 645-2007 on --port)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial device of the RS-485 adapter")
    where.add_argument(
        "--tcp", type=host_port, metavar="HOST:PORT", help="Modbus TCP meter or gateway"
    )
    p.add_argument(
        "--rtu-over-tcp",
        action="store_true",
        help="with --tcp: RTU frames over TCP (transparent serial gateway)",
    )
    if serial_single:
        p.add_argument(
            "--baud",
            type=int,
            choices=BAUDS,
            metavar="N",
            help="baud rate (default: the profile's)",
        )
        p.add_argument("--parity", choices=("N", "E", "O"), help="parity (default: the profile's)")
        p.add_argument(
            "--stopbits", type=int, choices=(1, 2), help="stop bits (default: profile's)"
        )
    else:
        p.add_argument(
            "--bauds",
            type=int_list(BAUDS, "baud rate"),
            metavar="LIST",
            help="baud rates to try, in order (default 9600,2400,4800,19200; "
            "DL/T 645: 2400,9600,1200,4800)",
        )
        p.add_argument(
            "--parity",
            type=parity_list,
            metavar="LIST",
            help="parities to try, e.g. N,E (default N; DL/T 645: E)",
        )
        p.add_argument(
            "--stopbits",
            type=int_list((1, 2), "stop bits"),
            default=[1],
            metavar="LIST",
            help="stop bits to try, e.g. 1,2 (default 1)",
        )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="reply timeout in seconds (default 0.5 for read, 0.3 for scan)",
    )
    config_args(p)


def config_args(p: argparse.ArgumentParser) -> None:
    """``--profiles`` and ``--config``: where the meter profiles come from."""
    p.add_argument(
        "--profiles",
        type=Path,
        metavar="DIR|FILE",
        help="only the profiles of this folder or file (default: the shipped profiles and "
        "the config's [meter_profiles] folders)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="take [meter_profiles] dirs from this config "
        f"(default: $EVGW_CONFIG or {default_config_path()} when it exists)",
    )


def profile_dirs(config: Path | None) -> list[str]:
    """The ``[meter_profiles] dirs`` of a config (only that table is read, so a config that
    is still being written does not stop commissioning); the default when there is none."""
    path = config or default_config_path()
    if config is None and not path.exists():
        return MeterProfilesSection().dirs
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        section = msgspec.convert(data.get("meter_profiles", {}), MeterProfilesSection)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the config {path}: {exc}", 2) from None
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise UserError(
            f"{path}: [meter_profiles]: {exc} (`evgw config check` says more)", 2
        ) from None
    return section.dirs


def profile_set(args: argparse.Namespace) -> ProfileSet[Profile]:
    try:
        if args.profiles is not None:
            return load_profiles(args.profiles)
        return load_profile_dirs(profile_dirs(args.config))
    except ProfileError as exc:
        raise UserError(str(exc), 2) from None


def profile_of(args: argparse.Namespace) -> Profile:
    name = args.profile
    if name.endswith(".toml") or "/" in name:
        try:
            return load_profile(name)
        except ProfileError as exc:
            raise UserError(str(exc), 2) from None
    try:
        return profile_set(args)[name]
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; `evgw meter profiles` lists them", 2) from None
