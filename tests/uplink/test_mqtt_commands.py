"""The MQTT uplink's signed downlink commands against a real mosquitto: accepted and refused,
without a key, replays refused across a restart, refusal floods logged a few times."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.ledger import Ledger
from agent.records.envelope import iso_ts
from agent.uplink.base import UplinkStats
from agent.uplink.mqtt.commands import command_payload
from agent.uplink.mqtt.uplink import MqttUplink
from tests.conftest import Broker
from tests.uplink.conftest import STATION, bms_body, record
from tests.uplink.test_mqtt_uplink import Subscriber, cursor_at, settings, until


class Platform:
    """Signs commands the way the operator platform does."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def command(
        self, name: str, cid: str, args: dict[str, Any], ts: str | None = None, key: Any = None
    ) -> bytes:
        from cryptography.hazmat.primitives import hashes

        stamp = ts or iso_ts(time.time())
        data = command_payload(STATION, name, cid, stamp, args)
        sig = (key or self.key).sign(data, ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {"id": cid, "ts": stamp, "args": args, "sig": base64.b64encode(sig).decode()}
        ).encode()


async def test_commands_accepted_and_refused(
    broker: Broker, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    platform = Platform()
    for i in range(8):
        await ledger.append(
            record("bms_process", bms_body(session="S-A" if i < 5 else "S-B", soc=i), "C1", i)
        )
    sub = Subscriber(broker.port, None)
    try:
        uplink = MqttUplink(
            settings(broker.port, None, command_public_key_pem=platform.public_pem), ledger
        )
        running.append(asyncio.create_task(uplink.run()))
        await cursor_at(ledger, 8)
        cmd = f"evgw/{STATION}/cmd/"
        other = ec.generate_private_key(ec.SECP256R1())
        old = iso_ts(time.time() - 3600)
        sends = [
            ("status", platform.command("status", "c1", {})),
            ("bms_query", platform.command("bms_query", "c2", {"session_id": "S-A"})),
            ("resend", platform.command("resend", "c3", {"from_seq": 6, "limit": 2})),
            ("status", platform.command("status", "c1", {})),  # replayed id
            ("status", platform.command("status", "c4", {}, key=other)),  # foreign key
            ("status", platform.command("status", "c5", {}, ts=old)),  # too old
            ("resend", platform.command("resend", "c6", {"from_seq": "x"})),  # bad args
            ("reboot", platform.command("reboot", "c7", {})),  # unknown
            ("status", b"{not json"),
        ]
        for name, payload in sends:
            sub.client.publish(cmd + name, payload, qos=1)

        def replies() -> list[dict[str, Any]]:
            with sub.lock:
                return [json.loads(p) for t, p, _ in sub.messages if "/reply/" in t]

        async def answered() -> bool:
            return len(replies()) >= len(sends)

        await until(answered, "a reply to every command")
        by_id = {r["id"]: r for r in replies() if r["id"] is not None and r["ok"]}
        assert (
            by_id["c1"]["result"]["cursor"] == 8 and by_id["c1"]["result"]["uplink"]["acked"] == 8
        )
        bms = by_id["c2"]["result"]
        assert bms["count"] == 5 and [r["body"]["soc_pct"] for r in bms["records"]] == [
            0,
            1,
            2,
            3,
            4,
        ]
        assert by_id["c3"]["result"] == {"from_seq": 6, "to_seq": 7, "count": 2}
        errors = sorted(r["error"] for r in replies() if not r["ok"])
        assert len(errors) == 6
        assert any("already used (replay)" in e for e in errors)
        assert any("not signed by the platform's configured key" in e for e in errors)
        assert any("from the gateway clock" in e for e in errors)
        assert any("bad arguments for resend" in e and "from_seq" in e for e in errors)
        assert any("unknown command 'reboot'" in e for e in errors)
        assert any("not a valid command message" in e for e in errors)

        async def resent() -> bool:
            return [r["seq"] for r in sub.records()].count(6) == 2

        await until(resent, "records 6..7 published again")
        # after the 8 records only the refusals' events (one per command name a minute)
        later = await ledger.read_after(8, 100)
        assert {(r.kind, r.body["event"]) for r in later} == {("event", "mqtt_command_refused")}
        assert len(later) == 3  # status, resend, and the unknown command
    finally:
        sub.close()


async def test_commands_refused_without_a_key(
    broker: Broker, ledger: Ledger, running: list[asyncio.Task[None]]
) -> None:
    sub = Subscriber(broker.port, None)
    try:
        uplink = MqttUplink(settings(broker.port, None), ledger)
        running.append(asyncio.create_task(uplink.run()))

        async def connected() -> bool:
            return uplink.stats.connected

        await until(connected, "connected")
        await asyncio.sleep(0.2)  # the subscription to cmd/# follows the CONNACK
        sub.client.publish(
            f"evgw/{STATION}/cmd/status", Platform().command("status", "x", {}), qos=1
        )

        async def answered() -> bool:
            return sub.last("/reply/status") is not None

        await until(answered, "a reply")
        reply = json.loads(sub.last("/reply/status") or b"{}")
        assert reply["ok"] is False and "no platform public key" in reply["error"]
    finally:
        sub.close()


async def test_command_replay_refused_across_a_restart(tmp_path: Path, ledger: Ledger) -> None:
    """The replay window is durable: a signed command captured and replayed after the
    gateway restarted is refused; a fresh id is still accepted."""
    from agent.uplink.mqtt.commands import CommandHandler

    platform = Platform()
    conf = settings(
        1883,
        None,
        command_public_key_pem=platform.public_pem,
        command_replay_file=tmp_path / "mqtt-commands.seen",
    )
    topic = f"{conf.base_topic}/cmd/status"
    captured = platform.command("status", "c-once", {})

    class NoPublish:
        stats = UplinkStats()

        async def publish_records(self, _records: Any) -> Any:
            raise AssertionError("status publishes nothing")

    first = CommandHandler(conf, ledger, NoPublish(), time.time)  # type: ignore[arg-type]
    reply = await first.handle(topic, captured)
    assert reply is not None and json.loads(reply.payload)["ok"] is True
    restarted = CommandHandler(conf, ledger, NoPublish(), time.time)  # type: ignore[arg-type]
    replayed = await restarted.handle(topic, captured)
    assert replayed is not None
    body = json.loads(replayed.payload)
    assert body["ok"] is False and "already used (replay)" in body["error"]
    fresh = await restarted.handle(topic, platform.command("status", "c-two", {}))
    assert fresh is not None and json.loads(fresh.payload)["ok"] is True
    # a damaged line in the file is skipped, the rest of the window kept
    with open(tmp_path / "mqtt-commands.seen", "ab") as f:
        f.write(b"\xff{not json\n")
    again = CommandHandler(conf, ledger, NoPublish(), time.time)  # type: ignore[arg-type]
    refused = await again.handle(topic, captured)
    assert refused is not None and json.loads(refused.payload)["ok"] is False


async def test_a_flood_of_refused_commands_logs_a_few_lines(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.uplink.mqtt.commands import CommandHandler

    conf = settings(1883, None, command_public_key_pem=Platform().public_pem)
    handler = CommandHandler(conf, ledger, None, time.time)  # type: ignore[arg-type]
    unsigned = json.dumps({"id": "x", "ts": iso_ts(time.time()), "sig": "AAAA"}).encode()
    with caplog.at_level(logging.WARNING, logger="agent.uplink.mqtt.commands"):
        for i in range(5000):
            await handler.handle(
                f"{conf.base_topic}/cmd/status", unsigned.replace(b'"x"', f'"x{i}"'.encode())
            )
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert handler.refused == 5000
    assert 1 <= len(lines) <= 2
