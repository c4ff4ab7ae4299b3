"""A hostile front for the T/CEC test receiver: plays a fake or broken platform.

:class:`HostileFront` listens on loopback and forwards every request to an upstream receiver
(:class:`sim.platform.PlatformServer`) — or, per the current :attr:`HostileFront.mode`,
answers itself the way an attacker between the gateway and the platform, or a broken
platform, would:

- ``forward``: pass the request on and the answer back; the last genuine ``Ret 0`` answer of
  each interface is kept for ``replay``;
- ``replay``: answer every notification with the captured genuine answer of
  :attr:`replay_interface` (``query_token`` is still forwarded, so tokens stay valid);
- ``huge``: a 200 answer of ``huge_bytes`` (400 MB by default) streamed until the client
  hangs up, without ``Content-Length``; ``huge_declared``: the same with the length declared;
- ``drip``: a 200 answer that sends one byte every ``drip_interval_s``;
- ``nest``: an envelope nested 100,000 levels deep; ``number``: ``Ret`` with 5,000 digits.

Each answer it serves is counted per mode, with how many bytes went out and how long the
connection lasted, so a test can show that the client aborted early.
"""

from __future__ import annotations

import http.client
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MODES: Final = ("forward", "replay", "huge", "huge_declared", "drip", "nest", "number")
_CHUNK: Final = b" " * 65536


@dataclass(slots=True)
class Served:
    """One answer the front gave itself (not forwarded)."""

    mode: str
    interface: str
    bytes_sent: int
    started: float
    """``time.monotonic()`` when the request came in."""
    seconds: float
    """Until the front noticed the client had hung up (or finished the answer)."""


@dataclass(slots=True)
class _State:
    mode: str = "forward"
    replay_interface: str = ""
    captured: dict[str, bytes] = field(default_factory=dict)
    served: list[Served] = field(default_factory=list)
    forwarded: int = 0


class HostileFront:
    """The hostile front; ``base_url`` is what the gateway is pointed at."""

    def __init__(
        self,
        upstream_base_url: str,
        *,
        huge_bytes: int = 400 * 1024 * 1024,
        drip_interval_s: float = 2.0,
    ) -> None:
        up = urlsplit(upstream_base_url)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.base_path = up.path
        self.huge_bytes = huge_bytes
        self.drip_interval_s = drip_interval_s
        self._state = _State()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.front = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cec-hostile", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.base_path}"

    def start(self) -> HostileFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()

    def set_mode(self, mode: str, replay_interface: str = "") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "replay" and replay_interface not in self._state.captured:
            raise ValueError(f"no genuine answer of {replay_interface!r} captured yet")
        with self._lock:
            self._state.mode, self._state.replay_interface = mode, replay_interface

    @property
    def mode(self) -> str:
        return self._state.mode

    def served(self, mode: str | None = None) -> list[Served]:
        with self._lock:
            return [s for s in self._state.served if mode in (None, s.mode)]

    @property
    def forwarded(self) -> int:
        return self._state.forwarded

    def captured(self, interface: str) -> bytes | None:
        return self._state.captured.get(interface)

    # -- used by the handler --

    def _note(self, served: Served) -> None:
        with self._lock:
            self._state.served.append(served)

    def _forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        with self._lock:
            self._state.forwarded += 1
        return response.status, payload

    def _capture(self, interface: str, payload: bytes) -> None:
        if b'"Ret":0,' in payload:
            with self._lock:
                self._state.captured[interface] = payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        front: HostileFront = self.server.front  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        interface = path[len(front.base_path) :]
        mode, replay_from = front._state.mode, front._state.replay_interface
        if mode == "forward" or interface == "query_token":
            keep = ("Content-Type", "Authorization", "X-Evgw-Record-Id")
            headers = {k: v for k, v in self.headers.items() if k in keep}
            status, payload = front._forward(path, body, headers)
            if status == 200:
                front._capture(interface, payload)
            self._answer(status, payload)
            return
        started = time.monotonic()
        sent = 0
        try:
            sent = self._misbehave(front, mode, replay_from)
        except (BrokenPipeError, ConnectionResetError):
            sent = getattr(self, "_sent", sent)
        finally:
            self.close_connection = True
            front._note(Served(mode, interface, sent, started, time.monotonic() - started))

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _hung_up(self, wait_s: float) -> bool:
        """Wait ``wait_s``; True as soon as the client closed its end."""
        readable, _, _ = select.select([self.connection], [], [], wait_s)
        return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""

    def _misbehave(self, front: HostileFront, mode: str, replay_from: str) -> int:
        if mode == "replay":
            payload = front.captured(replay_from) or b""
            self._answer(200, payload)
            return len(payload)
        if mode == "nest":
            payload = b'{"Ret":0,"Msg":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            self._answer(200, payload)
            return len(payload)
        if mode == "number":
            payload = b'{"Ret":' + b"7" * 5000 + b',"Msg":"","Data":"","Sig":"00"}'
            self._answer(200, payload)
            return len(payload)
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        if mode == "huge_declared":
            self.send_header("Content-Length", str(front.huge_bytes))
        self.send_header("Connection", "close")
        self.end_headers()
        self._sent = 0
        if mode == "drip":
            for byte in b'{"Ret":0,"Msg":"' + b"x" * 10_000:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                self._sent += 1
                if self._hung_up(front.drip_interval_s):
                    break
            return self._sent
        while self._sent < front.huge_bytes:
            self.wfile.write(_CHUNK)
            self._sent += len(_CHUNK)
        return self._sent
