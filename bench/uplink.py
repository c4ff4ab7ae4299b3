"""Uplink benchmark.

1. MQTT: drain a backlog of N records from the ledger to a local mosquitto at QoS 1 with
   the MQTT uplink (batches + checkpoint, cursor on PUBACK), against raw paho publishing one
   record per message at QoS 1 in the same run. Goal: ≥ 5× raw paho.
2. T/CEC: notifications per second from the ledger to the local test receiver
   (sim/platform.py) with the T/CEC uplink (read, map, seal, four lanes, acknowledge), against
   a bare client in the same run: the same notifications, mapped beforehand, sealed and posted
   by four workers on one keep-alive connection pool with no ledger — the limit of the
   receiver and the codec. Goals: ≥ 300/s, and ≥ 0.5 of the bare client.

Run: .venv/bin/python bench/uplink.py [--records 100000] [--cec-records 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import ConnectorStatusBody, body_to_dict
from agent.records.envelope import Record, StoredRecord, iso_ts
from agent.uplink.cec.codec import (
    RECORD_ID_HEADER,
    CecSecrets,
    SeqGenerator,
    encode_business,
    envelope_bytes,
    open_response,
    parse_envelope,
    seal_request,
)
from agent.uplink.cec.mapping import MappingContext, notification_for
from agent.uplink.cec.uplink import CecSettings, CecUplink
from agent.uplink.mqtt.settings import MqttSettings
from agent.uplink.mqtt.uplink import MqttUplink
from sim.platform import PlatformServer, PlatformSettings
from sim.platform_client import PlatformQueries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.01)
    raise SystemExit("mosquitto did not start")


def status(i: int) -> Record:
    body = ConnectorStatusBody(
        status=3, phase="charging", voltage_v=398.6, current_a=99.5, power_kw=39.7,
        energy_kwh=1234.5 + i / 1000, soc_pct=55, session_id="S1", charge_energy_kwh=i / 1000,
    )  # fmt: skip
    return Record(
        kind="connector_status",
        ts=iso_ts(1_735_700_000 + i),
        station_id="ST0001",
        equipment_id="EQ1",
        connector_id=f"C{i % 4}",
        body=body_to_dict(body),
    )


def raw_paho(port: int, payloads: list[bytes], inflight: int) -> float:
    """One record per message, QoS 1; returns seconds until the last PUBACK."""
    done = threading.Event()
    outstanding = threading.Semaphore(20_000)  # paho message ids wrap at 65535
    acked = 0
    lock = threading.Lock()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        outstanding.release()
        with lock:
            acked += 1
            if acked == len(payloads):
                done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-paho-bench")
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    for payload in payloads:
        outstanding.acquire()
        client.publish("bench/raw/connector_status", payload, qos=1)
    done.wait()
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


async def mqtt_bench(directory: Path, n: int) -> tuple[float, float]:
    proc, port = start_mosquitto(directory)
    try:
        ledger = await Ledger.open(
            directory / "mqtt.sqlite", gateway_id="bench", key=GatewayKey.generate()
        )
        for i in range(n):
            ledger.append_nowait(status(i))
        await ledger.flush()
        records = await ledger.read_batch("raw", n)
        encoder = msgspec.json.Encoder()
        payloads = [encoder.encode(r) for r in records]
        raw_s = await asyncio.to_thread(raw_paho, port, payloads, 16)
        settings = MqttSettings(
            brokers=(f"127.0.0.1:{port}",),
            station_id="ST0001",
            client_id="bench-uplink",
            tls=False,
            batch_size=5000,
            records_per_message=1000,
            inflight_window=16,
            poll_s=0.05,
        )
        uplink = MqttUplink(settings, ledger)
        start = time.perf_counter()
        task = asyncio.create_task(uplink.run())
        while await ledger.cursor("mqtt") < n:
            await asyncio.sleep(0.005)
        ours_s = time.perf_counter() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ledger.close()
        return n / ours_s, n / raw_s
    finally:
        proc.terminate()
        proc.wait(5)


SECRETS = CecSecrets("a2164ada0026ccf7", "82c91325e74bef0f", "9af2e7b2d7562ad5")
CEC_OPERATOR, CEC_SECRET, CEC_PLATFORM = "MA01H3BQ2", "opsecret00000001", "MA5DA0053"


def receiver(db: Path) -> PlatformServer:
    settings = PlatformSettings(operators={CEC_OPERATOR: CEC_SECRET}, secrets=SECRETS, db_path=db)
    return PlatformServer(settings).start()


async def bare_cec(directory: Path, n: int, workers: int = 4) -> float:
    """The peer: the same notifications, mapped before the clock starts, sealed and posted
    by ``workers`` concurrent requests on one keep-alive pool; no ledger, no acks."""
    ctx = MappingContext(CEC_OPERATOR, CEC_PLATFORM, "bench")
    stored = [
        StoredRecord(**msgspec.structs.asdict(status(i)), seq=i + 1, prev="", hash="", id=str(i))
        for i in range(n)
    ]
    notes = [note for r in stored if (note := notification_for(r, ctx)) is not None]
    server = receiver(directory / "bare.sqlite")
    try:
        token_client = PlatformQueries(server.base_url, CEC_OPERATOR, CEC_SECRET, SECRETS)
        await asyncio.to_thread(token_client.fetch_token)
        headers = {
            "Content-Type": "application/json;charset=utf-8",
            "Authorization": f"Bearer {token_client.token}",
        }
        seqs = SeqGenerator()
        queue = list(reversed(notes))
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:

            async def worker() -> None:
                while queue:
                    note = queue.pop()
                    stamp, seq = seqs.next(time.time())
                    body = envelope_bytes(
                        seal_request(
                            encode_business(note.data), operator_id=CEC_OPERATOR,
                            timestamp=stamp, seq=seq, secrets=SECRETS,
                        )
                    )  # fmt: skip
                    record = {RECORD_ID_HEADER: note.record_id or ""}  # as the uplink sends it
                    answer = await client.post(note.interface, content=body, headers=record)
                    opened = open_response(parse_envelope(answer.content), SECRETS)
                    assert opened.ret == 0, opened.msg

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            elapsed = time.perf_counter() - start
        assert len(server.receiver.accepted()) == len(notes)
        return len(notes) / elapsed
    finally:
        server.stop()


async def cec_bench(directory: Path, n: int) -> float:
    secrets = SECRETS
    server = receiver(directory / "p.sqlite")
    try:
        ledger = await Ledger.open(
            directory / "cec.sqlite", gateway_id="bench", key=GatewayKey.generate()
        )
        for i in range(n):
            ledger.append_nowait(status(i))
        await ledger.flush()
        settings = CecSettings(
            base_url=server.base_url,
            operator_id=CEC_OPERATOR,
            platform_operator_id=CEC_PLATFORM,
            operator_secret=CEC_SECRET,
            data_secret=secrets.data_secret,
            data_iv=secrets.data_iv,
            sig_secret=secrets.sig_secret,
            station_id="ST0001",
            station_name="bench",
            batch_size=500,
            lanes_in_parallel=4,
        )
        uplink = CecUplink(settings, ledger)
        start = time.perf_counter()
        async with uplink:
            while await uplink.drain_once():
                pass
        elapsed = time.perf_counter() - start
        assert len(server.receiver.accepted()) == n
        await ledger.close()
        return n / elapsed
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="MQTT backlog size")
    parser.add_argument("--cec-records", type=int, default=3000, help="T/CEC notifications")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours, raw = asyncio.run(mqtt_bench(Path(tmp), args.records))
        cec = asyncio.run(cec_bench(Path(tmp), args.cec_records))
        bare = asyncio.run(bare_cec(Path(tmp), args.cec_records))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"MQTT backlog of {args.records} records, QoS 1, local mosquitto:")
    print(f"  evgw MQTT uplink (batches + checkpoint): {ours:10.0f} records/s")
    print(f"  raw paho, one record per message:        {raw:10.0f} records/s")
    print(f"  ratio: {ours / raw:.1f}x (goal >= 5x)")
    print(f"T/CEC notifications to the local receiver ({args.cec_records}, connection reuse):")
    print(f"  evgw T/CEC uplink (ledger, map, seal, lanes, acks): {cec:6.0f} notifications/s")
    print(f"  bare client (sealed posts, no ledger):               {bare:6.0f} notifications/s")
    print(f"  ratio: {cec / bare:.2f} of the bare client (goals: >= 300/s, >= 0.5)")
    print(f"peak RSS: {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
