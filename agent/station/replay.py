"""Run the station model over a recorded CAN capture (times from the file).

Used by ``evgw replay`` and the tests: every frame goes through the GB/T pipeline of the chosen
connector; frames also count as bus activity (at most one per second), and the model is ticked
once per second of capture time, exactly as the live service does with the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.config.load import parse_config
from agent.config.schema import Config
from agent.records.envelope import Record
from agent.station.inputs import BusActivity
from agent.station.model import StationModel
from agent.station.ocmf import OcmfSigner
from drivers.gbt27930.events import BmsEvent, SessionClosed
from drivers.gbt27930.frames import Frame
from drivers.gbt27930.pipeline import Pipeline
from drivers.gbt27930.replay import read_frames

TICK_S = 1.0

DEFAULT_CONNECTOR = "REPLAY01DC0101"


def default_config(connector_id: str = DEFAULT_CONNECTOR) -> Config:
    """A one-connector DC station with a CAN bus and no meter, for replays without a config."""
    return parse_config(
        f"""
[gateway]
gateway_id = "replay"
operator_id = "REPLAY000"
[station]
station_id = "REPLAY"
name = "Replay"
[[equipment]]
equipment_id = "REPLAY01DC01"
equipment_type = 1
power_kw = 120.0
  [[equipment.connectors]]
  connector_id = "{connector_id}"
  connector_type = 4
  power_kw = 120.0
  voltage_upper_v = 950
  voltage_lower_v = 200
  current_a = 250
[[can_buses]]
connector_id = "{connector_id}"
interface = "virtual"
channel = "replay"
""",
        source="<replay default config>",
    )


@dataclass
class ReplayStats:
    """What a replay saw besides its records (for the summary of ``evgw replay``)."""

    frames: int = 0
    sessions: int = 0
    timestamps_constant: bool = False
    """A session whose frames all carried one timestamp: samples were taken per message
    cycle, and its order's ``duration_s`` is null (no duration to give)."""

    def note(self, event: BmsEvent) -> None:
        if isinstance(event, SessionClosed):
            self.sessions += 1
            self.timestamps_constant |= event.summary.timestamps_constant


def run_capture(
    frames: Iterable[Frame],
    config: Config,
    connector_id: str,
    *,
    signer: OcmfSigner | None = None,
    stats: ReplayStats | None = None,
) -> Iterator[Record]:
    """Yield the records the model writes for ``frames`` (startup identity first); ``stats``
    collects what else the replay saw."""
    seen = stats if stats is not None else ReplayStats()
    model = StationModel(config, signer=signer)
    pipe = Pipeline(connector_id)
    started = False
    next_tick = next_bus = 0.0
    last_ts: float | None = None
    for f in frames:
        ts = f.ts
        if not started:
            yield from model.startup([], ts)
            started, next_tick, next_bus = True, ts + TICK_S, ts
        last_ts = ts
        seen.frames += 1
        while ts >= next_tick:
            yield from model.tick(next_tick)
            next_tick += TICK_S
        if ts >= next_bus:
            yield from model.feed(BusActivity(connector_id, ts))
            next_bus = ts + TICK_S
        for item in pipe.feed(
            ts,
            f.can_id,
            f.data,
            is_extended=f.is_extended,
            is_remote=f.is_remote,
            is_fd=f.is_fd,
            is_error=f.is_error,
        ):
            if isinstance(item, BmsEvent):
                seen.note(item)
                yield from model.feed(item)
    if last_ts is not None:
        for item in pipe.finish(last_ts):
            if isinstance(item, BmsEvent):
                seen.note(item)
                yield from model.feed(item)
        yield from model.tick(last_ts)


def replay_file(
    path: str | Path, config: Config | None = None, connector_id: str | None = None
) -> list[Record]:
    """Read a capture file and return every record (raises ``ReplayError`` for a bad file)."""
    cfg = config if config is not None else default_config(connector_id or DEFAULT_CONNECTOR)
    cid = connector_id or pick_connector(cfg)
    return list(run_capture(read_frames(path), cfg, cid))


def pick_connector(config: Config) -> str:
    """The connector of the first CAN bus, else the first DC connector, else the first one."""
    if config.can_buses:
        return config.can_buses[0].connector_id
    connectors = config.connectors()
    for cid, (e, c) in connectors.items():
        if c.connector_type == 4 or e.equipment_type == 1:
            return cid
    return next(iter(connectors))
