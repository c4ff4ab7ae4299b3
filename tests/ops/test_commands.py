"""Richer MQTT commands against a running gateway (real mosquitto, simulated station):
`status` with the station's connectors and meters, paginated `query`, `config.get`, replies
signed by the gateway key, one platform key per role, per-command rate limits."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import GatewayKey
from agent.records.envelope import canonical_json
from tests.e2e.helpers import STATION_ID, TOPIC_PREFIX, Rig, build_rig, ledger_records, wait_until
from tests.ops.platform import CommandClient, PlatformKey

READ, OPERATE = PlatformKey(), PlatformKey()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    rig = build_rig(tmp_path / "rig", 1)
    read = READ.save_public(rig.directory / "read.pub")
    operate = OPERATE.save_public(rig.directory / "operate.pub")
    keys = f'command_keys = {{read = "{read}", operate = "{operate}"}}\n'
    rig.config.write_text(
        rig.config.read_text().replace("[uplinks.mqtt]\n", f"[uplinks.mqtt]\n{keys}", 1)
    )
    monkeypatch.setenv("EVGW_CONFIG", str(rig.config))  # as the unit sets it
    try:
        rig.agent.start()
        rig.agent.wait_ready(rig.connectors)
        yield rig
    finally:
        rig.close()


@pytest.fixture
def client(rig: Rig) -> Iterator[CommandClient]:
    client = CommandClient(rig.broker.port, f"{TOPIC_PREFIX}/{STATION_ID}")
    yield client
    client.close()


class Asker:
    def __init__(self, client: CommandClient) -> None:
        self.client = client
        self.n = 0

    def __call__(
        self, key: PlatformKey, name: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.n += 1
        cid = f"{name}-{self.n}"
        return self.client.ask(name, key.command(STATION_ID, name, cid, args or {}), cid)


def assert_signed_by_gateway(reply: dict[str, Any], rig: Rig) -> None:
    public = GatewayKey.load(rig.directory / "gateway.key").public
    body = {k: v for k, v in reply.items() if k not in ("sig", "topic")}
    assert reply["key_id"] == public.fingerprint
    assert public.verify(base64.b64decode(reply["sig"]), canonical_json(body))
    forged = {**body, "ok": not body["ok"]}
    assert not public.verify(base64.b64decode(reply["sig"]), canonical_json(forged))


def test_status_query_and_config_get(rig: Rig, client: CommandClient) -> None:
    ask = Asker(client)
    wait_until(
        lambda: sum(r["kind"] == "meter_sample" for r in ledger_records(rig.ledger_path)) >= 3,
        60,
        "three meter_sample records",
    )
    reply = ask(READ, "status")
    assert reply["ok"] is True, reply
    assert_signed_by_gateway(reply, rig)
    station = reply["result"]["station"]
    (connector,) = station["connectors"]
    assert (
        connector["connector"] == rig.connectors[0]
        and "status" in connector
        and "alarms" in connector
    )
    assert "dc-01" in station["meters"] and rig.connectors[0] in station["can_buses"]
    assert station["station_alarms"] == []  # the station's own alarms (site inputs, main meter)

    # query: a page at a time, bounded
    first = ask(READ, "query", {"kind": "meter_sample", "limit": 2})
    assert first["ok"] is True, first
    page = first["result"]
    assert page["count"] == 2 and all(r["kind"] == "meter_sample" for r in page["records"])
    seqs = [r["seq"] for r in page["records"]]
    assert page["next_from_seq"] == seqs[-1] + 1
    second = ask(
        READ, "query", {"kind": "meter_sample", "from_seq": page["next_from_seq"], "limit": 1}
    )
    assert second["result"]["records"][0]["seq"] > seqs[-1]
    bounded = ask(READ, "query", {"kind": "meter_sample", "to_seq": seqs[0]})
    assert [r["seq"] for r in bounded["result"]["records"]] == [seqs[0]]
    assert bounded["result"]["next_from_seq"] is None
    # a time range: only the second record's time
    ts = second["result"]["records"][0]["ts"]
    timed = ask(READ, "query", {"kind": "meter_sample", "from_ts": ts, "to_ts": ts, "limit": 1000})
    assert [r["ts"] for r in timed["result"]["records"]] == [ts]
    bad_ts = ask(READ, "query", {"kind": "meter_sample", "from_ts": "yesterday"})
    assert bad_ts["ok"] is False and "bad time range" in bad_ts["error"]
    too_many = ask(READ, "query", {"kind": "event", "limit": 5000})
    assert too_many["ok"] is False and "limit 5000 outside 1..1000" in too_many["error"]
    assert_signed_by_gateway(too_many, rig)  # refusals are signed too

    got = ask(READ, "config.get")
    assert got["ok"] is True
    assert got["result"]["sha256"] == hashlib.sha256(rig.config.read_bytes()).hexdigest()
    assert got["result"]["toml"] == rig.config.read_text()


def test_roles_and_rate_limits(rig: Rig, client: CommandClient) -> None:
    ask = Asker(client)
    refused = ask(READ, "resend", {"from_seq": 1, "limit": 1})
    assert refused["ok"] is False
    assert (
        refused["error"] == "resend needs the operate role; this command is signed by the read key"
    )
    allowed = ask(OPERATE, "resend", {"from_seq": 1, "limit": 1})
    assert allowed["ok"] is True and allowed["result"]["count"] == 1
    forged = ask(PlatformKey(), "status")
    assert (
        forged["ok"] is False and "not signed by the platform's configured key" in forged["error"]
    )
    replies = [ask(READ, "config.get") for _ in range(11)]
    assert all(r["ok"] for r in replies[:10])
    assert (
        replies[10]["ok"] is False and "rate limit: at most 10 config.get" in replies[10]["error"]
    )
    # each refusal is also an event in the ledger (the first of each command name a minute)
    refused_events = wait_until(
        lambda: [
            r["body"]
            for r in ledger_records(rig.ledger_path)
            if r["kind"] == "event" and r["body"]["event"] == "mqtt_command_refused"
        ],
        30,
        "the refusal events",
    )
    reasons = {e["details"]["command"]: e["details"]["reason"] for e in refused_events}
    assert "needs the operate role" in reasons["resend"]
    assert "not signed by the platform's configured key" in reasons["status"]
    # other commands are not limited by it, and the service runs on
    assert ask(READ, "query", {"kind": "event"})["ok"] is True
    assert rig.agent.proc is not None and rig.agent.proc.poll() is None
