"""Passive J1939 transport-protocol reassembly (spec §4.7), sans-I/O.

The listener never answers: it watches the BMS's RTS, the charger's TP.CM_CTS, the TP.DT
packets and the EndOfMsgAck (or a BAM and its packets) and rebuilds the carried message.
Transfers are keyed by ``(originator SA, responder DA)`` because TP.DT frames carry no PGN.

Memory is bounded whatever arrives: at most ``max_sessions`` open transfers (the oldest is
evicted), at most 255 packets of 7 bytes each per transfer, and a bounded memory of recently
closed transfers. Every anomaly is counted by kind in :attr:`Reassembler.anomalies`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum

CTRL_RTS = 0x10
CTRL_CTS = 0x11
CTRL_EOMA = 0x13
CTRL_BAM = 0x20
CTRL_ABORT = 0xFF

MAX_TP_SIZE = 1785  # 255 packets × 7 bytes


class AbortReason(IntEnum):
    """J1939-21 Conn_Abort reasons (spec §4.4); real BMSs send 0xFF (``UNSPECIFIED``)."""

    OTHER_REASON = 250
    UNSPECIFIED = 255
    ALREADY_IN_SESSION = 1
    RESOURCES_NEEDED = 2
    TIMEOUT = 3
    CTS_DURING_TRANSFER = 4
    RETRANSMIT_LIMIT = 5
    UNEXPECTED_DT = 6
    BAD_SEQUENCE = 7
    DUPLICATE_SEQUENCE = 8
    SIZE_TOO_LARGE = 9


@dataclass(frozen=True, slots=True)
class TpTimers:
    """Receive timers in seconds (spec §4.5), plus a tolerance for host-timestamp jitter."""

    t1_s: float = 0.75
    t2_s: float = 1.25
    t3_s: float = 1.25
    t4_s: float = 1.05
    tolerance_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Transfer:
    """A reassembled message, emitted at the time of its last TP.DT."""

    ts: float
    sa: int
    da: int
    pgn: int
    payload: bytes
    started_ts: float
    mode: str  # "rts" or "bam"
    anomalies: tuple[str, ...] = ()

    @property
    def pf(self) -> int:
        return (self.pgn >> 8) & 0xFF


@dataclass(frozen=True, slots=True)
class TransferClosed:
    """A transfer that ended without (or after) emitting: aborted, timed out, replaced…"""

    ts: float
    sa: int
    da: int
    pgn: int
    reason: str
    abort_reason: AbortReason | int | None = None
    missing: tuple[int, ...] = ()


@dataclass(slots=True)
class _Session:
    mode: str
    pgn: int
    total_size: int
    total_packets: int
    needed: int  # ceil(total_size / 7)
    started: float
    last_event: float
    state: str  # waiting_cts, receiving, hold, complete
    packets: dict[int, bytes] = field(default_factory=dict)
    good: set[int] = field(default_factory=set)
    window: tuple[int, int] | None = None
    last_dt: float | None = None
    highest_seq: int = 0
    emitted: bool = False
    seen_cts: bool = False
    anomalies: list[str] = field(default_factory=list)

    def missing(self) -> tuple[int, ...]:
        return tuple(s for s in range(1, self.needed + 1) if s not in self.good)


def _pgn(data: bytes) -> int:
    return data[5] | (data[6] << 8) | (data[7] << 16)


class Reassembler:
    """Feed TP.CM and TP.DT frames (with their timestamps); get completed :class:`Transfer` s.

    ``closed`` collects :class:`TransferClosed` notes (bounded to the last ``max_closed_log``)
    for tools that want to show aborts and timeouts; ``anomalies`` counts everything by kind.
    """

    def __init__(
        self,
        timers: TpTimers | None = None,
        *,
        max_sessions: int = 16,
        max_closed_log: int = 256,
    ) -> None:
        self.timers = timers or TpTimers()
        self.max_sessions = max_sessions
        self.max_closed_log = max_closed_log
        self.anomalies: Counter[str] = Counter()
        self.completed = 0
        self.closed: list[TransferClosed] = []
        self._sessions: dict[tuple[int, int], _Session] = {}
        self._recent: dict[tuple[int, int], tuple[int, float]] = {}
        self._next_deadline = float("inf")

    # ------------------------------------------------------------------ public API

    @property
    def open_transfers(self) -> int:
        return len(self._sessions)

    def feed_cm(self, ts: float, sa: int, da: int, data: bytes) -> Transfer | None:
        """Handle one TP.CM frame (PF 0xEC) from ``sa`` to ``da``."""
        if ts > self._next_deadline:
            self.expire(ts)
        if len(data) < 8:
            self._count("short_tp_cm")
            return None
        ctrl = data[0]
        if ctrl == CTRL_RTS:
            self._on_rts(ts, sa, da, data)
        elif ctrl == CTRL_CTS:
            self._on_cts(ts, sa, da, data)
        elif ctrl == CTRL_EOMA:
            self._on_eoma(ts, sa, da, data)
        elif ctrl == CTRL_ABORT:
            self._on_abort(ts, sa, da, data)
        elif ctrl == CTRL_BAM:
            self._on_bam(ts, sa, da, data)
        else:
            self._count("unknown_tp_control")
        return None

    def feed_dt(self, ts: float, sa: int, da: int, data: bytes) -> Transfer | None:
        """Handle one TP.DT frame (PF 0xEB) from ``sa`` to ``da``."""
        if ts > self._next_deadline:
            self.expire(ts)
        key = (sa, da)
        s = self._sessions.get(key)
        if s is None:
            self._count("dt_without_session")
            return None
        if not data:
            self._note(s, "bad_sequence")
            return None
        seq = data[0]
        if seq == 0 or seq > s.total_packets:
            self._note(s, "bad_sequence")
            return None
        if s.state == "complete":
            if s.packets.get(seq) != data[1:8]:
                self._note(s, "dt_after_complete")
            else:
                self._note(s, "duplicate")
            return None
        if not s.seen_cts and s.mode == "rts" and "dt_before_cts" not in s.anomalies:
            self._note(s, "dt_before_cts")
        if s.window is not None:
            first, count = s.window
            if not first <= seq < first + count:
                self._note(s, "dt_outside_window")
        chunk = data[1:8]
        old = s.packets.get(seq)
        if old is not None:
            if old == chunk:
                self._note(s, "duplicate")
                return None
            self._note(s, "retransmitted")
        if seq < s.highest_seq:
            self._note(s, "out_of_order")
        else:
            s.highest_seq = seq
        s.packets[seq] = chunk
        if seq <= s.needed:
            need = min(7, s.total_size - 7 * (seq - 1))
            if len(chunk) >= need:
                s.good.add(seq)
            else:
                s.good.discard(seq)
                self._note(s, "short_dt")
        s.state = "receiving"
        s.last_dt = ts
        s.last_event = ts
        self._update_deadline()
        if len(s.good) == s.needed:
            return self._complete(ts, key, s)
        return None

    def expire(self, ts: float) -> None:
        """Close every transfer whose timer ran out at ``ts`` (run lazily and at end of input)."""
        t = self.timers
        tol = t.tolerance_s
        for key, s in list(self._sessions.items()):
            reason = None
            if s.state == "complete":
                if ts - (s.last_dt or s.last_event) > t.t3_s + tol:
                    reason = "complete_no_eoma"
            elif s.mode == "bam":
                if ts - s.last_event > t.t1_s + tol:
                    reason = "timeout_dt_gap"
            elif s.state == "waiting_cts":
                if ts - s.last_event > t.t3_s + tol:
                    reason = "timeout_no_cts"
            elif s.state == "hold":
                if ts - s.last_event > t.t4_s + tol:
                    reason = "timeout_hold"
            elif s.last_dt is None or s.last_dt < s.last_event:
                if ts - s.last_event > t.t2_s + tol:
                    reason = "timeout_no_dt"
            elif ts - s.last_dt > t.t1_s + tol:
                reason = "timeout_dt_gap"
            if reason is not None:
                # a transfer that already emitted and then got no EndOfMsgAck is quiet
                self._close(ts, key, s, reason, count=reason != "complete_no_eoma")
        self._update_deadline()

    # ------------------------------------------------------------------ frame handlers

    def _validate(self, data: bytes) -> tuple[int, int] | None:
        size = data[1] | (data[2] << 8)
        packets = data[3]
        if not (1 <= size <= MAX_TP_SIZE and 1 <= packets <= 255 and 7 * packets >= size):
            self._count("bad_rts")
            return None
        if packets != (size + 6) // 7:
            self._count("size_packet_mismatch")
        if size <= 8:
            self._count("small_tp")
        return size, packets

    def _on_rts(self, ts: float, sa: int, da: int, data: bytes) -> None:
        checked = self._validate(data)
        if checked is None:
            return
        size, packets = checked
        pgn = _pgn(data)
        key = (sa, da)
        old = self._sessions.get(key)
        if old is not None:
            same = old.pgn == pgn and old.total_size == size and old.total_packets == packets
            if same and not old.packets and old.mode == "rts":
                old.last_event = ts
                self._count("repeated_rts")
                self._update_deadline()
                return
            if not old.emitted:
                self._close(ts, key, old, "replaced")
            else:
                self._close(ts, key, old, "acknowledged", count=False)
        self._open(ts, key, "rts", pgn, size, packets)

    def _on_bam(self, ts: float, sa: int, da: int, data: bytes) -> None:
        checked = self._validate(data)
        if checked is None:
            return
        size, packets = checked
        key = (sa, da)
        old = self._sessions.get(key)
        if old is not None:
            self._close(ts, key, old, "replaced", count=not old.emitted)
        self._open(ts, key, "bam", _pgn(data), size, packets)

    def _open(
        self, ts: float, key: tuple[int, int], mode: str, pgn: int, size: int, n: int
    ) -> None:
        if len(self._sessions) >= self.max_sessions:
            oldest_key = min(self._sessions, key=lambda k: self._sessions[k].last_event)
            self._close(ts, oldest_key, self._sessions[oldest_key], "evicted")
        self._sessions[key] = _Session(
            mode=mode,
            pgn=pgn,
            total_size=size,
            total_packets=n,
            needed=(size + 6) // 7,
            started=ts,
            last_event=ts,
            state="waiting_cts" if mode == "rts" else "receiving",
        )
        self._update_deadline()

    def _on_cts(self, ts: float, sa: int, da: int, data: bytes) -> None:
        s = self._sessions.get((da, sa))
        if s is None or s.mode != "rts":
            self._count("cts_without_rts")
            return
        if _pgn(data) != s.pgn:
            self._note(s, "pgn_mismatch")
            return
        s.seen_cts = True
        granted, nxt = data[1], data[2]
        s.last_event = ts
        if s.state == "complete":
            self._update_deadline()
            return
        if granted == 0:
            s.state = "hold"
            s.window = None
        else:
            s.window = (nxt, granted)
            s.state = "receiving"
            if nxt == 0 or nxt + granted - 1 > s.total_packets:
                self._note(s, "bad_window")
        self._update_deadline()

    def _on_eoma(self, ts: float, sa: int, da: int, data: bytes) -> None:
        key = (da, sa)
        pgn = _pgn(data)
        s = self._sessions.get(key)
        if s is None or s.pgn != pgn or s.mode != "rts":
            recent = self._recent.get(key)
            if recent is not None and recent[0] == pgn and ts - recent[1] <= self.timers.t3_s:
                return
            self._count("eoma_without_session")
            return
        size, packets = data[1] | (data[2] << 8), data[3]
        if size != s.total_size or packets != s.total_packets:
            self._note(s, "eoma_mismatch")
        if s.emitted:
            self._close(ts, key, s, "acknowledged", count=False)
        else:
            self._close(ts, key, s, "incomplete_at_eoma")

    def _on_abort(self, ts: float, sa: int, da: int, data: bytes) -> None:
        pgn = _pgn(data)
        reason_code = data[1]
        try:
            reason: AbortReason | int = AbortReason(reason_code)
        except ValueError:
            reason = reason_code
        candidates = [k for k in ((sa, da), (da, sa)) if k in self._sessions]
        match = [k for k in candidates if self._sessions[k].pgn == pgn]
        if not match and len(candidates) == 1:
            match = candidates
        if not match:
            self._count("abort_without_session")
            return
        key = match[0]
        s = self._sessions[key]
        if s.emitted:
            self._count("aborted_after_complete")
            self._close(ts, key, s, "aborted_after_complete", abort_reason=reason, count=False)
        else:
            self._close(ts, key, s, "aborted", abort_reason=reason)

    # ------------------------------------------------------------------ helpers

    def _complete(self, ts: float, key: tuple[int, int], s: _Session) -> Transfer:
        payload = b"".join(s.packets[i] for i in range(1, s.needed + 1))[: s.total_size]
        s.emitted = True
        s.state = "complete"
        self.completed += 1
        transfer = Transfer(
            ts=ts,
            sa=key[0],
            da=key[1],
            pgn=s.pgn,
            payload=payload,
            started_ts=s.started,
            mode=s.mode,
            anomalies=tuple(dict.fromkeys(s.anomalies)),
        )
        if s.mode == "bam":
            self._close(ts, key, s, "complete", count=False)
        self._update_deadline()
        return transfer

    def _close(
        self,
        ts: float,
        key: tuple[int, int],
        s: _Session,
        reason: str,
        *,
        abort_reason: AbortReason | int | None = None,
        count: bool = True,
    ) -> None:
        self._sessions.pop(key, None)
        if count:
            self._count(reason)
        if len(self._recent) >= self.max_sessions and key not in self._recent:
            self._recent.pop(next(iter(self._recent)))
        self._recent[key] = (s.pgn, ts)
        if reason in ("acknowledged", "complete"):
            return
        note = TransferClosed(ts, key[0], key[1], s.pgn, reason, abort_reason, s.missing())
        self.closed.append(note)
        if len(self.closed) > self.max_closed_log:
            del self.closed[: len(self.closed) - self.max_closed_log]

    def _note(self, s: _Session, kind: str) -> None:
        if len(s.anomalies) < 64:
            s.anomalies.append(kind)
        self.anomalies[kind] += 1

    def _count(self, kind: str) -> None:
        self.anomalies[kind] += 1

    def _update_deadline(self) -> None:
        """A cheap lower bound of the next timer expiry, so ``expire`` runs only when needed."""
        if not self._sessions:
            self._next_deadline = float("inf")
            return
        t = self.timers
        shortest = min(t.t1_s, t.t2_s, t.t3_s, t.t4_s) + t.tolerance_s
        self._next_deadline = shortest + min(
            min(s.last_event, s.last_dt or s.last_event) for s in self._sessions.values()
        )
