"""The status socket under a flood of clients: no traceback, bounded descriptors, and it still
answers `evgw status` afterwards."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from agent.service.status_socket import MAX_CLIENTS, StatusServer, query_status


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_flood_of_clients_is_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = StatusServer(tmp_path / "status.sock", lambda: {"status": "fine"})
    await server.start()
    before = open_fds()
    path = str(server.path)

    async def hostile(i: int) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError:
            return
        try:
            if i % 3 == 0:
                writer.write(b"x" * 100_000)  # no newline, far over the stream limit
            elif i % 3 == 1:
                writer.write(b"\xff\xfe garbage\n")
            await writer.drain()
            if i % 3 == 2:
                writer.write_eof()  # connect and hang up without a word
            await asyncio.wait_for(reader.read(), timeout=10)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    with caplog.at_level(logging.INFO, logger="evgw.status"):
        for start in range(0, 1100, 100):
            await asyncio.gather(*(hostile(i) for i in range(start, start + 100)))
        answer = await asyncio.to_thread(query_status, server.path)
    await server.close()
    assert answer == {"status": "fine"}
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) <= 4  # rate-limited: at most a line or two per kind of trouble
    assert open_fds() <= before + MAX_CLIENTS
