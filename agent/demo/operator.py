"""The demo's operator billing system: it consumes the orders the gateway publishes on the
demo's broker and answers each with a signed MQTT ``billed`` command — one session in five
(the first, the sixth …) with 0.80 kWh too many, which raises alarm 9008 on the gateway and
reaches the embedded T/CEC receiver as its carrier (docs/BILLING.md)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from agent.records.envelope import iso_ts
from agent.uplink.mqtt.commands import command_payload

log = logging.getLogger("evgw.demo")

WRONG_EVERY: Final = 5
OVERBILLED_KWH: Final = Decimal("0.80")


class DemoOperator:
    def __init__(self, state_dir: Path, port: int, station_id: str, prefix: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_file = state_dir / "operator.pub"
        self.public_key_file.write_bytes(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._station_id = station_id
        self._base = f"{prefix}/{station_id}"
        self._port = port
        self._lock = threading.Lock()
        self._billed: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        """The figures sent: session id, kWh, yuan, whether deliberately wrong."""
        self.replies: list[dict[str, Any]] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="evgw-demo-operator")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._running = False

    def start(self) -> None:
        self._running = True
        self._client.connect_async("127.0.0.1", self._port)
        self._client.loop_start()

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._client.disconnect()
            self._client.loop_stop()

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        client.subscribe([(f"{self._base}/charge_order", 1), (f"{self._base}/reply/billed", 1)])

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        if message.topic.endswith("/reply/billed"):
            with self._lock:
                self.replies.append(payload)
            return
        for record in payload.get("records", []):
            self._bill(record.get("body", {}))

    def _bill(self, order: dict[str, Any]) -> None:
        session = order.get("session_id")
        with self._lock:
            if not session or session in self._billed:
                return  # a record published again (resend, reconnect) is billed once
            self._billed.add(session)
            wrong = len(self._billed) % WRONG_EVERY == 1
        kwh = Decimal(repr(order.get("energy_kwh", 0.0))) + (OVERBILLED_KWH if wrong else 0)
        yuan = Decimal(str(order.get("total_money_yuan", "0.00"))).quantize(Decimal("0.01"))
        args = {"session_id": session, "billed_kwh": str(kwh), "billed_yuan": str(yuan)}
        command_id = f"demo-bill-{len(self._billed)}"
        stamp = iso_ts(time.time())
        data = command_payload(self._station_id, "billed", command_id, stamp, args)
        sig = base64.b64encode(self._key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
        body = {"id": command_id, "ts": stamp, "args": args, "sig": sig}
        self._client.publish(f"{self._base}/cmd/billed", json.dumps(body), qos=1)
        with self._lock:
            self.sent.append({**args, "wrong": wrong})
        log.info("operator billed %s: %s kWh, %s yuan", session, kwh, yuan)
