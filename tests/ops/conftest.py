"""Fixtures the ops tests share."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import free_port


@dataclass
class Receiver:
    port: int
    status: int = 200
    answer: bytes = b""
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def url(self, path: str = "/up/diag.tar.gz?X-Signature=secret-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            size = int(self.headers["Content-Length"])
            state.got.append((self.path, dict(self.headers), self.rfile.read(size)))
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
