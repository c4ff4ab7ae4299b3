"""``evgw meter scan``: find the Modbus meters on a line and the profile that fits each."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from agent.commands.meter_args import fmt, profile_set
from agent.commands.meter_dlt645 import run_scan_dlt645
from agent.commands.meter_read import fail_line, line_spec
from agent.errors import UserError
from drivers.modbus.link import ModbusLine, quiet_library_logging
from drivers.modbus.probe import ProfileFit, identify, unit_answers
from drivers.modbus.profile_model import LinkSetting, Profile

MODBUS_BAUDS = [9600, 2400, 4800, 19200]


def run_scan(args: argparse.Namespace) -> int:
    if args.protocol == "dlt645":
        return run_scan_dlt645(args)
    args.bauds = args.bauds or MODBUS_BAUDS
    args.parity = args.parity or ["N"]
    quiet_library_logging()
    profiles = profile_set(args)
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
        spec = line_spec(args, setting, timeout)
        print(f"scanning {spec.describe()}: {len(remaining)} unit(s)…", file=sys.stderr)
        line = ModbusLine(spec)
        try:
            err = await line.open()
            if err is not None:
                raise fail_line(err)
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
                    raise fail_line(why)
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
        "values": {k: fmt(v) for k, v in best.values.items()} if best else {},
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
