"""Listen-only python-can adapter: frames from a CAN interface into the sans-I/O pipeline.

The adapter holds the bus only through :class:`_ReceiveOnly`, which keeps the bound ``recv`` and
``shutdown`` methods and nothing else, so no code path here can transmit. Interfaces whose
driver can be opened in listen-only (silent) mode get the matching python-can option; for
socketcan the mode is a property of the kernel interface (``ip link set can0 type can bitrate
250000 listen-only on``) and the open event says so.

A reader thread blocks in ``recv`` and hands batches of frames to the asyncio loop, which runs
the pipeline and passes decoded events to the sink. Bus errors and a vanished adapter end the
thread; the listener reports the bus state, closes the bus and reopens it with backoff.

Time has one source: the listener's ``clock`` (UTC wall clock by default). The reader thread
stamps each frame once, as it is received; ticks, state changes and the end of input read the
same clock. The interface's own timestamps (often a monotonic or device clock) are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import can

from drivers.gbt27930.events import BmsEvent
from drivers.gbt27930.pipeline import Decoded, Pipeline
from drivers.gbt27930.tracker import TrackerConfig

#: python-can options that open an interface without taking part in the bus (no ACK, no frames)
LISTEN_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "slcan": {"listen_only": True},
    "vector": {"listen_only": True},
    "nixnet": {"listen_only": True},
    "cantact": {"monitor": True},
    "kvaser": {"driver_mode": False},  # python-can's DRIVER_MODE_SILENT
    "pcan": {"state": can.BusState.PASSIVE},
    "systec": {"state": can.BusState.PASSIVE},
}
#: interfaces where listen-only is configured outside python-can, with the hint to give
LISTEN_ONLY_EXTERNAL: dict[str, str] = {
    "socketcan": "set it on the interface: ip link set CHANNEL type can bitrate 250000 "
    "listen-only on",
    "virtual": "a virtual bus has no physical layer",
}


@dataclass(frozen=True, slots=True)
class BusSpec:
    """Which CAN interface carries one connector's charger↔BMS bus."""

    interface: str  # any python-can interface name: socketcan, slcan, virtual, pcan, …
    channel: str  # can0, /dev/ttyACM0, a virtual channel name, PCAN_USBBUS1, …
    _: KW_ONLY
    bitrate: int = 250000
    connector_id: str = ""
    listen_only: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class BusStateChanged:
    """The adapter's state: ``open``, ``down`` (error or unplugged; it will retry) or ``closed``."""

    ts: float
    connector_id: str
    state: str
    detail: str
    listen_only: bool | None = None  # True when enforced by the driver, None when external
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reopen delays: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * (2 ** min(attempt, 16)))


Item = Decoded | BmsEvent | BusStateChanged
Sink = asyncio.Queue[Item] | Callable[[Item], Awaitable[None]]


class _ReceiveOnly:
    """The only view of the bus the listener keeps: receive and shut down, nothing else."""

    __slots__ = ("_recv", "_shutdown")

    def __init__(self, bus: can.BusABC) -> None:
        self._recv = bus.recv
        self._shutdown = bus.shutdown

    def recv(self, timeout: float) -> can.Message | None:
        return self._recv(timeout)

    def shutdown(self) -> None:
        """Close the interface; a device that already vanished cannot be closed cleanly, and
        that is not an error worth reporting."""
        with contextlib.suppress(Exception):
            self._shutdown()


def open_options(spec: BusSpec) -> tuple[dict[str, Any], bool | None]:
    """python-can keyword arguments for ``spec`` and whether listen-only is driver-enforced."""
    kwargs: dict[str, Any] = {
        "interface": spec.interface,
        "channel": spec.channel,
        "bitrate": spec.bitrate,
        "receive_own_messages": False,
    }
    enforced: bool | None = None
    if spec.listen_only and spec.interface in LISTEN_ONLY_OPTIONS:
        kwargs.update(LISTEN_ONLY_OPTIONS[spec.interface])
        enforced = True
    elif spec.listen_only and spec.interface not in LISTEN_ONLY_EXTERNAL:
        enforced = False
    kwargs.update(spec.extra)
    return kwargs, enforced


def open_receive_only(spec: BusSpec) -> tuple[_ReceiveOnly, bool | None]:
    """Open the interface (blocking; run it in a thread) and wrap it receive-only."""
    kwargs, enforced = open_options(spec)
    return _ReceiveOnly(can.Bus(**kwargs)), enforced


class CanListener:
    """Listens to one connector's bus and feeds the sink with events (and decoded messages when
    ``messages=True``). ``run()`` returns after ``stop()``; cancelling it works as well.
    ``clock`` stamps every frame as it is received and drives the ticks (one time base)."""

    def __init__(
        self,
        spec: BusSpec,
        sink: Sink,
        *,
        messages: bool = False,
        tracker_config: TrackerConfig | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        tick_interval_s: float = 0.25,
        max_backlog: int = 100_000,
    ) -> None:
        self.spec = spec
        self.sink = sink
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.tick_interval_s = tick_interval_s
        self.pipeline = Pipeline(
            spec.connector_id, keep_messages=messages, tracker_config=tracker_config
        )
        self.frames_dropped = 0
        self._max_backlog = max_backlog
        self._stop = threading.Event()
        self._inbox: deque[tuple[float, can.Message]] = deque()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._stopped_async: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Ask ``run()`` to close the bus and return (safe from any thread)."""
        self._stop.set()
        loop = self._loop
        if loop is not None and self._wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    bus, enforced = await asyncio.to_thread(open_receive_only, self.spec)
                except Exception as exc:  # python-can raises many types for a missing device
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    await self._state("down", f"cannot open: {exc}", retry_in_s=delay)
                    await self._sleep(delay)
                    continue
                attempt = 0
                detail = f"{self.spec.interface} {self.spec.channel} at {self.spec.bitrate} bit/s"
                if enforced is None and self.spec.listen_only:
                    hint = LISTEN_ONLY_EXTERNAL.get(self.spec.interface, "")
                    detail += f"; listen-only not set by python-can: {hint}"
                await self._state("open", detail, listen_only=enforced)
                try:
                    error = await self._pump(bus)
                finally:
                    await asyncio.to_thread(bus.shutdown)
                if error is not None and not self._stop.is_set():
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    await self._state("down", error, retry_in_s=delay)
                    await self._sleep(delay)
        finally:
            for item in self.pipeline.finish(self.clock()):
                await self._emit(item)
            await self._state("closed", "listener stopped")

    async def _pump(self, bus: _ReceiveOnly) -> str | None:
        """Run the reader thread until it fails or ``stop()``; returns the error, if any."""
        assert self._wake is not None and self._loop is not None
        failure: list[str] = []
        loop, wake, clock = self._loop, self._wake, self.clock

        def reader() -> None:
            while not self._stop.is_set():
                try:
                    msg = bus.recv(0.1)
                except Exception as exc:  # the adapter vanished or the driver failed
                    failure.append(f"receive failed: {type(exc).__name__}: {exc}")
                    break
                if msg is None:
                    continue
                received_ts = clock()  # the frame's one timestamp, where it enters
                with self._lock:
                    if len(self._inbox) >= self._max_backlog:
                        self.frames_dropped += 1
                        continue
                    first = not self._inbox
                    self._inbox.append((received_ts, msg))
                if first and not loop.is_closed():
                    loop.call_soon_threadsafe(wake.set)
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

        thread = threading.Thread(target=reader, name=f"can-{self.spec.channel}", daemon=True)
        thread.start()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.tick_interval_s)
                wake.clear()
                await self._drain()
                for item in self.pipeline.tick(self.clock()):
                    await self._emit(item)
                if not thread.is_alive():
                    await self._drain()
                    return failure[0] if failure else None
                if self._stop.is_set():
                    break
        except asyncio.CancelledError:
            self._stop.set()
            raise
        finally:
            await asyncio.to_thread(thread.join, 2.0)
        return None

    async def _drain(self) -> None:
        with self._lock:
            batch = list(self._inbox)
            self._inbox.clear()
        feed = self.pipeline.feed
        for received_ts, msg in batch:
            for item in feed(
                received_ts,
                msg.arbitration_id,
                bytes(msg.data),
                is_extended=msg.is_extended_id,
                is_remote=msg.is_remote_frame,
                is_fd=msg.is_fd,
                is_error=msg.is_error_frame,
            ):
                await self._emit(item)

    async def _emit(self, item: Item) -> None:
        sink = self.sink
        if isinstance(sink, asyncio.Queue):
            await sink.put(item)
        else:
            await sink(item)

    async def _state(self, state: str, detail: str, **kw: Any) -> None:
        await self._emit(BusStateChanged(self.clock(), self.spec.connector_id, state, detail, **kw))

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return
