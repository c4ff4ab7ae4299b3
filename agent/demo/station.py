"""``evgw demo``: the real service on an embedded simulated station.

The station of ``config/demo.toml``: two DC connectors whose charger↔BMS conversations are
played by :mod:`sim.charging` onto python-can virtual buses, one AC connector, and four
meters (one per connector plus the station main meter) driven from the same power curves:
three emulated by :mod:`sim.meter` over Modbus TCP on loopback, gun B's a DL/T 645 DC meter
(:mod:`sim.dlt645_meter`) on a pseudo-terminal. A DI module on the Modbus line carries the
charger's service-door contact. The gateway is the unmodified
:class:`~agent.service.runner.Service`, reading those devices like real ones.

Everything the demo simulates runs in real time so the figures agree: the meters integrate
the power the sessions draw, and the energy audit compares like with like. One DC session
in three carries a fault (an insulation fault stopped by the BMS, an emergency stop), so
alarms are raised and cleared while you watch. Gun B's meter cover is opened once, during
its first session (a tamper alarm, and that order is flagged), and the service door is
opened for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import shutil
import socket
import string
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from agent.config.resources import read_resource
from agent.ledger import GatewayKey
from agent.uplink.cec.codec import CecSecrets
from drivers.dlt645.profile import load_dlt645_profiles
from drivers.inputs.profile import load_module_profiles
from drivers.modbus.profile import load_profiles
from sim.charging import (
    ChargerProfile,
    Fault,
    FaultKind,
    SimOptions,
    SimSession,
    VehicleProfile,
    generate,
)
from sim.charging_output import play
from sim.di_module import SimDiModule
from sim.dlt645_meter import Dlt645SimServer, SimDltMeter
from sim.meter import MeterPhysics, MeterSimServer, SimMeter
from sim.platform import PlatformServer, PlatformSettings

log = logging.getLogger("evgw.demo")

DC_CONNECTORS = (("DEMODC0101", "demo-dc-a", 1), ("DEMODC0102", "demo-dc-b", 2))
AC_UNIT, MAIN_UNIT = 3, 4
DLT645_UNIT, DLT645_ADDRESS = 2, "000000000102"
"""Gun B's meter: DL/T 645, found by its address (``unit`` only keys it here)."""
DI_UNIT, DOOR_CHANNEL = 9, 0
COVER_OPEN_AT_S = 8.0
"""When gun B's meter cover is opened (its first session is charging by then)."""
DOOR_OPEN_S = (30.0, 36.0)
AC_POWER_W = 7000.0
IDLE_BETWEEN_SESSIONS_S = 6.0

VEHICLES = (
    VehicleProfile(vin="LSIMDEMO000000001", soc_start_pct=35, soc_target_pct=80, max_current_a=150),
    VehicleProfile(
        vin="LSIMDEMO000000002",
        capacity_ah=120,
        rated_voltage_v=400.0,
        soc_start_pct=52,
        max_current_a=120,
        protocol="1.0",
    ),
    VehicleProfile(vin="LSIMDEMO000000003", soc_start_pct=20, soc_target_pct=90, max_current_a=180),
)
FAULTS: tuple[tuple[Fault, ...], ...] = (
    (),
    (Fault(FaultKind.INSULATION, at_s=20.0),),
    (),
    (Fault(FaultKind.EMERGENCY_STOP, at_s=15.0),),
)


DEMO_OPERATOR_ID = "MA5DEMO01"
DEMO_STATION_ID = "DEMO-0001"
"""``station.station_id`` of config/demo.toml."""
DEMO_CEC_URL = "http://127.0.0.1:15021/evcs/v1/"


def _secret16() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def write_demo_secrets(state_dir: Path) -> dict[str, str]:
    """Fresh T/CEC secrets for the demo, in a private secrets.toml (as the service demands)."""
    values = {k: _secret16() for k in ("operator_secret", "data_secret", "data_iv", "sig_secret")}
    path = state_dir / "secrets.toml"
    path.write_text("[cec]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items()))
    path.chmod(0o600)
    return values


def write_demo_config(
    state_dir: Path,
    modbus_port: int,
    dlt645_port: str,
    cec_url: str | None = None,
    mqtt_port: int | None = None,
    command_pubkey_file: Path | None = None,
) -> Path:
    """The demo config with its state folder and simulator endpoints (the Modbus TCP port,
    the DL/T 645 line's device) filled in, plus a key.

    Without ``cec_url`` the T/CEC uplink is disabled; with ``mqtt_port`` an MQTT uplink to a
    local broker (plain TCP on loopback) is added, taking the commands signed by the key of
    ``command_pubkey_file`` (the demo's operator).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    text = (
        read_resource("demo.toml")
        .replace("@STATE_DIR@", str(state_dir.resolve()))
        .replace("tcp_port = 15020", f"tcp_port = {modbus_port}")
        .replace('port = "/dev/ttyDEMO645"', f'port = "{dlt645_port}"')
    )
    if cec_url is None:
        text = text.replace("[uplinks.cec]\nenabled = true", "[uplinks.cec]\nenabled = false")
    else:
        text = text.replace(DEMO_CEC_URL, cec_url)
    if mqtt_port is not None:
        text += (
            "\n[uplinks.mqtt]\n"
            f'brokers = ["127.0.0.1:{mqtt_port}"]\n'
            "tls = false                          # loopback broker of the demo\n"
            'topic_prefix = "evgw/demo"\n'
        )
        if command_pubkey_file is not None:
            text += f'command_pubkey_file = "{command_pubkey_file}"\n'

    path = state_dir / "evgw.toml"
    path.write_text(text, "utf-8")
    key = state_dir / "gateway.key"
    if not key.exists():
        GatewayKey.generate().save(key)
    return path


def start_platform(state_dir: Path, cec: dict[str, str]) -> PlatformServer:
    """The embedded T/CEC receiver, playing the city platform on loopback."""
    settings = PlatformSettings(
        operators={DEMO_OPERATOR_ID: cec["operator_secret"]},
        secrets=CecSecrets(cec["data_secret"], cec["data_iv"], cec["sig_secret"]),
        db_path=state_dir / "platform.db",
    )
    return PlatformServer(settings).start()


def start_broker(state_dir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """A mosquitto on a free loopback port, when the binary is installed."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    conf = state_dir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    # its own session: a Ctrl-C on the terminal stops the gateway, which then drains its
    # uplinks into this broker; the demo stops the broker last
    proc = subprocess.Popen(
        [binary, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, port
        time.sleep(0.05)
    proc.kill()
    log.warning("mosquitto did not start: the demo runs without the MQTT uplink")
    return None


@dataclass(slots=True)
class DemoStation:
    """The simulated devices; ``truth`` records what was played, for the report."""

    meters: dict[int, MeterPhysics] = field(default_factory=dict)
    server: MeterSimServer | None = None
    dlt645: Dlt645SimServer | None = None
    dlt645_port: str = ""
    """The device of the DL/T 645 line (after :meth:`start_meters`)."""
    door: SimDiModule | None = None
    truth: list[dict[str, Any]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start_meters(self) -> int:
        """Start the Modbus TCP line (returns its port) and the DL/T 645 line."""
        profiles = load_profiles()
        clock = time.time
        modbus = {
            1: SimMeter(
                profiles["djsf1352"], 1, clock=clock, voltage_v=0.0, energy_import_kwh=1520.0
            ),
            AC_UNIT: SimMeter(profiles["ddsu666"], AC_UNIT, clock=clock, energy_import_kwh=311.2),
            MAIN_UNIT: SimMeter(
                profiles["dtsu666"], MAIN_UNIT, clock=clock, energy_import_kwh=50210.0
            ),
        }
        dc_b = SimDltMeter(
            load_dlt645_profiles()["dcm3366q"],
            DLT645_ADDRESS,
            clock=clock,
            voltage_v=0.0,
            energy_import_kwh=873.5,
        )
        self.meters = {**modbus, DLT645_UNIT: dc_b}
        self.door = SimDiModule(load_module_profiles()["generic-di8"], DI_UNIT)
        self.door.set(DOOR_CHANNEL, True)  # the loop is closed: the door is shut
        self.dlt645 = Dlt645SimServer([dc_b])
        self.dlt645_port = await self.dlt645.start_pty()
        self.server = MeterSimServer([*modbus.values(), self.door])
        return await self.server.start_tcp("127.0.0.1", 0)

    def start_sessions(self) -> None:
        for connector_id, channel, unit in DC_CONNECTORS:
            self._tasks.append(
                asyncio.create_task(
                    self._dc_loop(connector_id, channel, unit), name=f"sim-{channel}"
                )
            )
        self._tasks.append(asyncio.create_task(self._ac_loop(), name="sim-ac"))
        self._tasks.append(asyncio.create_task(self._main_meter_loop(), name="sim-main"))
        self._tasks.append(asyncio.create_task(self._site(), name="sim-site"))

    async def _site(self) -> None:
        """Open gun B's meter cover once, and the service door for a few seconds."""
        meter, door = self.meters[DLT645_UNIT], self.door
        assert isinstance(meter, SimDltMeter) and door is not None
        await asyncio.sleep(COVER_OPEN_AT_S)
        meter.open_cover()
        self.truth.append({"connector_id": "DEMODC0102", "meter_cover_opened_ts": time.time()})
        opened, closed = DOOR_OPEN_S
        await asyncio.sleep(opened - COVER_OPEN_AT_S)
        door.set(DOOR_CHANNEL, False)
        await asyncio.sleep(closed - opened)
        door.set(DOOR_CHANNEL, True)

    async def _dc_loop(self, connector_id: str, channel: str, unit: int) -> None:
        meter = self.meters[unit]
        bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
        try:
            await asyncio.sleep(2.0 + unit)  # let the gateway open its buses first
            for n in itertools.count():
                vehicle = VEHICLES[(n + unit) % len(VEHICLES)]
                faults = FAULTS[(n + unit - 1) % len(FAULTS)]
                session = generate(
                    vehicle,
                    ChargerProfile(charger_number=unit),
                    SimOptions(start_ts=time.time(), stop="manual", stop_after_s=40.0),
                    faults,
                )
                self.truth.append(
                    {
                        "connector_id": connector_id,
                        "vin": vehicle.vin,
                        "faults": [f.kind.value for f in faults],
                        "start_ts": session.frames[0].ts,
                    }
                )
                follower = asyncio.create_task(self._follow(session, meter))
                try:
                    await play(session, bus)
                finally:
                    follower.cancel()
                    meter.set_current(0.0)
                    meter.set_power(0.0)
                await asyncio.sleep(IDLE_BETWEEN_SESSIONS_S)
        finally:
            bus.shutdown()

    @staticmethod
    async def _follow(session: SimSession, meter: MeterPhysics) -> None:
        """Keep the DC meter on the session's power curve."""
        while True:
            point = session.at(time.time())
            if point is not None:
                meter.set_voltage(point.voltage_v)
                meter.set_current(point.current_a)
                meter.set_power(point.voltage_v * point.current_a)
            await asyncio.sleep(0.25)

    async def _ac_loop(self) -> None:
        meter = self.meters[AC_UNIT]
        while True:
            await asyncio.sleep(5.0)
            meter.set_current(AC_POWER_W / 230.0)
            meter.set_power(AC_POWER_W)
            self.truth.append({"connector_id": "DEMOAC0101", "start_ts": time.time(), "faults": []})
            await asyncio.sleep(45.0)
            meter.set_current(0.0)
            meter.set_power(0.0)
            await asyncio.sleep(25.0)

    async def _main_meter_loop(self) -> None:
        """The station main meter sees the sum of the connectors (plus 1.5 kW of site load)."""
        main = self.meters[MAIN_UNIT]
        while True:
            total = 1500.0 + sum(self.meters[u].value("power_w") for u in (1, 2, AC_UNIT))
            main.set_power(total)
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.server is not None:
            await self.server.stop()
        if self.dlt645 is not None:
            await self.dlt645.stop()
