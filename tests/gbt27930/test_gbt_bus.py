"""The listen-only bus adapter: python-can virtual bus, and end to end over a real serial line
(simulated slcan adapter → socat pty pair → python-can slcan → pipeline), including unplug."""

from __future__ import annotations

import ast
import asyncio
import inspect
import threading
import uuid
from pathlib import Path

import can

from drivers.gbt27930 import bus as bus_module
from drivers.gbt27930.bus import Backoff, BusSpec, BusStateChanged, CanListener, open_options
from drivers.gbt27930.events import (
    ChargingSample,
    CommunicationLost,
    SessionClosed,
    SessionEnded,
    VehicleIdentified,
)
from drivers.gbt27930.pipeline import Decoded
from drivers.gbt27930.report import session_record
from sim.charging import SimOptions, generate
from sim.charging_output import play
from sim.slcan import SlcanAdapter
from tests.conftest import open_pty_pair


def test_no_code_path_transmits() -> None:
    tree = ast.parse(inspect.getsource(bus_module))
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & {"send", "send_periodic", "_send_internal", "_write"}
    assert not hasattr(bus_module._ReceiveOnly, "send")
    assert bus_module._ReceiveOnly.__slots__ == ("_recv", "_shutdown")


def test_listen_only_options() -> None:
    kw, enforced = open_options(BusSpec("slcan", "/dev/ttyACM0"))
    assert kw["listen_only"] is True and enforced is True and kw["bitrate"] == 250000
    kw, enforced = open_options(BusSpec("pcan", "PCAN_USBBUS1"))
    assert kw["state"] is can.BusState.PASSIVE
    kw, enforced = open_options(BusSpec("socketcan", "can0", extra={"fd": False}))
    assert enforced is None and kw["fd"] is False and "listen_only" not in kw
    _, enforced = open_options(BusSpec("slcan", "x", listen_only=False))
    assert enforced is None


async def collect_until(queue: asyncio.Queue, kind: type, timeout: float = 20.0) -> list:
    items = []
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            items.append(item)
            if isinstance(item, kind):
                return items


async def test_virtual_bus_session_and_nothing_transmitted() -> None:
    channel = f"gbt-{uuid.uuid4().hex}"
    session = generate(options=SimOptions(soc_speedup=400, foreign_frames=True))
    queue: asyncio.Queue = asyncio.Queue()
    listener = CanListener(BusSpec("virtual", channel, connector_id="A1"), queue, messages=True)
    observer = can.Bus(interface="virtual", channel=channel)
    sender = can.Bus(interface="virtual", channel=channel)
    task = asyncio.create_task(listener.run())
    try:
        opened = await collect_until(queue, BusStateChanged)
        assert opened[-1].state == "open" and opened[-1].connector_id == "A1"
        sent = await play(session, sender, speed=0)
        items = await collect_until(queue, SessionEnded)
        listener.stop()
        await task
        while not queue.empty():
            items.append(queue.get_nowait())
        seen = []
        while (m := observer.recv(0.05)) is not None:
            seen.append((m.arbitration_id, bytes(m.data)))
    finally:
        listener.stop()
        sender.shutdown()
        observer.shutdown()
    # the observer saw exactly the simulator's frames: the listener put nothing on the bus
    assert sent == len(session.frames)
    assert seen == [(f.can_id, f.data) for f in session.frames]
    closed = [i for i in items if isinstance(i, SessionClosed)]
    assert len(closed) == 1 and closed[0].connector_id == "A1"
    s = session_record(closed[0].summary)
    assert s["vehicle"]["vin"] == session.expected.vin
    assert s["energy_kwh"] == session.expected.energy_kwh
    assert any(isinstance(i, Decoded) and i.name == "BCS" for i in items)
    assert isinstance(items[-1], BusStateChanged) and items[-1].state == "closed"


class SteppingClock:
    """A fake wall clock far from the real one: every reading advances it by 1 ms, and the test
    can jump it forward. Read from the listener's reader thread and from the loop."""

    def __init__(self, start_s: float = 5_000.0) -> None:
        self.now_s = start_s
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now_s += 0.001
            return self.now_s

    def jump(self, seconds: float) -> float:
        with self._lock:
            self.now_s += seconds
            return self.now_s


async def test_frames_and_ticks_share_the_listeners_clock() -> None:
    """Each frame is stamped once with the injected clock as it arrives (not with the
    interface's timestamp), so silence measured by the listener's ticks on that same clock
    closes the session: the bus goes quiet mid-charge and the clock jumps 20 s."""
    channel = f"gbt-{uuid.uuid4().hex}"
    session = generate(options=SimOptions(soc_speedup=400, foreign_frames=False))
    charging_from = session.curve[0].ts
    frames = [f for f in session.frames if f.ts < charging_from + 3.0]
    clock = SteppingClock()
    queue: asyncio.Queue = asyncio.Queue()
    spec = BusSpec("virtual", channel, connector_id="A1")
    listener = CanListener(spec, queue, messages=True, clock=clock)
    sender = can.Bus(interface="virtual", channel=channel)
    task = asyncio.create_task(listener.run())
    try:
        await collect_until(queue, BusStateChanged)
        await play(frames, sender, speed=0)
        items = await collect_until(queue, ChargingSample)
        while listener.pipeline.counts.total < len(frames):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the last batch reaches the queue
        while not queue.empty():
            items.append(queue.get_nowait())
        jumped_to = clock.jump(20.0)
        items += await collect_until(queue, SessionClosed)
        listener.stop()
        await task
    finally:
        listener.stop()
        sender.shutdown()
    decoded = [i.ts for i in items if isinstance(i, Decoded)]
    assert len(decoded) == listener.pipeline.counts.gbt + listener.pipeline.reassembler.completed
    assert all(5_000.0 < ts < jumped_to for ts in decoded)
    assert decoded == sorted(decoded) and len(set(decoded)) == len(decoded)
    (lost,) = [i for i in items if isinstance(i, CommunicationLost)]
    assert lost.last_frame_ts == decoded[-1] and lost.ts > jumped_to
    (closed,) = [i for i in items if isinstance(i, SessionClosed)]
    assert closed.end_reason == "lost" and closed.summary.end_ts == decoded[-1]
    assert closed.summary.start_ts == decoded[0]


async def test_slcan_over_socat_end_to_end(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path, "slcan")
    session = generate(options=SimOptions(soc_speedup=400))
    queue: asyncio.Queue = asyncio.Queue()
    spec = BusSpec("slcan", pair.b, connector_id="DC1", extra={"sleep_after_open": 0})
    listener = CanListener(spec, queue)
    adapter = SlcanAdapter(pair.a)
    task = asyncio.create_task(listener.run())
    try:
        opened = await collect_until(queue, BusStateChanged)
        assert opened[-1].state == "open" and opened[-1].listen_only is True
        # the adapter's own thread may not have read the host's open command yet (a loaded
        # machine): frames it is given before that are dropped, as a real closed channel does
        async with asyncio.timeout(10):
            while not adapter.opened_listen_only:
                await asyncio.sleep(0.01)
        player = threading.Thread(target=adapter.play, args=(session.frames,), kwargs={"speed": 0})
        player.start()
        items = await collect_until(queue, SessionEnded, timeout=60)
        await asyncio.to_thread(player.join, 30)
        listener.stop()
        await task
        while not queue.empty():
            items.append(queue.get_nowait())
    finally:
        listener.stop()
        adapter.close()
        pair.close()
    assert adapter.opened_listen_only and not adapter.opened_normal
    assert adapter.transmit_requests == [] and adapter.dropped == 0
    vehicle = next(i for i in items if isinstance(i, VehicleIdentified))
    assert vehicle.vin == session.expected.vin and vehicle.connector_id == "DC1"
    (closed,) = [i for i in items if isinstance(i, SessionClosed)]
    s = session_record(closed.summary)
    assert s["end_reason"] == "normal" and s["soc_end_pct"] == session.expected.soc_end_pct
    assert s["stop_reason"]["bst"] == list(session.expected.bst_reasons)
    assert listener.pipeline.counts.tp_dt > 0 and listener.frames_dropped == 0


async def test_adapter_unplugged_and_back(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path, "plug")
    queue: asyncio.Queue = asyncio.Queue()
    spec = BusSpec("slcan", pair.b, extra={"sleep_after_open": 0})
    listener = CanListener(spec, queue, messages=True, backoff=Backoff(initial_s=0.05, max_s=0.2))
    adapter = SlcanAdapter(pair.a)
    task = asyncio.create_task(listener.run())
    try:
        first = await collect_until(queue, BusStateChanged)
        assert first[-1].state == "open"
        adapter.close()
        pair.close()  # the USB adapter is pulled out
        down = await collect_until(queue, BusStateChanged)
        assert down[-1].state == "down" and down[-1].retry_in_s is not None
        pair = open_pty_pair(tmp_path, "plug")  # plugged back in, same device path
        adapter = SlcanAdapter(pair.a)
        while True:
            state = (await collect_until(queue, BusStateChanged))[-1]
            if state.state == "open":
                break
            assert state.state == "down"
        chm = next(f for f in generate().frames if f.can_id == 0x1826F456)
        adapter.send(chm)  # traffic after the replug is decoded again
        got = await collect_until(queue, Decoded)
        assert got[-1].name == "CHM" and got[-1].message.charger_protocol_version == "1.1"
        listener.stop()
        await task
    finally:
        listener.stop()
        adapter.close()
        pair.close()
    assert listener.pipeline.counts.messages["CHM"] == 1


def test_cli_sniff_over_slcan(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    pair = open_pty_pair(tmp_path, "sniff")
    adapter = SlcanAdapter(pair.a)
    session = generate(options=SimOptions(soc_speedup=400))
    cmd = [sys.executable, "-m", "agent.cli", "can", "sniff", "--interface", "slcan"]
    cmd += ["--channel", pair.b, "--option", "sleep_after_open=0", "--duration", "3"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 10
        while "L" not in adapter.commands and time.monotonic() < deadline:
            time.sleep(0.05)
        adapter.play(session.frames[:400], speed=0)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        adapter.close()
        pair.close()
    assert proc.returncode == 0, err
    assert "# bus open" in err and "listen-only" not in err
    assert "C→B  CHM" in out and "B→C  BRM" in out and "VehicleIdentified" in out
    assert adapter.transmit_requests == []
