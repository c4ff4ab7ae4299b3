"""``evgw check`` against the real world: meters, CAN buses, then each enabled uplink's own
check (:attr:`agent.uplink.plugin.UplinkPlugin.check`).

Each check talks to the device or platform once through the same code the service uses
(the line pollers, the listen-only CAN listener, the T/CEC client's token request) and turns
the outcome into OK / WARN / FAIL lines with a hint a technician can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import msgspec

from agent.commission.results import CheckResult, fail, ok, skip, warn
from agent.config.errors import ConfigError
from agent.config.files import file_problem, section_files
from agent.config.schema import Config, MeterSection
from agent.config.secrets import Secrets
from agent.service.devices import build_pollers, bus_spec, meter_profiles
from agent.uplink.registry import enabled_uplinks
from drivers.gbt27930.bus import BusStateChanged, CanListener
from drivers.modbus.link import quiet_library_logging

METER_HINT = (
    "check the wiring (A/B swapped?), the meter's unit id, baud and parity "
    "(evgw meter scan finds them), and the 120 Ω termination"
)
TCP_METER_HINT = (
    "the connection opened but the unit did not answer: check the unit id, that the device at "
    "{where} speaks Modbus TCP (not RTU over TCP), and the meter behind a gateway "
    "(evgw meter read --tcp {where} --profile {profile} --unit {unit})"
)


def _meter_hint(meter: MeterSection, error: str) -> str:
    text = error.lower()
    if "permission" in text:
        return "add the service user to the dialout group: usermod -aG dialout evgw"
    if meter.transport == "rtu" and ("no such file" in text or "could not open" in text):
        return (
            f"is the RS-485 adapter plugged in? ls -l /dev/serial/by-id/ and set port = the "
            f"adapter's path (now {meter.port})"
        )
    if meter.transport != "rtu" and ("refused" in text or "connect" in text):
        return (
            f"nothing answers at {meter.host}:{meter.tcp_port}: check the Modbus gateway's address"
        )
    if "exception" in text:
        return "the meter refused the read: is the profile right for this model? (evgw meter scan)"
    if meter.transport != "rtu":
        where = f"{meter.host}:{meter.tcp_port}"
        return TCP_METER_HINT.format(where=where, profile=meter.profile, unit=meter.unit_id)
    return METER_HINT


def _where(meter: MeterSection) -> str:
    return f"address {meter.address}" if meter.protocol == "dlt645" else f"unit {meter.unit_id}"


async def check_meters(config: Config) -> list[CheckResult]:
    if not config.meters:
        return []
    quiet_library_logging()
    results: list[CheckResult] = []
    rtu_missing = {
        m.meter_id
        for m in config.meters
        if m.transport == "rtu" and m.port is not None and not os.path.exists(m.port)
    }
    for meter in config.meters:
        if meter.meter_id in rtu_missing:
            results.append(
                fail(
                    f"meter {meter.meter_id}",
                    f"serial port {meter.port} does not exist",
                    _meter_hint(meter, "no such file"),
                )
            )
    present = [m for m in config.meters if m.meter_id not in rtu_missing]
    if not present:
        return results
    queue: asyncio.Queue[Any] = asyncio.Queue()
    reachable = msgspec.structs.replace(config, meters=present)
    for poller in build_pollers(reachable, meter_profiles(config), queue):
        try:
            for meter_id in poller.meter_ids:
                meter = next(m for m in present if m.meter_id == meter_id)
                reading = await poller.poll(meter_id, time.time())
                name = f"meter {meter_id}"
                if reading is None:
                    error = poller.health(meter_id).last_error or "no answer"
                    results.append(
                        fail(
                            name,
                            f"{meter.profile} {_where(meter)}: {error}",
                            _meter_hint(meter, error),
                        )
                    )
                    continue
                energy = reading.energy_import_kwh
                detail = (
                    f"{meter.profile} {_where(meter)}: {energy:.2f} kWh"
                    if energy is not None
                    else f"{meter.profile}: read"
                )
                if reading.rejected:
                    bad = ", ".join(f"{k}: {v}" for k, v in reading.rejected.items())
                    results.append(
                        warn(
                            name,
                            f"{detail}; rejected values: {bad}",
                            "compare with the display; the profile or its options "
                            "may not fit (evgw meter scan --display-kwh …)",
                        )
                    )
                else:
                    results.append(ok(name, detail))
        finally:
            poller.close()
    return results


async def check_can(config: Config, listen_s: float) -> list[CheckResult]:
    results = []
    for i, bus in enumerate(config.can_buses):
        name = f"CAN {bus.connector_id}"
        items: list[Any] = []

        async def sink(item: Any, items: list[Any] = items) -> None:
            items.append(item)

        listener = CanListener(bus_spec(config, i), sink)
        task = asyncio.create_task(listener.run())
        await asyncio.sleep(listen_s)
        listener.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        counts = listener.pipeline.counts
        states = [item for item in items if isinstance(item, BusStateChanged)]
        events = len(items) - len(states)
        opened = any(s.state == "open" for s in states)
        where = f"{bus.interface} {bus.channel}"
        if not opened:
            reason = next((s.detail for s in states if s.state == "down"), "did not open")
            results.append(
                fail(
                    name,
                    f"{where}: {reason}",
                    "is the adapter present and up? for socketcan: ip link set "
                    f"{bus.channel} type can bitrate {bus.bitrate} listen-only on; "
                    f"ip link set {bus.channel} up",
                )
            )
        elif counts.total == 0:
            results.append(
                warn(
                    name,
                    f"{where} open, no frames in {listen_s:.0f} s",
                    "normal when no vehicle is plugged in; plug one in and check "
                    "again, else check the bitrate (250000) and the CAN-H/CAN-L wiring",
                )
            )
        elif counts.gbt == 0:
            results.append(
                warn(
                    name,
                    f"{where}: {counts.total} frames, none GB/T 27930",
                    "this looks like another bus (the charger's internal bus?): "
                    "connect to the charger↔vehicle CAN of the DC gun",
                )
            )
        else:
            anomalies = sum(sum(k.values()) for k in listener.pipeline.anomalies().values())
            results.append(
                ok(
                    name,
                    f"{where}: {counts.total} frames, {counts.gbt} GB/T, "
                    f"{events} session events, {anomalies} anomalies",
                )
            )
    return results


def missing_files(plugin_name: str, title: str, section: Any) -> list[CheckResult]:
    """A FAIL line for each file the uplink's section names that cannot be read here."""
    results = []
    for key, path in section_files(plugin_name, section):
        problem = file_problem(path)
        if problem:
            results.append(
                fail(
                    title,
                    f"{key}: {problem}",
                    f"copy the file the platform operator issued to {path} (readable by the "
                    f"evgw user), or correct {key} in evgw.toml",
                )
            )
    return results


async def uplink_checks(config: Config, secrets: Secrets | None) -> list[CheckResult]:
    """Each enabled uplink's own check, or a SKIP line saying why it cannot run."""
    results: list[CheckResult] = []
    for plugin, section in enabled_uplinks(config):
        missing = missing_files(plugin.name, plugin.title, section)
        if missing:
            results += missing
            results.append(skip(plugin.title, "not tried: a file it needs is missing (above)"))
            continue
        if secrets is None:
            results.append(skip(plugin.title, "not tried: the secrets could not be loaded"))
            continue
        try:
            results += await plugin.check(config, section, secrets.uplink(plugin.name))
        except ConfigError as exc:
            results.append(fail(plugin.title, "; ".join(exc.problems), "fix the file named"))
    return results


async def device_checks(
    config: Config, secrets: Secrets | None, listen_s: float
) -> list[CheckResult]:
    results = await check_meters(config)
    results += await check_can(config, listen_s)
    return results + await uplink_checks(config, secrets)
