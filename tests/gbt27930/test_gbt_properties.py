"""Bad input: arbitrary frames and interleavings never make the cores raise or grow without
bound, and what they reject is counted. The real capture still yields a session summary when
frames are dropped, duplicated or reordered at random."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.gbt27930.decode import decode
from drivers.gbt27930.frames import make_id
from drivers.gbt27930.messages import SPECS, Message
from drivers.gbt27930.pipeline import Pipeline
from drivers.gbt27930.replay import read_frames, run_frames
from drivers.gbt27930.report import session_record
from drivers.gbt27930.tp import Reassembler
from tests.gbt27930.gbt_helpers import BMS, CHARGER

ADDRS = st.sampled_from([BMS, CHARGER, 0xFF, 0xB5, 0x00])
PFS = st.sampled_from([*SPECS, 0xEC, 0xEB, 0x20, 0x23, 0x70, 0x99])


@settings(max_examples=400, deadline=None)
@given(pf=st.integers(0, 255), data=st.binary(max_size=2000), via_tp=st.booleans())
def test_decode_never_raises(pf: int, data: bytes, via_tp: bool) -> None:
    m = decode(pf, data, via_tp)
    assert isinstance(m, Message) and m.raw == data


frame = st.tuples(
    st.floats(0, 0.5),  # time step
    PFS,
    ADDRS,
    ADDRS,
    st.integers(0, 7),
    st.binary(max_size=12),
    st.booleans(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame, max_size=300))
def test_pipeline_never_raises_and_counts(frames: list) -> None:
    p = Pipeline(keep_messages=True)
    ts = 0.0
    for step, pf, sa, da, prio, data, extended in frames:
        ts += step
        p.feed(ts, make_id(pf, sa, da, prio), data, is_extended=extended)
    p.finish(ts + 100)
    c = p.counts
    assert c.total == len(frames)
    assert c.gbt + c.tp_cm + c.tp_dt + c.foreign + c.ignored == c.total
    assert p.reassembler.open_transfers <= p.reassembler.max_sessions
    assert p.tracker is not None and p.tracker.phase is None


tp_frame = st.tuples(
    st.floats(0, 0.3),
    st.sampled_from(["rts", "cts", "dt", "eoma", "abort", "bam", "junk"]),
    st.booleans(),  # direction
    st.integers(0, 300),  # size
    st.integers(0, 260),  # packets / seq / granted
    st.sampled_from([0x0200, 0x0600, 0x1100, 0x1500]),
    st.binary(min_size=0, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(tp_frame, max_size=400))
def test_reassembler_interleavings(frames: list) -> None:
    r = Reassembler(max_sessions=4, max_closed_log=16)
    ts = 0.0
    total_events = 0
    for step, kind, fwd, size, n, pgn, junk in frames:
        ts += step
        sa, da = (BMS, CHARGER) if fwd else (CHARGER, BMS)
        p = pgn.to_bytes(3, "little")
        n8 = n & 0xFF
        if kind == "rts":
            t = r.feed_cm(ts, sa, da, bytes([0x10, size & 0xFF, size >> 8, n8, 0xFF]) + p)
        elif kind == "bam":
            t = r.feed_cm(ts, sa, 0xFF, bytes([0x20, size & 0xFF, size >> 8, n8, 0xFF]) + p)
        elif kind == "cts":
            t = r.feed_cm(ts, sa, da, bytes([0x11, n8, size & 0xFF, 0xFF, 0xFF]) + p)
        elif kind == "eoma":
            t = r.feed_cm(ts, sa, da, bytes([0x13, size & 0xFF, size >> 8, n8, 0xFF]) + p)
        elif kind == "abort":
            t = r.feed_cm(ts, sa, da, bytes([0xFF, n8, 0xFF, 0xFF, 0xFF]) + p)
        elif kind == "dt":
            t = r.feed_dt(ts, sa, da if size % 3 else 0xFF, bytes([n8]) + junk[:7])
        else:
            t = r.feed_cm(ts, sa, da, junk)
        if t is not None:
            total_events += 1
            assert len(t.payload) <= 1785
        assert r.open_transfers <= 4 and len(r.closed) <= 16
        assert all(len(s.packets) <= 255 for s in r._sessions.values())
    r.expire(ts + 10)
    assert r.open_transfers == 0
    assert total_events == r.completed


@pytest.fixture(scope="module")
def capture_frames() -> list:
    from tests.conftest import CAPTURE

    if not CAPTURE.is_file():
        pytest.skip(f"real capture not available at {CAPTURE}")
    return list(read_frames(CAPTURE))


@pytest.mark.parametrize("seed", range(12))
def test_capture_with_drops_duplicates_and_reordering(capture_frames: list, seed: int) -> None:
    rng = random.Random(seed)
    frames = []
    for f in capture_frames:
        roll = rng.random()
        if roll < 0.05:
            continue  # dropped
        frames.append(f)
        if roll > 0.96:
            frames.append(f)  # duplicated
    for _ in range(len(frames) // 30):  # swap neighbours: out-of-order delivery
        i = rng.randrange(len(frames) - 1)
        frames[i], frames[i + 1] = frames[i + 1], frames[i]
    result = run_frames(frames, keep_messages=False)
    assert result.sessions, "a session summary must come out"
    summary = session_record(result.sessions[-1].summary)
    assert summary["start_ts"] <= summary["end_ts"]
    tp = result.pipeline.reassembler.anomalies
    assert sum(tp.values()) > 0  # something was noticed and counted
    bcs = result.pipeline.counts.messages["BCS"]
    assert 50 <= bcs <= 112
    vins = {
        session_record(s.summary)["vehicle"]["vin"]
        for s in result.sessions
        if s.summary.brm is not None
    }
    assert vins <= {"L1NSPGH98NA196202"}
