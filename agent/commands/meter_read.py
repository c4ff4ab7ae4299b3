"""``evgw meter read``: read every quantity of one Modbus meter with a profile."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from agent.commands.meter_args import fmt, profile_of
from agent.commands.meter_dlt645 import run_read_dlt645
from agent.errors import UserError
from drivers.modbus.decode import ReadPlan, plan_reads
from drivers.modbus.link import (
    LineSpec,
    ModbusLine,
    ReadError,
    SerialLineSpec,
    TcpLineSpec,
    quiet_library_logging,
)
from drivers.modbus.profile_model import LinkSetting, Profile
from drivers.modbus.quantities import STANDARD


def unit_of(name: str, profile: Profile) -> str:
    info = STANDARD.get(name)
    if info is not None:
        return info.unit
    for q in profile.quantities:
        if q.name == name:
            return q.unit
    return ""


def line_spec(args: argparse.Namespace, link: LinkSetting, timeout_s: float) -> LineSpec:
    if args.tcp is not None:
        host, port = args.tcp
        return TcpLineSpec(host, port, timeout_s=timeout_s, rtu_framing=args.rtu_over_tcp)
    return SerialLineSpec(
        args.port, baud=link.baud, parity=link.parity, stopbits=link.stopbits, timeout_s=timeout_s
    )


def fail_line(err: ReadError) -> UserError:
    return UserError(err.message, 1)


# ----------------------------------------------------------------------- read


def run_read(args: argparse.Namespace) -> int:
    if args.protocol == "dlt645":
        return run_read_dlt645(args)
    if args.address is not None:
        raise UserError("--address is for --protocol dlt645; Modbus meters take --unit", 2)
    quiet_library_logging()
    profile = profile_of(args)
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
    spec = line_spec(args, link, args.timeout or 0.5)
    plan = plan_reads(resolved)
    results = asyncio.run(read_blocks(spec, unit, plan))
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
            out[q.name] = None if value is None else fmt(value)
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
        unit_text = unit_of(q.name, profile)
        if q.name in decoded.values:
            print(f"  {q.name:<{width}}  {fmt(decoded.values[q.name]):>14} {unit_text}")
        else:
            print(f"  {q.name:<{width}}  {'—':>14}   rejected: {decoded.rejected[q.name]}")
    for name, active in decoded.flags.items():
        print(f"  {name:<{width}}  {'yes' if active else 'no':>14}")
    return 0


async def read_blocks(spec: LineSpec, unit: int, plan: ReadPlan) -> list[list[int] | str]:
    line = ModbusLine(spec)
    try:
        err = await line.open()
        if err is not None:
            raise fail_line(err)
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
