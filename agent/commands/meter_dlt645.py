"""``evgw meter read|scan --protocol dlt645``: DL/T 645-2007 meters on an RS-485 line.

``read`` polls one meter with a profile (by ``--address``, or the wildcard for a lone meter)
and prints the same JSON shape and quantity names as a Modbus read; the text output adds
the identity, the event counters and the clock drift. ``scan`` sends the wildcard
read-address request at each baud rate and parity: one answer is the lone meter on the
line, several (or a garbled answer) a collision; then each profile is tried on the meter
and a ``[[meters]]`` block printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agent.commands.meter_args import fmt, profile_dirs
from agent.errors import UserError
from drivers.dlt645.frame import WILDCARD, AddressError, check_address
from drivers.dlt645.link import Dlt645Line
from drivers.dlt645.poller import Dlt645Poller, DltMeterSpec
from drivers.dlt645.profile import (
    BAUDS,
    DltProfile,
    load_dlt645_profile,
    load_dlt645_profiles,
)
from drivers.modbus.events import MeterCounters, MeterIdentity, MeterReading
from drivers.modbus.line import ReadError
from drivers.modbus.link import SerialLineSpec
from drivers.modbus.profile import ProfileSet
from drivers.modbus.profile_check import ProfileError
from drivers.modbus.quantities import STANDARD

SCAN_BAUDS = [2400, 9600, 1200, 4800]


def _profiles(args: argparse.Namespace) -> ProfileSet[DltProfile]:
    try:
        if args.profiles is not None:
            return load_dlt645_profiles([args.profiles], skip_missing=False)
        return load_dlt645_profiles(profile_dirs(args.config))
    except ProfileError as exc:
        raise UserError(str(exc), 2) from None


def _profile(args: argparse.Namespace, name: str) -> DltProfile:
    if name.endswith(".toml") or "/" in name:
        try:
            return load_dlt645_profile(name)
        except ProfileError as exc:
            raise UserError(str(exc), 2) from None
    try:
        return _profiles(args)[name]
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; `evgw meter profiles` lists them", 2) from None


def _serial_only(args: argparse.Namespace) -> str:
    if args.tcp is not None or args.port is None:
        raise UserError("DL/T 645 meters are read on a serial port: use --port DEV", 2)
    return str(args.port)


async def _poll_once(
    spec: SerialLineSpec, address: str, profile: DltProfile
) -> tuple[MeterReading | None, list[object], Dlt645Poller]:
    events: list[object] = []
    meter = DltMeterSpec("meter", address, profile.name, retries=0)
    poller = Dlt645Poller(spec, [meter], {profile.name: profile}, events.append)
    try:
        reading = await poller.poll("meter", time.time())
    finally:
        poller.close()
    return reading, events, poller


def run_read_dlt645(args: argparse.Namespace) -> int:
    port = _serial_only(args)
    profile = _profile(args, args.profile)
    try:
        address = check_address(args.address) if args.address else WILDCARD
    except AddressError as exc:
        raise UserError(str(exc), 2) from None
    spec = SerialLineSpec(
        port,
        baud=args.baud or profile.link.baud,
        parity=args.parity or profile.link.parity,
        stopbits=args.stopbits or profile.link.stopbits,
        timeout_s=args.timeout or 1.0,
    )
    reading, events, poller = asyncio.run(_poll_once(spec, address, profile))
    if reading is None:
        error = poller.health("meter").last_error or "no answer"
        raise UserError(f"{error} (`evgw meter scan --protocol dlt645` tries other settings)")
    if not reading.values:
        reasons = "; ".join(sorted(set(reading.rejected.values())))
        raise UserError(f"meter {address} answered but no value could be read ({reasons})")
    if args.json:
        out = {q.name: _value(reading, q.name) for q in profile.quantities}
        print(json.dumps(out, ensure_ascii=False))
        for name, reason in reading.rejected.items():
            print(f"evgw: {name}: {reason}", file=sys.stderr)
        return 0
    _print_reading(profile, spec, address, reading, events, poller)
    return 0


def _value(reading: MeterReading, name: str) -> float | None:
    value = reading.values.get(name)
    return None if value is None else fmt(value)


def _print_reading(
    profile: DltProfile,
    spec: SerialLineSpec,
    address: str,
    reading: MeterReading,
    events: list[object],
    poller: Dlt645Poller,
) -> None:
    print(
        f"{profile.vendor} {profile.model} ({profile.name}), address {address} on {spec.describe()}"
    )
    width = max(len(q.name) for q in profile.quantities)
    for q in profile.quantities:
        unit = STANDARD[q.name].unit if q.name in STANDARD else q.unit
        if q.name in reading.values:
            print(f"  {q.name:<{width}}  {fmt(reading.values[q.name]):>14} {unit}")
        else:
            print(f"  {q.name:<{width}}  {'—':>14}   rejected: {reading.rejected[q.name]}")
    for event in events:
        if isinstance(event, MeterIdentity):
            for key, value in event.identity.items():
                print(f"  {key:<{width}}  {value:>14}")
        elif isinstance(event, MeterCounters):
            for name, count in event.counts.items():
                last = event.last_event_ts.get(name)
                when = "" if last is None else f"   last {_iso(last)}"
                print(f"  {name + ' count':<{width}}  {count:>14}{when}")
    drift = poller.seal("meter").clock_drift_s
    if drift is not None:
        print(f"  {'clock drift':<{width}}  {drift:>14.0f} s (meter − this computer)")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ----------------------------------------------------------------------- scan


async def _find_address(args: argparse.Namespace, port: str) -> tuple[SerialLineSpec, str]:
    bauds = args.bauds or SCAN_BAUDS
    parities = args.parity or ["E"]
    garbled: list[str] = []
    for baud in bauds:
        if baud not in BAUDS:
            raise UserError(f"DL/T 645 baud rates are {', '.join(map(str, BAUDS))}, not {baud}", 2)
        for parity in parities:
            for stopbits in args.stopbits or [1]:
                spec = SerialLineSpec(
                    port, baud=baud, parity=parity, stopbits=stopbits, timeout_s=args.timeout or 1.0
                )
                print(f"asking {spec.describe()} for its meter's address…", file=sys.stderr)
                line = Dlt645Line(spec)
                try:
                    found = await line.read_addresses()
                finally:
                    line.close()
                if isinstance(found, ReadError):
                    if found.line_down:
                        raise UserError(found.message)
                    if found.kind == "garbled":
                        garbled.append(str(spec.describe()))
                    continue
                if len(found) > 1:
                    raise UserError(_collision(spec, f"addresses {', '.join(found)} answered"))
                return spec, found[0]
    if garbled:
        raise UserError(_collision(None, f"unreadable answers at {'; '.join(garbled)}"))
    raise UserError(
        f"no DL/T 645 meter answered on {port} at {', '.join(map(str, bauds))} baud: check the "
        "A/B wiring (swap them), power and termination, and try --bauds/--parity"
    )


def _collision(spec: SerialLineSpec | None, what: str) -> str:
    where = f" on {spec.describe()}" if spec else ""
    return (
        f"{what}{where}: more than one meter may be answering the wildcard request (a "
        "collision), or the parity is wrong. Disconnect all meters but one and scan again, "
        "or read each meter by the address on its label: evgw meter read --protocol dlt645 "
        "--address ADDR …"
    )


def run_scan_dlt645(args: argparse.Namespace) -> int:
    port = _serial_only(args)
    profiles = _profiles(args)
    names = args.profile_names or list(profiles)
    try:
        chosen = [profiles[n] for n in names]
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; `evgw meter profiles` lists them", 2) from None
    finding = asyncio.run(_scan(args, port, chosen))
    if args.json:
        print(json.dumps(finding, ensure_ascii=False, indent=2))
        return 0
    print(f"meter {finding['address']} at {finding['baud']} 8{finding['parity']}1:")
    if finding["profile"] is None:
        print("  answers, but no profile reads plausible values (docs/METERS.md: adding a model)")
        return 0
    print(f"  best fit: {finding['profile']} ({finding['plausible']}/{finding['total']} plausible)")
    print("  config:")
    print("    [[meters]]")
    print(f'    meter_id = "meter-{finding["address"][-4:]}"')
    print('    protocol = "dlt645"')
    print(f'    profile = "{finding["profile"]}"')
    print('    transport = "rtu"')
    print(f'    port = "{port}"')
    print(f"    baud = {finding['baud']}")
    print(f'    parity = "{finding["parity"]}"')
    print(f"    stop_bits = {finding['stopbits']}")
    print(f'    address = "{finding["address"]}"')
    return 0


async def _scan(args: argparse.Namespace, port: str, profiles: list[DltProfile]) -> dict[str, Any]:
    spec, address = await _find_address(args, port)
    fits: list[tuple[int, int, str, dict[str, float]]] = []
    for profile in profiles:
        reading, _, _ = await _poll_once(spec, address, profile)
        if reading is not None and reading.values:
            total = len(profile.quantities)
            fits.append((len(reading.values), -total, profile.name, dict(reading.values)))
    fits.sort(reverse=True)
    best = fits[0] if fits else None
    return {
        "address": address,
        "baud": spec.baud,
        "parity": spec.parity,
        "stopbits": spec.stopbits,
        "profile": best[2] if best else None,
        "plausible": best[0] if best else 0,
        "total": -best[1] if best else 0,
        "values": {k: fmt(v) for k, v in best[3].items()} if best else {},
        "candidates": [{"profile": f[2], "plausible": f[0], "total": -f[1]} for f in fits],
    }


# ----------------------------------------------------------------------- profiles


def run_dlt645_profiles(args: argparse.Namespace) -> int:
    profiles = _profiles(args)
    names = [args.name] if args.name else list(profiles)
    try:
        rows = [(profiles[n], profiles.origin(n)) for n in names]
    except KeyError as exc:
        raise UserError(str(exc.args[0]), 2) from None
    if args.json:
        out = [
            {
                "name": p.name,
                "vendor": p.vendor,
                "model": p.model,
                "kind": p.kind,
                "baud": p.link.baud,
                "parity": p.link.parity,
                "stopbits": p.link.stopbits,
                "quantities": {q.name: f"{q.di:08X}" for q in p.quantities},
                "counters": [c.name for c in p.counters],
                "source": o.source,
                "replaces": o.replaces,
            }
            for p, o in rows
        ]
        print(json.dumps(out if not args.name else out[0], ensure_ascii=False, indent=2))
        return 0
    if args.name:
        p, o = rows[0]
        print(f"{p.name}: {p.vendor} {p.model} ({p.kind}) — {p.description}")
        print(f"  file: {p.path}\n  source: {o.source}\n  link: {p.link}")
        for q in p.quantities:
            sign = " signed" if q.signed else ""
            print(f"  {q.name:<30} DI {q.di:08X} {q.format.pattern}{sign} {q.unit}")
        for r in p.identity:
            print(f"  identity {r.name:<21} DI {r.di:08X} {r.format.pattern}")
        for c in p.counters:
            last = f", last event DI {c.last_di:08X}" if c.last_di is not None else ""
            print(f"  counter {c.name:<22} DI {c.count_di:08X}{last}")
        return 0
    print(f"{'NAME':<16} {'VENDOR':<9} {'MODEL':<24} {'KIND':<4} {'LINK':<9} SOURCE")
    for p, o in rows:
        replaced = f" (replaces {o.replaces})" if o.replaces else ""
        row = f"{p.name:<16} {p.vendor:<9} {p.model:<24} {p.kind:<4} {p.link!s:<9}"
        print(f"{row} {o.source}{replaced}")
    return 0
