"""The MQTT uplink: ledger records → the operator's broker (paho-mqtt 2, QoS 1).

Each read batch (after the ``mqtt`` cursor) is published as one message per record kind on
``{prefix}/{station_id}/{kind}``; every message carries its records (seq order) and the
signed ledger checkpoint that covers them, so a consumer can verify the chain. The cursor
advances only when every message of the batch got its PUBACK. Unacknowledged messages stay
in paho's session queue and are resent after a reconnect (clean start off, stable client
id), so a broker restart loses nothing; the consumer dedupes on the record ``id``.

Connection: TLS (CA, client certificate, hostname verification on by default), username and
password, MQTT 3.1.1 or 5, a list of brokers tried in turn, last will
``{prefix}/{station_id}/status`` = ``offline`` (retained) and ``online`` on connect.

Downlink: signed commands on ``{prefix}/{station_id}/cmd/<name>`` (``bms_query``,
``resend``, ``status``), replies on ``{prefix}/{station_id}/reply/<name>``; see
:mod:`agent.uplink.mqtt.commands`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.records.envelope import StoredRecord
from agent.uplink.base import UplinkStats
from agent.uplink.mqtt.commands import CommandHandler
from agent.uplink.mqtt.settings import MqttSettings
from agent.uplink.retry import Backoff, RetryState

if TYPE_CHECKING:
    from agent.ledger import Checkpoint, Ledger

log = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
_JSON = msgspec.json.Encoder()


@dataclass(slots=True)
class _Batch:
    """Messages of one ledger batch (or one resend) waiting for their PUBACKs."""

    last_seq: int
    count: int
    waiting: set[int] = field(default_factory=set)
    refused: str | None = None


def encode_message(records: list[StoredRecord], checkpoint: Checkpoint, kind: str) -> bytes:
    """The versioned message format (see docs/UPLINKS.md)."""
    return _JSON.encode(
        {
            "v": PAYLOAD_VERSION,
            "kind": kind,
            "first_seq": records[0].seq,
            "last_seq": records[-1].seq,
            "records": records,
            "checkpoint": checkpoint,
        }
    )


class MqttUplink:
    """The MQTT client loop; ``run()`` until cancelled, ``stats`` for status/metrics."""

    def __init__(
        self,
        settings: MqttSettings,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.name = settings.uplink_name
        self.stats = UplinkStats()
        self._ledger = ledger
        self._clock = clock
        self._commands = CommandHandler(settings, ledger, self, clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._connected = asyncio.Event()
        self._window = asyncio.Condition()
        self._inflight: dict[int, _Batch] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._broker_index = 0
        self._stopping = False
        self.connects = 0

    def status(self) -> dict[str, Any]:
        """Counters plus the broker this uplink talks to (or tries next)."""
        broker = self.settings.brokers[self._broker_index % len(self.settings.brokers)]
        return {**self.stats.as_dict(), "broker": broker}

    # -- paho client --------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            ctx = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.client_cert is not None:
                ctx.load_cert_chain(str(s.client_cert), str(s.client_key) if s.client_key else None)
            ctx.check_hostname = s.verify_hostname  # the chain is verified either way
            client.tls_set_context(ctx)
            client.tls_insecure_set(not s.verify_hostname)
        client.will_set(f"{s.base_topic}/status", b"offline", qos=1, retain=True)
        client.max_inflight_messages_set(s.inflight_window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(int(max(1, s.reconnect_min_s)), int(max(1, s.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self.settings.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        return props

    def _connect_to(self, client: paho.Client, index: int) -> None:
        host, port = self.settings.address(index)
        v5 = self.settings.protocol == "5"
        client.connect_async(
            host,
            port,
            keepalive=self.settings.keepalive_s,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )

    def _next_broker(self, client: paho.Client) -> None:
        """Point paho at the next broker of the list for its next reconnect attempt.

        Runs in paho's network thread (from a callback), where re-targeting is safe; paho's
        queued messages are kept and resent after the reconnect.
        """
        if self._stopping or len(self.settings.brokers) < 2:
            return
        self._broker_index += 1
        self._connect_to(client, self._broker_index)
        log.info(
            "MQTT: next broker %s",
            self.settings.brokers[self._broker_index % len(self.settings.brokers)],
        )

    def _threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    # paho callbacks (paho's network thread) -> the asyncio loop

    def _on_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self._threadsafe(self._set_error, f"broker refused the connection: {reason}")
            return
        base = self.settings.base_topic
        client.publish(f"{base}/status", b"online", qos=1, retain=True)
        client.subscribe(f"{base}/cmd/#", qos=1)
        self._threadsafe(
            self._connected_changed, True, bool(getattr(flags, "session_present", False))
        )

    def _on_connect_fail(self, client: paho.Client, _u: Any) -> None:
        self._threadsafe(self._set_error, f"cannot connect to {client.host}:{client.port}")
        self._next_broker(client)

    def _on_disconnect(
        self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._threadsafe(self._connected_changed, False, False)
        if self._stopping:
            return
        if reason.is_failure:
            self._threadsafe(self._set_error, f"disconnected: {reason}")
        self._next_broker(client)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._threadsafe(self._puback, mid, reason.is_failure, str(reason))

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self._threadsafe(self._command, message.topic, bytes(message.payload))

    # -- loop side --------------------------------------------------------------------------

    def _set_error(self, message: str) -> None:
        log.warning("MQTT: %s", message)
        self.stats.error(message, self._clock())

    def _connected_changed(self, connected: bool, session_present: bool) -> None:
        self.stats.connected = connected
        if connected:
            self.connects += 1
            if self.connects > 1:
                self.stats.retries += 1
            log.info("MQTT connected (session present: %s)", session_present)
            self._connected.set()
        else:
            self._connected.clear()

    def _puback(self, mid: int, failed: bool, reason: str) -> None:
        batch = self._inflight.pop(mid, None)
        if batch is None:
            return  # a status message or a command reply
        if failed:
            batch.refused = reason
        batch.waiting.discard(mid)
        self._window_changed()

    def _window_changed(self) -> None:
        async def notify() -> None:
            async with self._window:
                self._window.notify_all()

        self._tasks.add(task := asyncio.ensure_future(notify()))
        task.add_done_callback(self._tasks.discard)

    def _command(self, topic: str, payload: bytes) -> None:
        self._tasks.add(task := asyncio.ensure_future(self._run_command(topic, payload)))
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, topic: str, payload: bytes) -> None:
        reply = await self._commands.handle(topic, payload)
        if reply is not None and self._client is not None:
            self._client.publish(reply.topic, reply.payload, qos=1)

    # -- publishing -------------------------------------------------------------------------

    async def publish_records(self, records: list[StoredRecord]) -> _Batch:
        """Publish ``records`` (one message per kind and ``records_per_message``) with the
        checkpoint covering them; returns the batch whose ``waiting`` empties on PUBACK.

        Waits while the in-flight window is full. Used for cursor batches and for ``resend``
        commands (which do not move the cursor).
        """
        client = self._client
        assert client is not None, "publish_records() runs inside run()"
        checkpoint = await self._ledger.checkpoint()
        batch = _Batch(last_seq=records[-1].seq, count=len(records))
        by_kind: dict[str, list[StoredRecord]] = {}
        for rec in records:
            by_kind.setdefault(rec.kind, []).append(rec)
        step = self.settings.records_per_message
        for kind, items in by_kind.items():
            for start in range(0, len(items), step):
                payload = encode_message(items[start : start + step], checkpoint, kind)
                async with self._window:
                    await self._window.wait_for(
                        lambda: len(self._inflight) < self.settings.inflight_window
                    )
                info = client.publish(self.settings.topic(kind), payload, qos=1)
                batch.waiting.add(info.mid)
                self._inflight[info.mid] = batch
        self.stats.sent += len(records)
        return batch

    async def wait_acked(self, batch: _Batch) -> None:
        async with self._window:
            await self._window.wait_for(lambda: not batch.waiting)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and forward records until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._client = client = self._make_client()
        self._stopping = False
        self._connect_to(client, 0)
        client.loop_start()
        try:
            await self._ledger.register_uplink(self.name)
            self.stats.backlog = await self._ledger.backlog(self.name)
            await self._pump()
        finally:
            await asyncio.shield(self._shutdown(client))

    async def _shutdown(self, client: paho.Client) -> None:
        self._stopping = True
        if self.stats.connected:
            info = client.publish(
                f"{self.settings.base_topic}/status", b"offline", qos=1, retain=True
            )
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.stats.connected = False
        self._connected.clear()

    async def _pump(self) -> None:
        """Read ahead of the cursor while earlier batches wait for their PUBACKs.

        Batches are read after the last *published* seq (`Ledger.read_after`),
        so reading, encoding and the network overlap; the cursor moves over a batch once it
        and every batch before it are acknowledged.
        """
        pending: collections.deque[_Batch] = collections.deque()
        refusals = RetryState(Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s))
        published = await self._ledger.cursor(self.name)
        while True:
            await self._connected.wait()
            await self._ack_done(pending)
            last_seq = self._ledger.last_seq
            # after a refusal, read no further: back off and resend from the cursor first
            refusal_pending = any(b.refused is not None for b in pending)
            records = (
                []
                if refusal_pending
                else await self._ledger.read_after(
                    published, self.settings.batch_size, uplink=self.name
                )
            )
            if records:
                pending.append(await self.publish_records(records))
                published = records[-1].seq
                continue
            if pending:  # nothing new: let the batches in flight finish
                for batch in pending:
                    await self.wait_acked(batch)
                refused = next((b for b in pending if b.refused is not None), None)
                await self._ack_done(pending)
                if refused is not None:
                    pending.clear()
                    self.stats.retries += 1
                    self._set_error(
                        f"broker refused records up to seq {refused.last_seq} "
                        f"({refused.refused}); check the topic ACL for this client"
                    )
                    await asyncio.sleep(refusals.next_delay())
                    published = await self._ledger.cursor(self.name)
                else:
                    refusals.reset()
                continue
            self.stats.backlog = 0
            await self._ledger.wait_appended(last_seq, self.settings.poll_s)

    async def _ack_done(self, pending: collections.deque[_Batch]) -> None:
        """Move the cursor over the leading batches that are fully acknowledged."""
        upto, count = 0, 0
        while pending and not pending[0].waiting and pending[0].refused is None:
            batch = pending.popleft()
            upto, count = batch.last_seq, count + batch.count
        if upto:
            await self._ledger.ack(self.name, upto)
            backlog = await self._ledger.backlog(self.name)
            self.stats.acked += count
            self.stats.backlog = backlog
