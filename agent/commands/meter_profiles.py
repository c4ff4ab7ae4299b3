"""``evgw meter profiles``: list the meter models with where each came from, show one, or
check a technician's profile folder."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.commands.meter_args import profile_set
from agent.commands.meter_dlt645 import run_dlt645_profiles
from agent.commands.meter_read import unit_of
from agent.errors import UserError
from drivers.modbus.profile import SHIPPED, ProfileOrigin
from drivers.modbus.profile_model import Profile


def origin_text(origin: ProfileOrigin) -> str:
    """``shipped``, or the file, with what it replaces."""
    if origin.replaces is None:
        return origin.source
    replaced = "the shipped one" if origin.replaces == SHIPPED else origin.replaces
    return f"{origin.source} (replaces {replaced})"


def run_profiles(args: argparse.Namespace) -> int:
    if args.protocol == "dlt645":
        return run_dlt645_profiles(args)
    profiles = profile_set(args)
    if args.name:
        try:
            prof = profiles[args.name]
        except KeyError as exc:
            raise UserError(str(exc.args[0]), 2) from None
        origin = profiles.origin(args.name)
        if args.json:
            out = _profile_json(prof, origin, detail=True)
            print(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            _show(prof, origin)
        return 0
    if args.json:
        rows = [_profile_json(profiles[n], profiles.origin(n), detail=False) for n in profiles]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'NAME':<10} {'VENDOR':<8} {'MODEL':<18} {'KIND':<4} {'LINK':<10} FC  OPTIONS  SOURCE")
    for n in profiles:
        p = profiles[n]
        fc = f"{p.function}" + (f"/{p.alt_function}" if p.alt_function else "")
        opts = ", ".join(o.name for o in p.options) or "-"
        print(
            f"{p.name:<10} {p.vendor:<8} {p.model:<18} {p.kind:<4} {p.link!s:<10} {fc:<3} "
            f"{opts}  {origin_text(profiles.origin(n))}"
        )
    print("DL/T 645 profiles: evgw meter profiles --protocol dlt645", file=sys.stderr)
    return 0


def _show(prof: Profile, origin: ProfileOrigin) -> None:
    print(f"{prof.name}: {prof.vendor} {prof.model} ({prof.kind}) — {prof.description}")
    print(f"  file: {prof.path}")
    print(f"  source: {origin_text(origin)}")
    alts = ", ".join(str(a) for a in prof.link_alternatives) or "none"
    print(f"  link: {prof.link}, unit id {prof.unit_id}; alternatives: {alts}")
    alt_fc = f" (alternative FC{prof.alt_function:02d})" if prof.alt_function else ""
    print(f"  function: FC{prof.function:02d}{alt_fc}")
    for q in prof.quantities:
        extra = f" dp@0x{q.exponent.address:04X}{q.exponent.offset:+d}" if q.exponent else ""
        print(
            f"  {q.name:<30} 0x{q.address:04X} FC{q.function:02d} {q.type} "
            f"{q.word_order}/{q.byte_order} ×{q.scale:g}{extra} → "
            f"{unit_of(q.name, prof) or '(no unit)'}"
        )
    for fl in prof.flags:
        bit = f" bit {fl.bit}" if fl.bit is not None else " non-zero"
        print(f"  flag {fl.name:<25} 0x{fl.address:04X}{bit}{' ALARM' if fl.alarm else ''}")
    for r in prof.identity:
        print(
            f"  identity {r.name:<21} 0x{r.address:04X} FC{r.function:02d} {r.type} {r.word_order}"
        )
    for opt in prof.options:
        print(f"  option {opt.name}: {', '.join(opt.choices)} (default {opt.default})")


def _profile_json(p: Profile, origin: ProfileOrigin, detail: bool) -> dict[str, Any]:
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
        "source": origin.source,
        "replaces": origin.replaces,
    }
    if detail:
        out["quantities"] = [q.name for q in p.quantities]
        out["flags"] = [f.name for f in p.flags]
        out["identity"] = [r.name for r in p.identity]
    return out
