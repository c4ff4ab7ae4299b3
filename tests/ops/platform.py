"""The operator's platform as the command tests play it: its own signing keys (one per role)
and an MQTT client that sends signed commands and waits for their replies."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.records.envelope import iso_ts
from agent.uplink.mqtt.commands import command_payload


class PlatformKey:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def save_public(self, path: Path) -> Path:
        path.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return path

    def command(self, station: str, name: str, cid: str, args: dict[str, Any]) -> bytes:
        stamp = iso_ts(time.time())
        data = command_payload(station, name, cid, stamp, args)
        sig = base64.b64encode(self.key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
        return json.dumps({"id": cid, "ts": stamp, "args": args, "sig": sig}).encode()


class CommandClient:
    """Publishes commands to ``{base}/cmd/<name>`` and collects ``{base}/reply/#``."""

    def __init__(self, port: int, base: str) -> None:
        self.base = base
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="ops-platform",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(f"{base}/reply/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.replies.put(
            {"topic": m.topic, **json.loads(m.payload)}
        )
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("the platform client did not subscribe")

    def ask(self, name: str, payload: bytes, cid: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Send one command and return its reply (other replies are dropped)."""
        self.client.publish(f"{self.base}/cmd/{name}", payload, qos=1)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to {name} {cid} within {timeout_s:.0f} s")
            try:
                reply = self.replies.get(timeout=left)
            except queue.Empty:
                continue
            if reply.get("id") == cid:
                return reply

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
