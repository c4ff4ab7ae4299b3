"""A simulated session out of the process: a candump ``-l`` file, or frames played onto a
python-can bus in real time (or faster)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import can

from drivers.gbt27930.frames import Frame
from sim.charging import SimSession


def write_candump(
    session: SimSession | list[Frame], path: str | Path, channel: str = "can0"
) -> Path:
    """Write the frames as a candump ``-l`` log (``(ts) can0 ID#DATA``)."""
    frames = session.frames if isinstance(session, SimSession) else session
    p = Path(path)
    with p.open("w", encoding="ascii") as fh:
        for f in frames:
            fh.write(f"({f.ts:.6f}) {channel} {f.can_id:08X}#{f.data.hex().upper()}\n")
    return p


def to_can_message(f: Frame) -> can.Message:
    return can.Message(
        timestamp=f.ts, arbitration_id=f.can_id, data=f.data, is_extended_id=f.is_extended
    )


async def play(session: SimSession | list[Frame], bus: can.BusABC, *, speed: float = 1.0) -> int:
    """Send the frames onto ``bus`` keeping their spacing divided by ``speed`` (``speed <= 0``
    sends as fast as possible). Returns the number of frames sent."""
    frames = session.frames if isinstance(session, SimSession) else session
    if not frames:
        return 0
    t0, start = frames[0].ts, time.monotonic()
    for n, f in enumerate(frames, 1):
        if speed > 0:
            delay = (f.ts - t0) / speed - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
        elif n % 200 == 0:
            await asyncio.sleep(0)
        bus.send(to_can_message(f))
    return len(frames)
