"""The processes of the end-to-end rig: :class:`Agent` runs ``evgw run`` as a subprocess
(SIGTERM like ``systemctl stop``, SIGKILL like a power cut, restarts like systemd), and
:class:`MqttConsumer` is the operator's durable MQTT subscriber; :func:`wait_until` polls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

EVGW = [sys.executable, "-m", "agent.cli"]


# --------------------------------------------------------------------------- waiting


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


# --------------------------------------------------------------------------- the agent


@dataclass
class Agent:
    """``evgw run`` as a subprocess; each run logs (stderr) to its own file."""

    config: Path
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    logs: list[Path] = field(default_factory=list)
    on_gone: Callable[[], None] | None = None
    """Called when a run has ended (the station's adapters then drop frames until the next
    run opens them, as real hardware does)."""

    @property
    def log(self) -> Path:
        return self.logs[-1]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "the agent is running"
        self.runs += 1
        log = self.directory / f"agent-{self.runs}.log"
        self.logs.append(log)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env["RUNTIME_DIRECTORY"] = str(self.directory)
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*EVGW, "run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace") if self.logs else ""

    def wait_logged(self, needle: str, timeout_s: float = 30.0) -> None:
        """Until this run logged ``needle``; fails at once if the agent died."""

        def logged() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the agent exited with {self.proc.returncode} before logging {needle!r}"
                )
            return needle in self.log_text()

        wait_until(logged, timeout_s, f"the agent to log {needle!r}", poll_s=0.05)

    def wait_ready(self, connectors: list[str], timeout_s: float = 30.0) -> None:
        """Until the service started and opened every CAN bus."""
        self.wait_logged("started: gateway", timeout_s)
        for cid in connectors:
            self.wait_logged(f"CAN bus of {cid} open", timeout_s)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (``systemctl stop``) and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._gone()
        return code

    def kill(self) -> None:
        """SIGKILL: the process dies without flushing anything (a power cut)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._gone()

    def _gone(self) -> None:
        if self.on_gone is not None:
            self.on_gone()

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def all_logs(self, tail_lines: int = 80) -> str:
        parts = []
        for path in self.logs:
            lines = path.read_text("utf-8", "replace").splitlines()
            parts.append(f"===== {path.name} (last {tail_lines} lines) =====")
            parts.extend(lines[-tail_lines:])
        return "\n".join(parts)


# --------------------------------------------------------------------------- MQTT consumer


class MqttConsumer:
    """A durable QoS 1 consumer of ``{prefix}/{station}/#`` (session kept across restarts).

    Keeps every record of every batch message in arrival order (duplicates included) and
    every checkpoint received; :meth:`first_arrivals` dedupes on the record ``id``.
    """

    def __init__(self, port: int, topic: str, client_id: str = "e2e-consumer") -> None:
        self.topic = topic
        self.arrivals: list[dict[str, Any]] = []
        self.checkpoints: dict[int, dict[str, Any]] = {}
        self.messages = 0
        self.bad_messages: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        if kind == "status":
            return
        try:
            payload = json.loads(message.payload)
            records = payload["records"]
            checkpoint = payload["checkpoint"]
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                self.bad_messages.append(f"{message.topic}: {exc}")
            return
        with self._lock:
            self.messages += 1
            self.arrivals.extend(records)
            self.checkpoints[int(checkpoint["seq"])] = checkpoint
            self.bad_messages.extend(
                f"{message.topic}: record {r['id']} is a {r['kind']}"
                for r in records
                if r["kind"] != kind
            )

    def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        if not self._subscribed.wait(timeout_s):
            raise AssertionError("the MQTT consumer did not subscribe")

    def first_arrivals(self) -> list[dict[str, Any]]:
        """Records in order of first arrival, one per id."""
        seen: set[str] = set()
        out = []
        with self._lock:
            arrivals = list(self.arrivals)
        for record in arrivals:
            if record["id"] not in seen:
                seen.add(record["id"])
                out.append(record)
        return out

    def received_ids(self) -> set[str]:
        with self._lock:
            return {r["id"] for r in self.arrivals}

    def copies(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
