"""The status socket: ``evgw status`` asks the running service what it is doing.

The service listens on ``status.sock`` in its runtime directory (systemd's
``$RUNTIME_DIRECTORY``, else ``gateway.runtime_dir``). A client connects, sends one line
(``status``), and reads one JSON object; the connection then closes. The object is built by
a snapshot function the service provides, so this module knows nothing of its contents.

A line ``<verb> <JSON object>`` is a request to a handler the running service registered
for ``verb`` (:func:`register_handler`; ``uplink`` for ``evgw uplink parked|resend``,
``config`` for ``evgw config apply``); the answer is the JSON object the handler returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from agent.uplink.log_limit import LogLimiter

log = logging.getLogger("evgw.status")

SOCKET_NAME = "status.sock"
MAX_REQUEST_BYTES = 64
MAX_CLIENTS = 16
"""`evgw status` asks once; more than this many at once is not a person at a terminal."""
MAX_COMMAND_BYTES = 4096
"""The longest request line a verb takes unless it registered a longer limit."""
MAX_LINE_BYTES = 65_536
"""The stream limit: no request line is longer (a longer one is not a client of ours)."""

RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_handlers: dict[str, tuple[RequestHandler, int]] = {}


def register_handler(
    verb: str, handler: RequestHandler, max_bytes: int = MAX_COMMAND_BYTES
) -> None:
    """Serve ``<verb> <JSON>`` requests of at most ``max_bytes`` with ``handler`` from now on
    (the service registers its handlers each time its runtime is built, so a reload replaces
    them)."""
    _handlers[verb] = (handler, min(max_bytes, MAX_LINE_BYTES))


async def _dispatch(line: bytes) -> dict[str, Any]:
    verb, _, argument = line.partition(b" ")
    found = _handlers.get(verb.decode("ascii", errors="replace"))
    if found is None:
        shown = line[:32].decode("ascii", errors="replace")
        return {"error": f"unknown request {shown!r}; send 'status'"}
    handler, max_bytes = found
    if len(line) > max_bytes:
        return {"error": f"request longer than {max_bytes} bytes"}
    try:
        request = msgspec.json.decode(argument)
    except msgspec.DecodeError:
        request = None
    if not isinstance(request, dict):
        return {"error": "the request after the verb must be a JSON object"}
    return await handler(request)


def socket_path(runtime_dir: str) -> Path:
    return Path(os.environ.get("RUNTIME_DIRECTORY") or runtime_dir) / SOCKET_NAME


class StatusServer:
    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None
        self._active = 0
        self._trouble = LogLimiter(log)
        self.refused = 0
        """Connections turned away (too many at once) or with a request that is no line."""

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a killed process
        self._server = await asyncio.start_unix_server(
            self._handle, path=str(self.path), limit=MAX_LINE_BYTES
        )
        os.chmod(self.path, 0o660)
        log.info("status socket listening on %s", self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CLIENTS:  # a flood of clients must not exhaust descriptors
            self.refused += 1
            self._trouble.log(
                logging.WARNING,
                "busy",
                "status socket: over %d clients at once, refusing more",
                MAX_CLIENTS,
            )
            writer.close()
            return
        self._active += 1
        try:
            line = (await asyncio.wait_for(reader.readline(), timeout=5)).strip()
            if line[:MAX_REQUEST_BYTES] == b"status":
                reply: dict[str, Any] = self.snapshot()
            else:
                reply = await _dispatch(line)
            writer.write(msgspec.json.encode(reply) + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except ValueError:  # a line longer than the stream limit: not a client of ours
            self.refused += 1
        except Exception as exc:
            self._trouble.log(
                logging.ERROR, "failed", "status request failed: %s: %s", type(exc).__name__, exc
            )
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _exchange(path: Path, line: bytes, timeout_s: float, expected: str) -> dict[str, Any]:
    """Send one request line to a running service and decode its one JSON object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(line)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    try:
        reply = msgspec.json.decode(b"".join(chunks))
    except msgspec.DecodeError:
        raise ValueError(
            f"the service at {path} answered nothing usable: see its log (journalctl -u evgw)"
        ) from None
    if not isinstance(reply, dict):
        raise ValueError(f"the service at {path} answered {reply!r}, not {expected}")
    return reply


def query_status(path: Path, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask a running service for its status (blocking; for the CLI)."""
    return _exchange(path, b"status\n", timeout_s, "a status object")


def ask(path: Path, verb: str, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send ``<verb> <request>`` to a running service and return its answer (for the CLI)."""
    line = verb.encode("ascii") + b" " + msgspec.json.encode(request) + b"\n"
    return _exchange(path, line, timeout_s, "an object")
