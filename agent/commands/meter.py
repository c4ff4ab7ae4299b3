"""``evgw meter``: commissioning tools for field technicians.

- ``evgw meter read``: read every quantity of one meter with a profile;
- ``evgw meter scan``: find which units answer on a line, at which link settings, and which
  profile (function code, disputed registers) fits each;
- ``evgw meter profiles``: list the meter models and where each came from (or check a
  technician's profile folder).

Only reads are sent to meters; nothing here writes to a meter. The actions live in
``meter_read``, ``meter_scan`` and ``meter_profiles`` beside this module.
"""

from __future__ import annotations

import argparse

from agent.commands.meter_args import config_args, line_args, option_pair, unit_id, unit_ids
from agent.commands.meter_profiles import run_profiles
from agent.commands.meter_read import run_read
from agent.commands.meter_scan import run_scan

EPILOG = "Profiles and the commissioning procedure: docs/METERS.md."


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "meter",
        help="read, scan and list energy meters, Modbus or DL/T 645 (commissioning)",
        description="Commissioning tools for energy meters (Modbus, DL/T 645-2007). "
        "Only reads are sent.",
        epilog=EPILOG,
    )
    cmds = parser.add_subparsers(dest="meter_command", metavar="ACTION", required=True)
    _add_read(cmds)
    _add_scan(cmds)
    _add_profiles(cmds)


def _add_read(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    read = cmds.add_parser(
        "read",
        help="read every quantity of one meter",
        description=(
            "Read every quantity a profile defines from one meter and print it (with --json: "
            "one object keyed by the standard quantity names; rejected values are null)."
        ),
        epilog="examples: evgw meter read --port /dev/ttyUSB0 --profile dtsu666 --unit 1\n"
        "          evgw meter read --protocol dlt645 --port /dev/ttyUSB0 "
        "--address 123456789012 --profile dlt645-2007 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    line_args(read, serial_single=True)
    read.add_argument(
        "--profile",
        required=True,
        help="profile name (see `evgw meter profiles`) or a profile .toml file",
    )
    read.add_argument("--unit", type=unit_id, help="Modbus unit id 1-247 (default: the profile's)")
    read.add_argument(
        "--address",
        metavar="ADDR",
        help="DL/T 645 meter address, 12 digits (default: the wildcard, for a lone meter)",
    )
    read.add_argument(
        "--function",
        type=int,
        choices=(3, 4),
        help="function code found by `evgw meter scan` (default: the profile's)",
    )
    read.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=CHOICE",
        type=option_pair,
        help="a disputed-register choice found by the scan",
    )
    read.add_argument("--json", action="store_true", help="print one JSON object")
    read.set_defaults(func=run_read)


def _add_scan(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = cmds.add_parser(
        "scan",
        help="find the meters on a line and the profile that fits each",
        description=(
            "Try every unit id at each link setting (first match wins per unit), then probe "
            "each profile on every unit that answered: function code, disputed registers, "
            "plausibility of every value. A full scan of 247 units takes about "
            "units × settings × timeout seconds."
        ),
        epilog="example: evgw meter scan --port /dev/ttyUSB0 --units 1-10 --bauds 9600,2400",
    )
    line_args(scan, serial_single=False)
    scan.add_argument(
        "--units",
        type=unit_ids,
        default=list(range(1, 248)),
        metavar="LIST",
        help="unit ids, e.g. 1-247 or 1,2,10-12 (default 1-247)",
    )
    scan.add_argument(
        "--profile",
        action="append",
        dest="profile_names",
        metavar="NAME",
        help="only try these profiles (repeatable; default: all)",
    )
    scan.add_argument(
        "--display-kwh",
        type=float,
        metavar="KWH",
        help="the import energy shown on the meter's display, to settle "
        "disputed energy registers and units",
    )
    scan.add_argument("--json", action="store_true", help="print the findings as JSON")
    scan.set_defaults(func=run_scan)


def _add_profiles(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prof = cmds.add_parser(
        "profiles",
        help="list the meter models and where each came from (or check a profile folder)",
        description=(
            "List the meter profiles (shipped, or from a [meter_profiles] folder of the "
            "config, which replaces a shipped profile of the same name); with NAME show its "
            "quantities. With --profiles DIR validate a folder of profiles (every problem is "
            "reported, exit 2)."
        ),
    )
    prof.add_argument("name", nargs="?", help="show one profile in detail")
    prof.add_argument(
        "--protocol",
        choices=("modbus", "dlt645"),
        default="modbus",
        help="which protocol's profiles (default modbus)",
    )
    config_args(prof)
    prof.add_argument("--json", action="store_true", help="print JSON")
    prof.set_defaults(func=run_profiles)
