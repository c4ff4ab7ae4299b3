"""One connector's whole decoding chain, sans-I/O: frame sorting → TP reassembly → message
decoding → session tracking. The bus adapter, replay and the CLI all drive this one class.

``Pipeline.feed(ts, can_id, data)`` returns a list whose items are :class:`Decoded` (one per
decoded message, only when ``keep_messages`` is set) and tracker events
(:class:`drivers.gbt27930.events.BmsEvent`). Counters say what was seen and rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from drivers.gbt27930.decode import decode
from drivers.gbt27930.events import BmsEvent
from drivers.gbt27930.frames import (
    BMS_ADDR,
    CHARGER_ADDR,
    GLOBAL_ADDR,
    ID_MASK,
    PF_TP_CM,
    PF_TP_DT,
)
from drivers.gbt27930.messages import SPECS, Message
from drivers.gbt27930.tp import Reassembler, TpTimers
from drivers.gbt27930.tracker import Tracker, TrackerConfig

#: how many distinct foreign identifiers are counted one by one (then as "other")
MAX_FOREIGN_IDS = 64

_PRIORITY = {pf: s.priority for pf, s in SPECS.items()}
_SENDER = {pf: (CHARGER_ADDR if s.sender == "charger" else BMS_ADDR) for pf, s in SPECS.items()}


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message with where and when it was seen."""

    ts: float
    sa: int
    da: int
    message: Message
    via_tp: bool = False

    @property
    def name(self) -> str:
        return self.message.name

    @property
    def pgn(self) -> int:
        return self.message.pgn


@dataclass(slots=True)
class FrameCounts:
    """What the pipeline saw, by kind."""

    total: int = 0
    gbt: int = 0
    tp_cm: int = 0
    tp_dt: int = 0
    foreign: int = 0
    ignored: int = 0
    foreign_ids: Counter[str] = field(default_factory=Counter)
    ignored_kinds: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    decode_anomalies: Counter[str] = field(default_factory=Counter)


class Pipeline:
    """Frames in, decoded messages and session events out, for one connector's bus."""

    def __init__(
        self,
        connector_id: str = "",
        *,
        keep_messages: bool = False,
        track: bool = True,
        tp_timers: TpTimers | None = None,
        tracker_config: TrackerConfig | None = None,
    ) -> None:
        self.keep_messages = keep_messages
        self.counts = FrameCounts()
        self.reassembler = Reassembler(tp_timers)
        self.tracker: Tracker | None = Tracker(connector_id, tracker_config) if track else None
        self.last_ts: float | None = None

    def feed(
        self,
        ts: float,
        can_id: int,
        data: bytes,
        *,
        is_extended: bool = True,
        is_remote: bool = False,
        is_fd: bool = False,
        is_error: bool = False,
    ) -> list[Decoded | BmsEvent]:
        """Process one received frame (``data`` as bytes; a bytearray is copied)."""
        c = self.counts
        c.total += 1
        self.last_ts = ts
        tracker = self.tracker
        if is_error or is_remote or is_fd or not is_extended:
            c.ignored += 1
            kind = (
                "error_frame"
                if is_error
                else "remote"
                if is_remote
                else "fd"
                if is_fd
                else "standard_id"
            )
            c.ignored_kinds[kind] += 1
            return tracker.tick(ts) if tracker is not None else []
        i = can_id & ID_MASK
        sa = i & 0xFF
        da = (i >> 8) & 0xFF
        pf = (i >> 16) & 0xFF
        ours = (
            (sa == CHARGER_ADDR and da in (BMS_ADDR, GLOBAL_ADDR))
            or (sa == BMS_ADDR and da in (CHARGER_ADDR, GLOBAL_ADDR))
        ) and not (i >> 24) & 1
        if not ours:
            c.foreign += 1
            fc = c.foreign_ids
            key = f"{i:08X}"
            if key in fc or len(fc) < MAX_FOREIGN_IDS:
                fc[key] += 1
            else:
                fc["other"] += 1
            return tracker.tick(ts) if tracker is not None else []
        if type(data) is not bytes:
            data = bytes(data)
        if pf == PF_TP_DT:
            c.tp_dt += 1
            transfer = self.reassembler.feed_dt(ts, sa, da, data)
            if transfer is None:
                return tracker.tick(ts) if tracker is not None else []
            return self._message(ts, sa, da, transfer.pf, transfer.payload, True, -1)
        if pf == PF_TP_CM:
            c.tp_cm += 1
            self.reassembler.feed_cm(ts, sa, da, data)
            return tracker.tick(ts) if tracker is not None else []
        c.gbt += 1
        return self._message(ts, sa, da, pf, data, False, (i >> 26) & 7)

    def _message(
        self, ts: float, sa: int, da: int, pf: int, data: bytes, via_tp: bool, priority: int
    ) -> list[Decoded | BmsEvent]:
        c = self.counts
        msg = decode(pf, data, via_tp)
        name = msg.name
        c.messages[name] += 1
        if msg.flags:
            for flag in msg.flags:
                c.decode_anomalies[flag] += 1
        if name == "ERROR":
            c.decode_anomalies["decode_error"] += 1
        elif name == "UNKNOWN":
            c.decode_anomalies["unknown_pgn"] += 1
        if priority >= 0 and _PRIORITY.get(pf, priority) != priority:
            c.decode_anomalies["unexpected_priority"] += 1
        if _SENDER.get(pf, sa) != sa:
            c.decode_anomalies["unexpected_direction"] += 1
        out: list[Decoded | BmsEvent] = []
        if self.keep_messages:
            out.append(Decoded(ts, sa, da, msg, via_tp))
        if self.tracker is not None:
            out.extend(self.tracker.feed(ts, msg))
        return out

    def tick(self, ts: float) -> list[Decoded | BmsEvent]:
        """Let time pass without a frame (live use: call it every few hundred ms)."""
        self.reassembler.expire(ts)
        return list(self.tracker.tick(ts)) if self.tracker is not None else []

    def finish(self, ts: float | None = None) -> list[Decoded | BmsEvent]:
        """End of input: expire transfers and close the open session."""
        end = ts if ts is not None else self.last_ts
        if end is not None:
            self.reassembler.expire(end)
        return list(self.tracker.finish(end)) if self.tracker is not None else []

    def anomalies(self) -> dict[str, dict[str, int]]:
        """Every anomaly counter, by layer."""
        return {
            "decode": dict(self.counts.decode_anomalies),
            "transport": dict(self.reassembler.anomalies),
            "session": dict(self.tracker.anomalies) if self.tracker is not None else {},
        }


__all__ = ["Decoded", "FrameCounts", "Pipeline"]
