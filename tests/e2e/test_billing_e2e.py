"""End to end, the billing audit (#13 item 3): a real ``evgw run`` charges one session, the
operator sends a signed ``billed`` command through a real mosquitto with more energy than was
metered, and the embedded T/CEC receiver gets alarm 9008 as the configured carrier (an
EventInfo 7002 with both figures in its note); a signed ``tariff`` command pushes a version
that ``evgw status`` then shows in force."""

from __future__ import annotations

import base64
import datetime as dt
import json
import queue
import time
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from agent.records.envelope import iso_ts
from agent.uplink.mqtt.commands import command_payload
from sim.charging import VehicleProfile
from sim.station import SessionPlan
from tests.e2e.helpers import (
    STATION_ID,
    TOPIC_PREFIX,
    Rig,
    ledger_records,
    orders,
    run_cli,
    wait_until,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def with_command_key(rig: Rig) -> ec.EllipticCurvePrivateKey:
    """The operator platform's key, its public half named by the agent's config."""
    key = ec.generate_private_key(ec.SECP256R1())
    pub = rig.directory / "platform.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    text = rig.config.read_text("utf-8")
    text = text.replace("tls = false\n", f'tls = false\ncommand_pubkey_file = "{pub}"\n', 1)
    rig.config.write_text(text, "utf-8")
    return key


def signed(key: ec.EllipticCurvePrivateKey, name: str, cid: str, args: dict[str, Any]) -> bytes:
    stamp = iso_ts(time.time())
    sig = key.sign(command_payload(STATION_ID, name, cid, stamp, args), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {"id": cid, "ts": stamp, "args": args, "sig": base64.b64encode(sig).decode()}
    ).encode()


class Operator:
    """The operator's billing system on the broker: sends commands, collects the replies."""

    def __init__(self, port: int) -> None:
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="e2e-operator")
        self.client.on_message = lambda _c, _u, m: self.replies.put(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{TOPIC_PREFIX}/{STATION_ID}/reply/#", qos=1)
        self.client.loop_start()

    def send(self, name: str, payload: bytes) -> dict[str, Any]:
        self.client.publish(f"{TOPIC_PREFIX}/{STATION_ID}/cmd/{name}", payload, qos=1)
        return self.replies.get(timeout=30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_wrong_billed_figure_reaches_the_city_platform(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(1)
    key = with_command_key(rig)
    monkeypatch.setenv("EVGW_CONFIG", str(rig.config))  # the config the commands read
    rig.agent.start()
    rig.agent.wait_ready(rig.connectors)
    plan = SessionPlan(
        VehicleProfile(vin="LE2EBILL000000001", max_current_a=120.0, soc_start_pct=40.0),
        charge_s=5.0,
        idle_before_s=1.0,
    )
    rig.station.play({rig.connectors[0]: [plan]})
    rig.station.wait(timeout_s=60)
    wait_until(lambda: len(orders(ledger_records(rig.ledger_path))) == 1, 40, "the order")
    (order,) = orders(ledger_records(rig.ledger_path))
    metered = Decimal(repr(order["body"]["energy_kwh"]))
    billed = metered + Decimal("1.000")
    operator = Operator(rig.broker.port)
    try:
        args = {
            "session_id": order["body"]["session_id"],
            "billed_kwh": str(billed),
            "billed_yuan": order["body"]["total_money_yuan"],  # the record's exact text
        }
        reply = operator.send("billed", signed(key, "billed", "bill-1", args))
        assert reply["ok"] is True, reply
        assert reply["result"]["energy_agrees"] is False and reply["result"]["money_agrees"]
        unknown = operator.send(
            "billed", signed(key, "billed", "bill-2", {**args, "session_id": "C9-0"})
        )
        assert unknown["ok"] is False and "no order for session 'C9-0'" in unknown["error"]
        # a tariff version from two seconds on: kept, and `evgw status` shows it in force
        since = dt.datetime.now(SHANGHAI).replace(microsecond=0) + dt.timedelta(seconds=2)
        entry = {"id": "std", "valid_from": f"{since:%Y-%m-%d %H:%M:%S}", "periods": [
            {"start": "00:00", "type": "flat", "elec_price": 0.7, "service_price": 0.8}]}  # fmt: skip
        pushed = operator.send("tariff", signed(key, "tariff", "tariff-1", {"tariff": entry}))
        assert pushed["ok"] is True, pushed
    finally:
        operator.close()
    time.sleep(max(0.0, since.timestamp() - time.time()) + 0.5)
    status = json.loads(run_cli("status", "--json", "--config", str(rig.config)).stdout)
    assert [c["tariff"] for c in status["connectors"]] == [
        f"std flat 0.7+0.8 (from {since:%Y-%m-%d %H:%M:%S})"
    ]

    def carried() -> list[dict[str, Any]]:
        return [
            info
            for a in rig.platform.receiver.accepted()
            if a["interface"] == "notification_eventInfo"
            for info in a["data"]["EventInfos"]
            if info["NoteString"].startswith("9008 raised")
        ]

    wait_until(lambda: bool(carried()), 30, "alarm 9008 at the T/CEC receiver")
    (event,) = carried()
    assert (event["EventType"], event["EventCode"]) == (6, 7002)
    assert f"metered {metered} kWh, billed {billed} kWh" in event["NoteString"]
    audit = [
        r for r in ledger_records(rig.ledger_path) if r["body"].get("event") == "billed_checked"
    ]
    assert len(audit) == 1 and audit[0]["body"]["details"]["billed_kwh"] == str(billed)
    assert rig.agent.terminate() == 0
