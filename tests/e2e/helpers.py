"""The end-to-end rig: the real ``evgw run`` process against a simulated station.

Outside the agent everything is real or a faithful simulator: chargers on slcan over socat
pty pairs (:class:`sim.station.SimStation`), DC meters over Modbus TCP, the strict T/CEC
receiver (:class:`sim.platform.PlatformServer`) and a real mosquitto with a durable MQTT
consumer. :class:`Rig` builds it all in one folder and writes the agent's config;
:class:`Agent` runs the service as a subprocess (SIGTERM like ``systemctl stop``, SIGKILL
like a power cut, restarts like systemd; :mod:`tests.e2e.processes`). The remaining helpers
read the ledger and compare what each platform received with it.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agent.demo.station import DEMO_OPERATOR_ID, start_platform, write_demo_secrets
from agent.ledger import GatewayKey
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.keys import PublicKey
from agent.ledger.stats import ledger_stats
from agent.ledger.verify import Report, verify_lines
from agent.records.envelope import StoredRecord, canonical_json
from agent.uplink.cec.mapping import MappingContext, notification_for
from sim.platform import PlatformServer
from sim.station import SimConnector, SimStation
from tests.conftest import Broker, PtyPair, make_broker, open_pty_pair
from tests.e2e.processes import EVGW as EVGW
from tests.e2e.processes import Agent, MqttConsumer
from tests.e2e.processes import wait_until as wait_until

GATEWAY_ID = "e2e-gw"
STATION_ID = "E2E-0001"
STATION_NAME = "evgw e2e station"
TOPIC_PREFIX = "evgw/e2e"
PLATFORM_OPERATOR_ID = "MA5GOV001"


def connector_id(n: int) -> str:
    return f"E2EDC01{n:02d}"


# --------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    """Everything outside the agent, and the agent's config, in one folder."""

    directory: Path
    connectors: list[str]
    pairs: list[PtyPair]
    station: SimStation
    platform: PlatformServer
    broker: Broker
    consumer: MqttConsumer
    config: Path
    agent: Agent

    @property
    def ledger_path(self) -> Path:
        return self.directory / "ledger.db"

    def close(self) -> None:
        self.agent.stop_quietly()
        self.station.stop()
        for pair in self.pairs:
            pair.close()
        self.consumer.close()
        self.broker.stop()
        self.platform.stop()


def config_text(
    directory: Path,
    connectors: list[str],
    ptys: list[str],
    modbus_port: int,
    cec_url: str,
    mqtt_port: int,
    sampling: str,
) -> str:
    d = directory.resolve()
    lines = [
        "[gateway]",
        f'gateway_id = "{GATEWAY_ID}"',
        f'operator_id = "{DEMO_OPERATOR_ID}"',
        f'state_dir = "{d}"',
        f'secrets_file = "{d}/secrets.toml"',
        f'runtime_dir = "{d}"',
        'log_level = "info"',
        "",
        "[station]",
        f'station_id = "{STATION_ID}"',
        f'name = "{STATION_NAME}"',
        'area_code = "440304"',
        'address = "Test Road 1, Futian, Shenzhen"',
        'service_tel = "0755-00000000"',
        f"park_nums = {len(connectors)}",
        "",
        "[[equipment]]",
        'equipment_id = "E2EDC01"',
        'name = "e2e DC charger"',
        "equipment_type = 1",
        f"power_kw = {60.0 * len(connectors)}",
        f'manufacturer_id = "{DEMO_OPERATOR_ID}"',
    ]
    for n, cid in enumerate(connectors, 1):
        lines += [
            "",
            "  [[equipment.connectors]]",
            f'  connector_id = "{cid}"',
            f'  name = "DC gun {n}"',
            "  connector_type = 4",
            "  power_kw = 60.0",
            "  voltage_upper_v = 750",
            "  voltage_lower_v = 200",
            "  current_a = 200",
        ]
    for n, cid in enumerate(connectors, 1):
        lines += [
            "",
            "[[meters]]",
            f'meter_id = "dc-{n:02d}"',
            'profile = "djsf1352"',
            'transport = "tcp"',
            'host = "127.0.0.1"',
            f"tcp_port = {modbus_port}",
            f"unit_id = {n}",
            f'connector_id = "{cid}"',
            "poll_interval_s = 1",
        ]
    for cid, pty in zip(connectors, ptys, strict=True):
        lines += [
            "",
            "[[can_buses]]",
            f'connector_id = "{cid}"',
            'interface = "slcan"',
            f'channel = "{pty}"',
        ]
    lines += [
        "",
        "[uplinks.mqtt]",
        f'brokers = ["127.0.0.1:{mqtt_port}"]',
        "tls = false",
        f'topic_prefix = "{TOPIC_PREFIX}"',
        f'client_id = "evgw-{GATEWAY_ID}"',
        "",
        "[uplinks.cec]",
        "enabled = true",
        f'base_url = "{cec_url}"',
        f'platform_operator_id = "{PLATFORM_OPERATOR_ID}"',
        "request_timeout_s = 3",
        "retry_max_s = 2",
        "",
        "[[tariffs]]",
        'id = "std"',
        "default = true",
        'periods = [{ start = "00:00", type = "flat", elec_price = 0.62, service_price = 0.8 }]',
        "",
        "[ledger]",
        f'path = "{d}/ledger.db"',
        f'key_path = "{d}/gateway.key"',
        "checkpoint_interval_s = 5",
        "",
        "[sampling]",
        sampling.strip(),
        "",
    ]
    return "\n".join(lines)


DEFAULT_SAMPLING = """
bms_process_interval_s = 2
status_heartbeat_s = 5
meter_sample_interval_s = 5
"""


def build_rig(directory: Path, n_connectors: int, sampling: str = DEFAULT_SAMPLING) -> Rig:
    """Start the simulators, the receiver, the broker and its consumer; write the config.

    The agent is not started: ``rig.agent.start()``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    connectors = [connector_id(n) for n in range(1, n_connectors + 1)]
    undo: list[Callable[[], None]] = []  # how to take down what started, if a later part fails
    try:
        pairs = []
        for n in range(1, n_connectors + 1):
            pairs.append(open_pty_pair(directory, f"can{n}"))
            undo.append(pairs[-1].close)
        station = SimStation(
            [
                SimConnector(cid, unit_id=n, pty=pair.a, energy_start_kwh=1000.0 * n)
                for n, (cid, pair) in enumerate(zip(connectors, pairs, strict=True), 1)
            ]
        )
        undo.append(station.stop)
        modbus_port = station.start()
        cec = write_demo_secrets(directory)
        platform = start_platform(directory, cec)
        undo.append(platform.stop)
        # the consumer's session (subscription and queued messages) survives broker restarts;
        # as root, mosquitto would drop to a user that cannot write the test's folder
        broker = make_broker(
            directory,
            f"persistence true\npersistence_location {directory.resolve()}/\n"
            f"user {getpass.getuser()}\n",
        )
        undo.append(broker.stop)
        broker.start()
        consumer = MqttConsumer(broker.port, f"{TOPIC_PREFIX}/{STATION_ID}/#")
        undo.append(consumer.close)
        consumer.wait_subscribed()
        GatewayKey.generate().save(directory / "gateway.key")
        config = directory / "evgw.toml"
        config.write_text(
            config_text(
                directory,
                connectors,
                [p.b for p in pairs],
                modbus_port,
                platform.base_url,
                broker.port,
                sampling,
            ),
            "utf-8",
        )
    except BaseException:
        for step in reversed(undo):
            step()
        raise
    return Rig(
        directory=directory,
        connectors=connectors,
        pairs=pairs,
        station=station,
        platform=platform,
        broker=broker,
        consumer=consumer,
        config=config,
        agent=Agent(config, directory, on_gone=station.host_gone),
    )


# --------------------------------------------------------------------------- the ledger


def ledger_records(path: Path) -> list[dict[str, Any]]:
    """The ledger's records (read-only; safe while the agent runs)."""
    conn = open_for_reading(path)
    try:
        lines = [json.loads(line) for line in export_lines(conn)]
    finally:
        conn.close()
    return [x for x in lines if "seq" in x and "kind" in x]


def backlogs(path: Path) -> dict[str, int]:
    """Records each uplink has not had acknowledged yet (none registered: empty)."""
    conn = open_for_reading(path)
    try:
        return {u["uplink"]: u["backlog"] for u in ledger_stats(conn, path)["uplinks"]}
    finally:
        conn.close()


def orders(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "charge_order"]


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVGW, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def export_and_verify(rig: Rig) -> list[dict[str, Any]]:
    """``evgw ledger export`` + ``evgw keys show`` + ``evgw ledger verify --pubkey``: the
    regulator's path. Returns the exported records."""
    out = rig.directory / "export.jsonl"
    done = run_cli("ledger", "export", "--config", str(rig.config), "-o", str(out))
    assert done.returncode == 0, done.stderr
    shown = run_cli("keys", "show", "--config", str(rig.config))
    assert shown.returncode == 0, shown.stderr
    pub = rig.directory / "gateway.pub"
    pub.write_text(shown.stdout)
    verified = run_cli("ledger", "verify", str(out), "--pubkey", str(pub))
    assert verified.returncode == 0, f"verify failed:\n{verified.stdout}\n{verified.stderr}"
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [x for x in lines if "seq" in x and "kind" in x]


def public_key(rig: Rig) -> PublicKey:
    return PublicKey.from_text(GatewayKey.load(rig.directory / "gateway.key").public_pem, "key")


# --------------------------------------------------------------------------- the platforms


def cec_expected_ids(records: list[dict[str, Any]]) -> set[str]:
    """Ids of the records the T/CEC uplink must deliver (the kinds and alarms it takes)."""
    ctx = MappingContext(
        operator_id=DEMO_OPERATOR_ID,
        equipment_owner_id=DEMO_OPERATOR_ID,
        station_name=STATION_NAME,
    )
    return {
        r["id"]
        for r in records
        if notification_for(msgspec.convert(r, StoredRecord), ctx) is not None
    }


def cec_accepted(rig: Rig) -> list[dict[str, Any]]:
    """What the receiver accepted, in arrival order, one entry per record id."""
    return [a for a in rig.platform.receiver.accepted() if a["record_id"]]


def delivered_everywhere(rig: Rig) -> bool:
    """Both uplinks have nothing left to send (their cursors are at the ledger's end)."""
    if not rig.ledger_path.exists():
        return False
    pending = backlogs(rig.ledger_path)
    return set(pending) == {"mqtt", "cec"} and not any(pending.values())


def wait_for_broker(rig: Rig, records: list[dict[str, Any]], timeout_s: float = 20.0) -> None:
    """Until the consumer holds every record (the broker delivers the last ones after the
    agent got its PUBACKs); the failure lists what is missing."""
    ids = {r["id"]: r["kind"] for r in records}
    deadline = time.monotonic() + timeout_s
    while not rig.consumer.received_ids() >= set(ids):
        if time.monotonic() > deadline:
            missing = sorted(set(ids) - rig.consumer.received_ids())
            raise AssertionError(
                f"{len(missing)} records never reached the MQTT consumer: "
                + ", ".join(f"{i} ({ids[i]})" for i in missing[:20])
            )
        time.sleep(0.2)


def broker_copy_verifies(rig: Rig, last_seq: int) -> Report:
    """Rebuild the chain from the MQTT messages alone (records by seq, each checkpoint right
    after the record it signs) and verify it with the gateway's public key."""
    by_seq = {r["seq"]: r for r in rig.consumer.first_arrivals()}
    lines: list[bytes] = []
    for seq in sorted(by_seq):
        lines.append(canonical_json(by_seq[seq]))
        if seq in rig.consumer.checkpoints:
            lines.append(canonical_json({"checkpoint": rig.consumer.checkpoints[seq]}))
    report = verify_lines(lines, [public_key(rig)], allow_unsigned_tail=True)
    assert report.ok, f"the broker's copy of the chain does not verify: {report.problems}"
    assert report.last_seq == last_seq
    return report


def per_lane_order_violations(
    arrivals: list[dict[str, Any]], lane: Callable[[dict[str, Any]], str]
) -> list[str]:
    """Records whose seq is lower than an earlier first arrival of the same lane."""
    last: dict[str, int] = {}
    problems = []
    for r in arrivals:
        key = lane(r)
        if r["seq"] < last.get(key, 0):
            problems.append(f"{key}: seq {r['seq']} arrived after seq {last[key]}")
        last[key] = max(last.get(key, 0), r["seq"])
    return problems
