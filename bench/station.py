"""Benchmark: CAN frames → GB/T pipeline → station model → durable ledger records.

Replays the real capture (``../shared/gbt-logs``; a simulated session when it is absent) on 16
connectors at once, each with its own pipeline, as fast as possible, repeated until about
``--frames`` frames went through. Three runs:

1. pipeline only (decoding and session tracking: the driver's share);
2. pipeline + station model (records built, not stored);
3. end to end: pipeline + model + the real ledger (``append_nowait``, then a flush so every
   record is durable before the clock stops).

The peer is the goal of issue 6: 16 connectors at full bus load, >= 30,000 frames/s end to end
on one core. Run: ``.venv/bin/python bench/station.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config.load import parse_config
from agent.config.schema import Config
from agent.ledger import GatewayKey, Ledger
from agent.station.inputs import BusActivity
from agent.station.model import StationModel
from drivers.gbt27930.events import BmsEvent
from drivers.gbt27930.frames import Frame
from drivers.gbt27930.pipeline import Pipeline
from drivers.gbt27930.replay import read_frames

GOAL_FRAMES_PER_S = 30_000
CONNECTORS = 16
EVENTS = [0]  # tracker events fed to the model in the last model run
CAPTURE = Path(__file__).resolve().parent.parent.parent / "shared/gbt-logs/session-v11-lfp.log"


def config(n: int, bms_interval_s: float) -> Config:
    text = """
[gateway]
gateway_id = "bench"
operator_id = "BENCH0000"
[station]
station_id = "BENCH"
name = "Bench"
[[equipment]]
equipment_id = "BENCHDC"
equipment_type = 1
power_kw = 960.0
"""
    for i in range(n):
        text += f"""
  [[equipment.connectors]]
  connector_id = "C{i:02d}"
  connector_type = 4
  power_kw = 60.0
  voltage_upper_v = 950
  voltage_lower_v = 200
  current_a = 250
"""
    for i in range(n):
        text += (
            f'[[can_buses]]\nconnector_id = "C{i:02d}"\ninterface = "virtual"\nchannel = "c{i}"\n'
        )
    text += f"[sampling]\nbms_process_interval_s = {bms_interval_s}\n"
    return parse_config(text)


def load_frames(source: str) -> tuple[list[Frame], str]:
    if source == "capture" and CAPTURE.is_file():
        return list(read_frames(CAPTURE)), f"real capture {CAPTURE.name}"
    from sim.charging import SimOptions, generate

    session = generate(options=SimOptions(stop="manual", stop_after_s=60.0))
    return list(session.frames), "simulated session (full-rate BCL/CCS/BCS/BSM)"


def workload(base: list[Frame], n: int, total: int) -> list[tuple[int, Frame]]:
    """Each connector replays the capture back to back (shifted in time), interleaved by time."""
    span = base[-1].ts - base[0].ts + 30.0
    reps = max(1, total // (len(base) * n) + 1)
    out: list[tuple[int, Frame]] = []
    for r in range(reps):
        for c in range(n):
            shift = r * span + c * 0.0001
            out.extend((c, Frame(f.ts + shift, f.can_id, f.data, f.is_extended)) for f in base)
    out.sort(key=lambda x: x[1].ts)
    return out[:total]


def run_chain(frames: list[tuple[int, Frame]], cfg: Config | None, sink) -> tuple[float, int]:
    """Feed every frame; returns (seconds, records)."""
    ids = [f"C{i:02d}" for i in range(CONNECTORS)]
    pipes = [Pipeline(cid) for cid in ids]
    model = StationModel(cfg) if cfg is not None else None
    records = events = 0
    next_tick = frames[0][1].ts
    next_bus = [0.0] * CONNECTORS
    start = time.perf_counter()
    if model is not None:
        for r in model.startup([], frames[0][1].ts):
            sink(r)
            records += 1
    for c, f in frames:
        ts = f.ts
        out = pipes[c].feed(ts, f.can_id, f.data)
        if model is None:
            continue
        if ts >= next_tick:
            for r in model.tick(ts):
                sink(r)
                records += 1
            next_tick = ts + 1.0
        if ts >= next_bus[c]:
            next_bus[c] = ts + 1.0
            for r in model.feed(BusActivity(ids[c], ts)):
                sink(r)
                records += 1
        for item in out:
            if isinstance(item, BmsEvent):
                events += 1
                for r in model.feed(item):
                    sink(r)
                    records += 1
    elapsed = time.perf_counter() - start
    if model is not None:
        EVENTS[0] = events
    return elapsed, records


async def end_to_end(frames: list[tuple[int, Frame]], cfg: Config) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = await Ledger.open(
            Path(tmp) / "bench.db", gateway_id="bench", key=GatewayKey.generate()
        )
        start = time.perf_counter()
        _, records = run_chain(frames, cfg, ledger.append_nowait)
        await ledger.flush()
        elapsed = time.perf_counter() - start
        assert ledger.last_seq == records, (ledger.last_seq, records)
        await ledger.close()
    return elapsed, records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300_000, help="frames to push (default 300000)")
    ap.add_argument(
        "--bms-interval",
        type=float,
        default=15.0,
        help="bms_process_interval_s (default 15; 1 makes the run record-heavy)",
    )
    ap.add_argument(
        "--source",
        choices=("capture", "sim"),
        default="capture",
        help="the real capture (default) or a simulated 60 s charging session at full rate",
    )
    args = ap.parse_args()
    base, source = load_frames(args.source)
    frames = workload(base, CONNECTORS, args.frames)
    cfg = config(CONNECTORS, args.bms_interval)
    n = len(frames)
    print(f"{source}: {len(base)} frames, replayed on {CONNECTORS} connectors: {n} frames")
    t_pipe, _ = run_chain(frames, None, lambda _r: None)
    t_model, rec_model = run_chain(frames, cfg, lambda _r: None)
    t_e2e, rec_e2e = asyncio.run(end_to_end(frames, cfg))
    rows = [
        ("pipeline only", t_pipe, 0),
        ("pipeline + station model", t_model, rec_model),
        ("end to end (+ durable ledger)", t_e2e, rec_e2e),
    ]
    for name, t, recs in rows:
        print(
            f"{name:30s} {n / t:10,.0f} frames/s {recs / t:9,.0f} records/s"
            f"  ({recs} records, {t:.2f} s)"
        )
    model_share = t_model - t_pipe
    print(
        f"station model share: {model_share:.2f} s for {EVENTS[0]:,} tracker events "
        f"({EVENTS[0] / model_share:,.0f} events/s)"
    )
    ratio = n / t_e2e / GOAL_FRAMES_PER_S
    print(f"goal: {GOAL_FRAMES_PER_S:,} frames/s end to end; measured/goal = {ratio:.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
