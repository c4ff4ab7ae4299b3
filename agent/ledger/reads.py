"""Where the ledger's reads run, off the asyncio loop.

Normally on a reader thread with a connection of its own (WAL: readers never block the
writer). When the file had to be opened with its WAL index in memory (a full disk: no
``-shm`` could be created), no second connection can read it, so reads run on the writer
thread between commits (:meth:`agent.ledger.writer.Writer.run_read`). A rebuild while
running swaps the file under the reader: :meth:`Reads.swap` holds every read meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from agent.ledger.store import connect
from agent.ledger.writer import Writer

T = TypeVar("T")


class Reads:
    def __init__(
        self, path: Path, writer: Writer, loop: asyncio.AbstractEventLoop, *, exclusive: bool
    ) -> None:
        self.path = path
        self.exclusive = exclusive
        self._writer = writer
        self._loop = loop
        self._lock = threading.Lock()
        self._conn = None if exclusive else connect(path, writer=False)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-read")
        writer.on_read = self._delivered

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on a connection that sees what is committed."""
        if self.exclusive:
            fut: asyncio.Future[T] = self._loop.create_future()
            self._writer.run_read(lambda conn: fn(conn, *args), fut)
            return await fut
        return await self._loop.run_in_executor(self._pool, self._reading, fn, args)

    def _reading(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._lock:
            if self._conn is None:
                raise sqlite3.OperationalError("the ledger is closed")
            return fn(self._conn, *args)

    def _delivered(self, fut: asyncio.Future[Any], result: Any, exc: Exception | None) -> None:
        def deliver() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(deliver)

    def swap(self, replace: Callable[[], None]) -> None:
        """Run ``replace`` (it swaps the files) while no read uses the reader connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            try:
                replace()
            finally:
                if not self.exclusive:
                    self._conn = connect(self.path, writer=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
