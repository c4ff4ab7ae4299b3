"""The MQTT uplink against a real mosquitto: TLS, cursor on PUBACK, restarts, backlog, commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.ledger import GatewayKey, Ledger, PublicKey
from agent.ledger.chain import Checkpoint, checkpoint_signature_ok
from agent.records.envelope import StoredRecord, iso_ts
from agent.uplink.mqtt.settings import MqttSettings
from agent.uplink.mqtt.uplink import MqttUplink
from tests.conftest import Broker, free_port, make_broker
from tests.uplink.conftest import STATION, Pki, bms_body, record, status_record

WAIT_S = 60.0


def as_user() -> str:
    """Run as root, mosquitto drops to its own user and cannot read files in tmp_path."""
    return "user root\n" if os.geteuid() == 0 else ""


def tls_conf(pki: Pki, directory: Path, persistent: bool = False) -> str:
    conf = (
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    conf += as_user()
    if persistent:
        conf += f"persistence true\npersistence_location {directory}/\nautosave_interval 3600\n"
    return conf


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain broker that keeps sessions across its restart, as an operator's broker does
    (without it the consumer's subscription dies with the broker and what the uplink
    publishes before the consumer reconnects is dropped)."""
    broker = make_broker(
        tmp_path,
        extra_conf=f"{as_user()}persistence true\npersistence_location {tmp_path}/\n"
        "autosave_interval 3600\n",
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    broker = make_broker(tmp_path, extra_conf=tls_conf(pki, tmp_path, persistent=True))
    broker.start()
    yield broker
    broker.stop()


class Subscriber:
    """An operator-side consumer with a persistent session, collecting every message."""

    def __init__(self, port: int, pki: Pki | None, topic: str = f"evgw/{STATION}/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="operator-consumer",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
        )
        if pki is not None:
            self.client.tls_set(
                ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key)
            )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.retain))

    def batches(self) -> list[dict[str, Any]]:
        with self.lock:
            items = list(self.messages)
        return [
            json.loads(p)
            for t, p, _ in items
            if not t.endswith("/status") and "/reply/" not in t and "/cmd/" not in t
        ]

    def records(self) -> list[dict[str, Any]]:
        return [r for b in self.batches() for r in b["records"]]

    def last(self, suffix: str) -> bytes | None:
        with self.lock:
            found = [p for t, p, _ in self.messages if t.endswith(suffix)]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings(port: int, pki: Pki | None, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "brokers": (f"127.0.0.1:{port}",),
        "station_id": STATION,
        "client_id": "gw-test-ST0001",
        "topic_prefix": "evgw",
        "tls": pki is not None,
        "reconnect_min_s": 1,
        "reconnect_max_s": 1,
        "poll_s": 0.05,
    }
    if pki is not None:
        values.update(ca_file=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    values.update(overrides)
    return MqttSettings(**values)


async def until(predicate: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def cursor_at(ledger: Ledger, seq: int, uplink: str = "mqtt") -> None:
    async def done() -> bool:
        return await ledger.cursor(uplink) >= seq

    await until(done, f"cursor {uplink} at {seq}")


def mixed(i: int) -> Any:
    connector = f"C{i % 3 + 1}"
    if i % 4 == 0:
        return record("bms_process", bms_body(soc=i % 100), connector, offset_s=i)
    return status_record(status=3, connector=connector, offset_s=i, energy=i / 100)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_delivery_over_tls_with_checkpoint_and_status(
    tls_broker: Broker,
    pki: Pki,
    ledger: Ledger,
    gateway_key: GatewayKey,
    running: list[asyncio.Task[None]],
    protocol: str,
) -> None:
    sub = Subscriber(tls_broker.port, pki)
    try:
        for i in range(120):
            await ledger.append(mixed(i))
        uplink = MqttUplink(
            settings(tls_broker.port, pki, protocol=protocol, batch_size=50), ledger
        )
        running.append(asyncio.create_task(uplink.run()))
        await cursor_at(ledger, 120)

        async def all_arrived() -> bool:
            return len(sub.records()) >= 120

        await until(all_arrived, "120 records at the consumer")
        batches = sub.batches()
        assert {b["kind"] for b in batches} == {"bms_process", "connector_status"}
        assert sorted(r["seq"] for r in sub.records()) == list(range(1, 121))
        key = PublicKey.from_text(gateway_key.public_pem, "gateway key")
        for b in batches:
            cp = Checkpoint(**b["checkpoint"])
            assert cp.seq >= b["last_seq"] and checkpoint_signature_ok(cp, key)
            assert [r["seq"] for r in b["records"]] == sorted(r["seq"] for r in b["records"])
            assert all(r["kind"] == b["kind"] for r in b["records"])
        assert sub.last("/status") == b"online"

        async def counted() -> bool:
            return uplink.stats.acked == 120

        await until(counted, "the stats to count the last acknowledgement")
        assert (uplink.stats.sent, uplink.stats.acked, uplink.stats.backlog) == (120, 120, 0)
        running.pop().cancel()
        await asyncio.sleep(0)

        async def offline() -> bool:
            return sub.last("/status") == b"offline"

        await until(offline, "status offline after a clean stop")
    finally:
        sub.close()


async def test_hostname_and_chain_are_verified(
    tls_broker: Broker, pki: Pki, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    await ledger.append(mixed(1))
    uplink = MqttUplink(settings(tls_broker.port, pki, ca_file=pki.other_ca), ledger)
    running.append(asyncio.create_task(uplink.run()))

    async def failed() -> bool:
        return uplink.stats.last_error is not None

    await until(failed, "a TLS failure")
    assert "cannot connect" in (uplink.stats.last_error or "")
    assert not uplink.stats.connected and await ledger.cursor("mqtt") == 0


async def test_brokers_tried_in_turn_with_password(
    tmp_path: Path, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    import subprocess

    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "gw", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    broker = make_broker(tmp_path, extra_conf=f"password_file {passwd}\n{as_user()}")
    broker.conf.write_text(
        broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    )
    broker.start()
    try:
        for i in range(10):
            await ledger.append(mixed(i))
        dead = free_port()
        conf = settings(
            broker.port,
            None,
            brokers=(f"127.0.0.1:{dead}", f"127.0.0.1:{broker.port}"),
            username="gw",
            password="s3cret",
        )
        uplink = MqttUplink(conf, ledger)
        running.append(asyncio.create_task(uplink.run()))
        await cursor_at(ledger, 10)
        assert uplink.stats.connected
    finally:
        broker.stop()


async def test_acl_refusal_holds_the_cursor_and_reads_no_further(
    tmp_path: Path, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    """The broker refuses the record topics (ACL): whether it answers with an error PUBACK
    (MQTT 5) or drops the connection (what mosquitto 2.0 does), the cursor stays and the
    uplink backs off; once the ACL allows the topics (mosquitto reloads it on SIGHUP)
    everything goes out, in order."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite evgw/{STATION}/status\n")
    broker = make_broker(tmp_path, extra_conf=f"acl_file {acl}\n{as_user()}")
    broker.start()
    try:
        for i in range(30):
            await ledger.append(mixed(i))
        uplink = MqttUplink(
            settings(broker.port, None, batch_size=10, records_per_message=10), ledger
        )
        running.append(asyncio.create_task(uplink.run()))

        async def refused_twice() -> bool:
            return uplink.stats.retries >= 2

        await until(refused_twice, "two refusals")
        assert await ledger.cursor("mqtt") == 0
        error = uplink.stats.last_error or ""
        assert "check the topic ACL" in error or "disconnected" in error, error
        assert uplink.stats.acked == 0
        sub = Subscriber(broker.port, None)
        try:
            acl.write_text(f"topic readwrite evgw/{STATION}/#\n")
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)
            await cursor_at(ledger, 30)

            async def all_arrived() -> bool:
                return len({r["seq"] for r in sub.records()}) >= 30

            await until(all_arrived, "30 records at the consumer")
            assert sorted({r["seq"] for r in sub.records()}) == list(range(1, 31))
        finally:
            sub.close()
    finally:
        broker.stop()


async def test_broker_restart_mid_stream_loses_nothing(
    tls_broker: Broker, pki: Pki, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    sub = Subscriber(tls_broker.port, pki)
    try:
        uplink = MqttUplink(
            settings(
                tls_broker.port, pki, batch_size=200, records_per_message=50, inflight_window=4
            ),
            ledger,
        )
        running.append(asyncio.create_task(uplink.run()))
        total = 6000

        async def produce() -> None:
            for i in range(total):
                ledger.append_nowait(mixed(i))
                if i % 500 == 0:
                    await asyncio.sleep(0.01)
            await ledger.flush()

        producer = asyncio.create_task(produce())
        await cursor_at(ledger, 1000)
        await asyncio.to_thread(tls_broker.restart)  # SIGTERM: mosquitto saves its queues
        await cursor_at(ledger, 3000)
        await asyncio.to_thread(tls_broker.restart)
        await producer
        await cursor_at(ledger, total)

        async def all_arrived() -> bool:
            return len({r["seq"] for r in sub.records()}) >= total

        await until(all_arrived, f"{total} records at the consumer")
        received = sub.records()
        assert sorted({r["seq"] for r in received}) == list(range(1, total + 1))
        first_seen: dict[tuple[str, str], list[int]] = {}
        seen: set[int] = set()
        for r in received:
            if r["seq"] not in seen:
                seen.add(r["seq"])
                first_seen.setdefault((r["connector_id"], r["kind"]), []).append(r["seq"])
        for seqs in first_seen.values():
            assert seqs == sorted(seqs)
        assert uplink.connects >= 3 and uplink.stats.retries >= 2
    finally:
        sub.close()


async def test_outage_backlog_of_100000_drained_in_order(
    persistent_broker: Broker, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    total = 100_000
    sub = Subscriber(persistent_broker.port, None)
    try:
        await asyncio.sleep(0.2)  # the consumer's persistent subscription is in place
        await asyncio.to_thread(persistent_broker.stop)  # the outage starts
        conf = settings(persistent_broker.port, None, batch_size=5000, records_per_message=1000)
        uplink = MqttUplink(conf, ledger)
        running.append(asyncio.create_task(uplink.run()))
        for i in range(total):
            ledger.append_nowait(
                status_record(status=3, connector=f"C{i % 4}", offset_s=i, energy=i / 1000)
            )
        await ledger.flush()
        assert await ledger.cursor("mqtt") == 0 and not uplink.stats.connected
        await asyncio.to_thread(persistent_broker.start)  # the outage ends
        await cursor_at(ledger, total)

        async def all_arrived() -> bool:
            return len(sub.records()) >= total

        await until(all_arrived, f"{total} records at the consumer")
        seqs = [r["seq"] for r in sub.records()]
        assert seqs == list(range(1, total + 1))  # one kind, one topic: strictly in order

        async def counted() -> bool:
            return uplink.stats.acked == total and uplink.stats.backlog == 0

        await until(counted, "the stats to count every acknowledgement")
    finally:
        sub.close()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        MqttSettings(brokers=("nohost",), station_id="S", client_id="c")
    with pytest.raises(ValueError, match="at least one"):
        MqttSettings(brokers=(), station_id="S", client_id="c")
    s = MqttSettings(
        brokers=("[::1]:1883", "b:8883"), station_id="S", client_id="c", topic_prefix="op"
    )
    assert s.address(0) == ("::1", 1883) and s.address(3) == ("b", 8883)
    assert s.topic("alarm") == "op/S/alarm"


def test_stored_record_round_trips_through_the_payload() -> None:
    from agent.uplink.mqtt.uplink import encode_message

    rec = StoredRecord(
        kind="event",
        ts=iso_ts(0),
        station_id="S",
        body={"event": "x"},
        seq=1,
        id="g:1",
        prev="0" * 64,
        hash="1" * 64,
    )
    cp = Checkpoint(gateway_id="g", seq=1, hash="1" * 64, ts=iso_ts(0), key_id="k", sig="s")
    decoded = json.loads(encode_message([rec], cp, "event"))
    assert (
        decoded["v"] == 1
        and decoded["records"][0]["id"] == "g:1"
        and decoded["checkpoint"]["seq"] == 1
    )


async def test_read_ahead_closes_only_after_a_cancelled_read(ledger: Ledger) -> None:
    """A cancelled `read_after()` leaves its read running on the reader thread; the next
    reads and closing the ledger then must not pull the connection from under it (that
    crashed the process with a segfault when the read-ahead had a connection of its own)."""
    for i in range(3000):
        ledger.append_nowait(mixed(i))
    await ledger.flush()
    for _ in range(20):
        task = asyncio.create_task(ledger.read_after(0, 3000, uplink="mqtt"))
        await asyncio.sleep(0.001)  # the read is running on the reader's thread
        task.cancel()
    records = await ledger.read_after(0, 3000, uplink="mqtt")
    assert [r.seq for r in records] == list(range(1, 3001))


async def test_verify_hostname_off_still_verifies_the_chain(
    tls_broker: Broker, pki: Pki, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    """`verify_hostname = false` skips the host-name check only: a broker whose certificate
    no trusted CA signed is still refused."""
    await ledger.append(mixed(1))
    conf = settings(tls_broker.port, pki, ca_file=pki.other_ca, verify_hostname=False)
    uplink = MqttUplink(conf, ledger)
    running.append(asyncio.create_task(uplink.run()))

    async def failed() -> bool:
        return uplink.stats.last_error is not None

    await until(failed, "a TLS failure")
    assert not uplink.stats.connected and await ledger.cursor("mqtt") == 0


async def test_verify_hostname_off_connects_with_the_right_ca(
    tls_broker: Broker, pki: Pki, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    await ledger.append(mixed(1))
    uplink = MqttUplink(settings(tls_broker.port, pki, verify_hostname=False), ledger)
    running.append(asyncio.create_task(uplink.run()))
    await cursor_at(ledger, 1)
    assert uplink.stats.connected
