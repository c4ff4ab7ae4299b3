"""``evgw meter``: commissioning tools for field technicians.

- ``evgw meter read``: read every quantity of one meter with a profile;
- ``evgw meter scan``: find which units answer on a line, at which link settings, and which
  profile (function code, disputed registers) fits each;
- ``evgw meter profiles``: list the meter models (or check a technician's profile folder).

Only reads are sent to meters; nothing here writes to a meter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import UserError
from drivers.modbus.decode import plan_reads
from drivers.modbus.link import (
    LineSpec,
    ModbusLine,
    ReadError,
    SerialLineSpec,
    TcpLineSpec,
    quiet_library_logging,
)
from drivers.modbus.probe import ProfileFit, identify, unit_answers
from drivers.modbus.profile import (
    BAUDS,
    LinkSetting,
    Profile,
    ProfileError,
    ProfileSet,
    load_profile,
    load_profiles,
)
from drivers.modbus.quantities import STANDARD

EPILOG = "Profiles and the commissioning procedure: docs/METERS.md."


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "meter",
        help="read, scan and list Modbus energy meters (commissioning)",
        description="Commissioning tools for Modbus energy meters. Only reads are sent.",
        epilog=EPILOG,
    )
    cmds = parser.add_subparsers(dest="meter_command", metavar="ACTION", required=True)

    read = cmds.add_parser(
        "read",
        help="read every quantity of one meter",
        description=(
            "Read every quantity a profile defines from one meter and print it (with --json: "
            "one object keyed by the standard quantity names; rejected values are null)."
        ),
        epilog="example: evgw meter read --port /dev/ttyUSB0 --profile dtsu666 --unit 1",
    )
    _line_args(read, serial_single=True)
    read.add_argument(
        "--profile",
        required=True,
        help="profile name (see `evgw meter profiles`) or a profile .toml file",
    )
    read.add_argument("--unit", type=_unit, help="Modbus unit id 1-247 (default: the profile's)")
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
        type=_option,
        help="a disputed-register choice found by the scan",
    )
    read.add_argument("--json", action="store_true", help="print one JSON object")
    read.set_defaults(func=_read)

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
    _line_args(scan, serial_single=False)
    scan.add_argument(
        "--units",
        type=_units,
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
    scan.set_defaults(func=_scan)

    prof = cmds.add_parser(
        "profiles",
        help="list the meter models (or check a profile folder)",
        description=(
            "List the meter profiles; with NAME show its quantities. With --profiles DIR "
            "validate a folder of profiles (every problem is reported, exit 2)."
        ),
    )
    prof.add_argument("name", nargs="?", help="show one profile in detail")
    prof.add_argument(
        "--profiles",
        type=Path,
        metavar="DIR|FILE",
        help="profile folder or file (default: the built-in profiles)",
    )
    prof.add_argument("--json", action="store_true", help="print JSON")
    prof.set_defaults(func=_profiles)


# ----------------------------------------------------------------------- arguments


def _unit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a unit id: {text!r} (expected 1-247)") from None
    if not 1 <= value <= 247:
        raise argparse.ArgumentTypeError(f"unit id {value} out of range 1-247")
    return value


def _units(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        first = _unit(lo)
        last = _unit(hi) if sep else first
        if last < first:
            raise argparse.ArgumentTypeError(f"empty unit range {part!r}")
        out.extend(u for u in range(first, last + 1) if u not in out)
    return out


def _int_list(allowed: Sequence[int], what: str):
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


def _parity_list(text: str) -> list[str]:
    out = [p.strip().upper() for p in text.split(",")]
    for p in out:
        if p not in ("N", "E", "O"):
            raise argparse.ArgumentTypeError(f"parity {p!r} not one of N, E, O")
    return out


def _option(text: str) -> tuple[str, str]:
    name, sep, choice = text.partition("=")
    if not sep or not name or not choice:
        raise argparse.ArgumentTypeError(f"expected NAME=CHOICE, found {text!r}")
    return name, choice


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def _line_args(p: argparse.ArgumentParser, serial_single: bool) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial device of the RS-485 adapter")
    where.add_argument(
        "--tcp", type=_hostport, metavar="HOST:PORT", help="Modbus TCP meter or gateway"
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
            type=_int_list(BAUDS, "baud rate"),
            default=[9600, 2400, 4800, 19200],
            metavar="LIST",
            help="baud rates to try, in order (default 9600,2400,4800,19200)",
        )
        p.add_argument(
            "--parity",
            type=_parity_list,
            default=["N"],
            metavar="LIST",
            help="parities to try, e.g. N,E (default N)",
        )
        p.add_argument(
            "--stopbits",
            type=_int_list((1, 2), "stop bits"),
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
    p.add_argument(
        "--profiles",
        type=Path,
        metavar="DIR",
        help="profile folder (default: the built-in profiles)",
    )


# ----------------------------------------------------------------------- helpers


def _load(args: argparse.Namespace) -> ProfileSet:
    try:
        return load_profiles(args.profiles)
    except ProfileError as exc:
        raise UserError(str(exc), 2) from None


def _profile(args: argparse.Namespace) -> Profile:
    name = args.profile
    if name.endswith(".toml") or "/" in name:
        try:
            return load_profile(name)
        except ProfileError as exc:
            raise UserError(str(exc), 2) from None
    try:
        return _load(args)[name]
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; `evgw meter profiles` lists them", 2) from None


def _fmt(value: float) -> float:
    return round(value, 4) + 0.0  # + 0.0 turns -0.0 into 0.0


def _unit_of(name: str, profile: Profile) -> str:
    info = STANDARD.get(name)
    if info is not None:
        return info.unit
    for q in profile.quantities:
        if q.name == name:
            return q.unit
    return ""


def _line_spec(args: argparse.Namespace, link: LinkSetting, timeout_s: float) -> LineSpec:
    if args.tcp is not None:
        host, port = args.tcp
        return TcpLineSpec(host, port, timeout_s=timeout_s, rtu_framing=args.rtu_over_tcp)
    return SerialLineSpec(
        args.port, baud=link.baud, parity=link.parity, stopbits=link.stopbits, timeout_s=timeout_s
    )


def _fail_line(err: ReadError) -> UserError:
    return UserError(err.message, 1)


# ----------------------------------------------------------------------- read


def _read(args: argparse.Namespace) -> int:
    quiet_library_logging()
    profile = _profile(args)
    try:
        resolved = profile.resolve(args.function, dict(args.option))
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    link = (
        LinkSetting(
            args.baud or profile.link.baud,
            args.parity or profile.link.parity,
            args.stopbits or profile.link.stopbits,
        )
        if args.tcp is None
        else profile.link
    )
    unit = args.unit or profile.unit_id
    spec = _line_spec(args, link, args.timeout or 0.5)
    plan = plan_reads(resolved)
    results = asyncio.run(_read_blocks(spec, unit, plan))
    decoded = plan.decode(results)
    if not decoded.values and not decoded.flags:
        reasons = sorted(set(decoded.rejected.values()))
        hint = ""
        if any("illegal function" in r for r in reasons) and profile.alt_function:
            hint = f"; try --function {profile.alt_function}"
        raise UserError(
            f"unit {unit} answered but no value could be read ({'; '.join(reasons)}): "
            f"wrong profile or function code{hint}, or run `evgw meter scan`"
        )
    where = spec.describe()
    if args.json:
        out: dict[str, Any] = {}
        for q in resolved.quantities:
            value = decoded.values.get(q.name)
            out[q.name] = None if value is None else _fmt(value)
        out.update(decoded.flags)
        print(json.dumps(out, ensure_ascii=False))
        for name, reason in decoded.rejected.items():
            print(f"evgw: {name}: {reason}", file=sys.stderr)
        return 0
    print(
        f"{profile.vendor} {profile.model} ({profile.name}), unit {unit} on {where}, "
        f"FC{resolved.function:02d}"
    )
    for opt in profile.options:
        choice = resolved.options[opt.name]
        note = (
            ""
            if opt.name in dict(args.option)
            else " (profile default, not confirmed: run `evgw meter scan` on this meter)"
        )
        print(f"  option {opt.name} = {choice}{note}")
    width = max(len(q.name) for q in resolved.quantities)
    for q in resolved.quantities:
        unit_text = _unit_of(q.name, profile)
        if q.name in decoded.values:
            print(f"  {q.name:<{width}}  {_fmt(decoded.values[q.name]):>14} {unit_text}")
        else:
            print(f"  {q.name:<{width}}  {'—':>14}   rejected: {decoded.rejected[q.name]}")
    for name, active in decoded.flags.items():
        print(f"  {name:<{width}}  {'yes' if active else 'no':>14}")
    return 0


async def _read_blocks(spec: LineSpec, unit: int, plan) -> list[list[int] | str]:
    line = ModbusLine(spec)
    try:
        err = await line.open()
        if err is not None:
            raise _fail_line(err)
        results: list[list[int] | str] = []
        for block in plan.blocks:
            reply = await line.read(unit, block.function, block.address, block.count)
            if isinstance(reply, ReadError):
                if not reply.answered:
                    raise UserError(
                        f"{reply.message} (on {spec.describe()}; `evgw meter scan` tries other "
                        "settings)"
                        if reply.kind in ("timeout", "garbled")
                        else reply.message
                    )
                results.append(reply.short)
            else:
                results.append(reply)
        return results
    finally:
        line.close()


# ----------------------------------------------------------------------- scan


def _scan(args: argparse.Namespace) -> int:
    quiet_library_logging()
    profiles = _load(args)
    names = args.profile_names or list(profiles)
    try:
        chosen = [profiles[n] for n in names]
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; `evgw meter profiles` lists them", 2) from None
    findings = asyncio.run(_scan_line(args, chosen))
    if not findings:
        where = (
            f"{args.tcp[0]}:{args.tcp[1]}"
            if args.tcp is not None
            else f"{args.port} at {', '.join(map(str, args.bauds))} baud"
        )
        raise UserError(
            f"no meter answered on {where} (units {_range_text(args.units)}): check the A/B "
            "wiring (swap them), power and termination, and try --bauds/--parity/--stopbits"
        )
    if args.json:
        print(json.dumps([_finding_json(f) for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            print(_finding_text(args, f))
    return 0


def _range_text(units: list[int]) -> str:
    return (
        f"{units[0]}-{units[-1]}"
        if units == list(range(units[0], units[-1] + 1))
        else ",".join(map(str, units))
    )


async def _scan_line(args: argparse.Namespace, profiles: list[Profile]) -> list[dict]:
    timeout = args.timeout or 0.3
    if args.tcp is not None:
        settings = [LinkSetting(9600, "N", 1)]  # irrelevant over TCP
    else:
        settings = [
            LinkSetting(b, p, s) for b in args.bauds for p in args.parity for s in args.stopbits
        ]
    remaining = list(args.units)
    findings: list[dict] = []
    for setting in settings:
        if not remaining:
            break
        spec = _line_spec(args, setting, timeout)
        print(f"scanning {spec.describe()}: {len(remaining)} unit(s)…", file=sys.stderr)
        line = ModbusLine(spec)
        try:
            err = await line.open()
            if err is not None:
                raise _fail_line(err)
            answered = []
            garbled = 0
            for unit in remaining:
                why = await unit_answers(line, unit)
                if why is None:
                    answered.append(unit)
                    print(f"  unit {unit} answers", file=sys.stderr)
                elif why.kind == "garbled":
                    garbled += 1
                elif why.line_down:
                    raise _fail_line(why)
            if garbled:
                print(
                    f"  {garbled} garbled repl(ies) at {setting}: a device may be there at "
                    "another baud/parity",
                    file=sys.stderr,
                )
            for unit in answered:
                fits = await identify(line, unit, profiles, args.display_kwh)
                findings.append({"unit": unit, "setting": setting, "fits": fits})
            remaining = [u for u in remaining if u not in answered]
        finally:
            line.close()
    return findings


def _finding_json(f: dict) -> dict:
    s: LinkSetting = f["setting"]
    fits: list[ProfileFit] = f["fits"]
    best = fits[0] if fits else None
    return {
        "unit": f["unit"],
        "baud": s.baud,
        "parity": s.parity,
        "stopbits": s.stopbits,
        "profile": best.profile if best else None,
        "score": round(best.score, 3) if best else 0.0,
        "function": best.function if best else None,
        "options": best.options if best else {},
        "undecided": [p.option for p in best.picks if not p.decided] if best else [],
        "values": {k: _fmt(v) for k, v in best.values.items()} if best else {},
        "candidates": [{"profile": x.profile, "score": round(x.score, 3)} for x in fits],
    }


def _finding_text(args: argparse.Namespace, f: dict) -> str:
    s: LinkSetting = f["setting"]
    fits: list[ProfileFit] = f["fits"]
    where = "" if args.tcp is not None else f" at {s}"
    lines = [f"unit {f['unit']}{where}:"]
    if not fits:
        lines.append(
            "  answers, but no profile reads plausible values: a model without a "
            "profile? (docs/METERS.md: adding a model)"
        )
        return "\n".join(lines)
    best = fits[0]
    lines.append(f"  best fit: {best.profile} ({best.plausible}/{best.total} quantities plausible)")
    lines.append(f"  function code: FC{best.function:02d} ({best.function_evidence})")
    for pick in best.picks:
        state = "decided" if pick.decided else "UNDECIDED, default kept"
        lines.append(f"  {pick.option} = {pick.choice} ({state}): {pick.evidence}")
    for name, problem in sorted(best.problems.items()):
        lines.append(f"  implausible {name}: {problem}")
    others = [f"{x.profile} ({x.plausible}/{x.total})" for x in fits[1:]]
    if others:
        lines.append(f"  also answers as: {', '.join(others)}")
    lines.append("  config:")
    lines.append("    [[meters]]")
    lines.append(f'    meter_id = "meter-{f["unit"]}"')
    lines.append(f'    profile = "{best.profile}"')
    if args.tcp is not None:
        lines.append(f'    transport = "{"rtu_over_tcp" if args.rtu_over_tcp else "tcp"}"')
        lines.append(f'    host = "{args.tcp[0]}"')
        lines.append(f"    tcp_port = {args.tcp[1]}")
    else:
        lines.append('    transport = "rtu"')
        lines.append(f'    port = "{args.port}"')
        lines.append(f"    baud = {s.baud}")
        lines.append(f'    parity = "{s.parity}"')
        lines.append(f"    stop_bits = {s.stopbits}")
    lines.append(f"    unit_id = {f['unit']}")
    lines.append(f"    function = {best.function}")
    if best.options:
        pairs = ", ".join(f'{k} = "{v}"' for k, v in best.options.items())
        lines.append(f"    options = {{ {pairs} }}")
    return "\n".join(lines)


# ----------------------------------------------------------------------- profiles


def _profiles(args: argparse.Namespace) -> int:
    profiles = _load(args)
    if args.name:
        try:
            prof = profiles[args.name]
        except KeyError as exc:
            raise UserError(str(exc.args[0]), 2) from None
        if args.json:
            print(json.dumps(_profile_json(prof, detail=True), ensure_ascii=False, indent=2))
            return 0
        print(f"{prof.name}: {prof.vendor} {prof.model} ({prof.kind}) — {prof.description}")
        print(f"  file: {prof.path}")
        alts = ", ".join(str(a) for a in prof.link_alternatives) or "none"
        print(f"  link: {prof.link}, unit id {prof.unit_id}; alternatives: {alts}")
        alt_fc = f" (alternative FC{prof.alt_function:02d})" if prof.alt_function else ""
        print(f"  function: FC{prof.function:02d}{alt_fc}")
        for q in prof.quantities:
            extra = f" dp@0x{q.exponent.address:04X}{q.exponent.offset:+d}" if q.exponent else ""
            print(
                f"  {q.name:<30} 0x{q.address:04X} FC{q.function:02d} {q.type} "
                f"{q.word_order}/{q.byte_order} ×{q.scale:g}{extra} → "
                f"{_unit_of(q.name, prof) or '(no unit)'}"
            )
        for fl in prof.flags:
            bit = f" bit {fl.bit}" if fl.bit is not None else " non-zero"
            print(f"  flag {fl.name:<25} 0x{fl.address:04X}{bit}{' ALARM' if fl.alarm else ''}")
        for opt in prof.options:
            print(f"  option {opt.name}: {', '.join(opt.choices)} (default {opt.default})")
        return 0
    if args.json:
        print(
            json.dumps(
                [_profile_json(profiles[n], detail=False) for n in profiles],
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    print(f"{'NAME':<10} {'VENDOR':<8} {'MODEL':<18} {'KIND':<4} {'LINK':<10} FC  OPTIONS")
    for n in profiles:
        p = profiles[n]
        fc = f"{p.function}" + (f"/{p.alt_function}" if p.alt_function else "")
        opts = ", ".join(o.name for o in p.options) or "-"
        print(f"{p.name:<10} {p.vendor:<8} {p.model:<18} {p.kind:<4} {p.link!s:<10} {fc:<3} {opts}")
    return 0


def _profile_json(p: Profile, detail: bool) -> dict:
    out: dict[str, Any] = {
        "name": p.name,
        "vendor": p.vendor,
        "model": p.model,
        "kind": p.kind,
        "baud": p.link.baud,
        "parity": p.link.parity,
        "stopbits": p.link.stopbits,
        "unit_id": p.unit_id,
        "function": p.function,
        "alt_function": p.alt_function,
        "options": {o.name: {"default": o.default, "choices": list(o.choices)} for o in p.options},
    }
    if detail:
        out["quantities"] = [q.name for q in p.quantities]
        out["flags"] = [f.name for f in p.flags]
    return out
