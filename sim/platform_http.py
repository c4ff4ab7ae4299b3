"""The HTTP side of the T/CEC test receiver: a threaded HTTP/1.1 server on loopback.

It routes ``POST {base}{interface}``, applies the transport faults (delay, dropped
connection, HTTP status) and hands the body to :meth:`sim.platform.PlatformReceiver.handle`.
"""

from __future__ import annotations

import logging
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from agent.uplink.cec.codec import RECORD_ID_HEADER, envelope_bytes
from sim.platform_schemas import SCHEMAS

if TYPE_CHECKING:
    from sim.platform import PlatformReceiver

log = logging.getLogger("sim.platform")

MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 30.0

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10.0)
            self.request.do_handshake()
        super().setup()

    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        receiver = self.server.receiver
        base = receiver.settings.base_path
        path = self.path.split("?", 1)[0]
        interface = path[len(base) :] if path.startswith(base) else ""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, b"")
            return
        body = self.rfile.read(length)
        if interface not in SCHEMAS:
            self._send(404, b"unknown interface\n")
            return
        fault = receiver.take_fault(interface)
        if fault is not None and fault.action == "delay":
            time.sleep(fault.value)
            fault = None
        if fault is not None and fault.action == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.action == "http":
            self._send(int(fault.value), b"injected HTTP error\n")
            return
        envelope = receiver.handle(
            interface,
            body,
            self.headers.get("Authorization"),
            self.headers.get(RECORD_ID_HEADER),
            fault,
        )
        self._send(200, envelope_bytes(envelope), "application/json;charset=utf-8")

    def _send(self, status: int, payload: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: PlatformReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.info("connection from %s failed", client_address, exc_info=True)
