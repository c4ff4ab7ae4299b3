"""``evgw check`` for the MQTT uplink: each broker reached and a QoS 1 test publish."""

from __future__ import annotations

import contextlib
import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.commission.results import CheckResult, fail, ok
from agent.uplink.mqtt.settings import MqttSettings


def check_broker(s: MqttSettings, timeout_s: float = 5.0) -> list[CheckResult]:
    """Connect to each broker in turn and publish one QoS 1 message to ``<base>/check``."""
    results = []
    for index, address in enumerate(s.brokers):
        host, port = s.address(index)
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{s.client_id}-check",
            protocol=MQTTProtocolVersion.MQTTv5
            if s.protocol == "5"
            else MQTTProtocolVersion.MQTTv311,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        name = f"MQTT {address}"
        try:
            if s.tls:
                client.tls_set(
                    ca_certs=str(s.ca_file) if s.ca_file else None,
                    certfile=str(s.client_cert) if s.client_cert else None,
                    keyfile=str(s.client_key) if s.client_key else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
                client.tls_insecure_set(not s.verify_hostname)
            client.connect(host, port, keepalive=10)
            client.loop_start()
            info = client.publish(f"{s.base_topic}/check", b"evgw check", qos=1)
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise TimeoutError(f"no PUBACK within {timeout_s:.0f} s")
            results.append(ok(name, f"connected and published to {s.base_topic}/check (QoS 1)"))
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if "certificate" in text.lower() or "ssl" in text.lower():
                hint = "TLS failed: check ca_file, the broker's host name and the client cert"
            elif "not authori" in text.lower() or "bad user" in text.lower():
                hint = (
                    "the broker refused the login: check [mqtt] username/password in secrets.toml"
                )
            else:
                hint = "cannot reach the broker: address, port, firewall, DNS"
            results.append(fail(name, text, hint))
        finally:
            client.loop_stop()
            with contextlib.suppress(Exception):
                client.disconnect()
    return results
