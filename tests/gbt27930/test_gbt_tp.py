"""Passive TP reassembly: every rule of spec §4.7, with a fake clock (timestamps as arguments)."""

from __future__ import annotations

from drivers.gbt27930.tp import AbortReason, Reassembler, TpTimers
from tests.gbt27930.gbt_helpers import (
    BMS,
    CHARGER,
    abort,
    bam,
    cts,
    dt_packets,
    eoma,
    rts,
)

BCS = bytes.fromhex("C50EA00F4C614D0000")
BCP = bytes.fromhex("7201DA052A02A510730803C60E")
PGN_BCS, PGN_BCP, PGN_BRM = 0x1100, 0x0600, 0x0200


def run(r: Reassembler, frames: list[tuple[float, str, bytes]]) -> list:
    """frames: (ts, kind, data) with kind rts/cts/dt/eoma/abort (direction implied)."""
    out = []
    for ts, kind, data in frames:
        if kind == "dt":
            t = r.feed_dt(ts, BMS, CHARGER, data)
        elif kind in ("rts", "abort_bms", "bam"):
            t = r.feed_cm(ts, BMS, CHARGER if kind != "bam" else 0xFF, data)
        else:
            t = r.feed_cm(ts, CHARGER, BMS, data)
        if t is not None:
            out.append(t)
    return out


def normal(payload: bytes, pgn: int, t0: float = 0.0) -> list[tuple[float, str, bytes]]:
    n = len(dt_packets(payload))
    frames = [(t0, "rts", rts(len(payload), n, pgn)), (t0 + 0.001, "cts", cts(n, 1, pgn))]
    for i, p in enumerate(dt_packets(payload)):
        frames.append((t0 + 0.01 * (i + 1), "dt", p))
    frames.append((t0 + 0.01 * n + 0.001, "eoma", eoma(len(payload), n, pgn)))
    return frames


def test_normal_transfer_cuts_padding_and_acknowledges() -> None:
    r = Reassembler()
    out = run(r, normal(BCS, PGN_BCS))
    assert len(out) == 1
    t = out[0]
    assert t.payload == BCS and t.pgn == PGN_BCS and t.pf == 0x11
    assert (t.sa, t.da, t.mode, t.anomalies) == (BMS, CHARGER, "rts", ())
    assert t.ts == 0.02 and t.started_ts == 0.0
    assert r.open_transfers == 0 and not r.anomalies and r.completed == 1


def test_capture_bcp_frames() -> None:
    r = Reassembler()
    frames = [
        (0.0, "rts", bytes.fromhex("100D0002FF000600")),
        (0.001, "cts", bytes.fromhex("110201FFFF000600")),
        (0.011, "dt", bytes.fromhex("017201DA052A02A5")),
        (0.020, "dt", bytes.fromhex("0210730803C60EFF")),
        (0.021, "eoma", bytes.fromhex("130D0002FF000600")),
    ]
    (t,) = run(r, frames)
    assert t.payload == BCP


def test_abort_drops_transfer_and_keeps_reason() -> None:
    r = Reassembler()
    frames = [*normal(BCP, PGN_BCP)[:3], (0.02, "abort_bms", abort(PGN_BCP, 255))]
    assert run(r, frames) == []
    assert r.anomalies["aborted"] == 1 and r.open_transfers == 0
    assert r.closed[-1].abort_reason is AbortReason.UNSPECIFIED
    r2 = Reassembler()
    run(r2, [(0.0, "abort", abort(PGN_BRM, 3))])
    assert r2.anomalies["abort_without_session"] == 1


def test_t1_timeout_between_data_frames() -> None:
    r = Reassembler()
    f = normal(BCP, PGN_BCP)
    frames = [*f[:3], (0.011 + 0.76, "dt", f[3][2])]
    assert run(r, frames) == []
    assert r.anomalies["timeout_dt_gap"] == 1
    assert r.anomalies["dt_without_session"] == 1


def test_other_timers() -> None:
    r = Reassembler()
    r.feed_cm(0.0, BMS, CHARGER, rts(9, 2, PGN_BCS))
    r.expire(1.3)
    assert r.anomalies["timeout_no_cts"] == 1
    r.feed_cm(2.0, BMS, CHARGER, rts(9, 2, PGN_BCS))
    r.feed_cm(2.001, CHARGER, BMS, cts(2, 1, PGN_BCS))
    r.expire(3.3)
    assert r.anomalies["timeout_no_dt"] == 1
    r.feed_cm(4.0, BMS, CHARGER, rts(9, 2, PGN_BCS))
    r.feed_cm(4.001, CHARGER, BMS, cts(0, 1, PGN_BCS))
    r.expire(5.1)
    assert r.anomalies["timeout_hold"] == 1
    # complete without EndOfMsgAck closes quietly
    run(r, normal(BCS, PGN_BCS, 6.0)[:-1])
    r.expire(9.0)
    assert r.open_transfers == 0 and r.anomalies["complete_no_eoma"] == 0
    # tolerance widens the timers
    r2 = Reassembler(TpTimers(tolerance_s=1.0))
    r2.feed_cm(0.0, BMS, CHARGER, rts(9, 2, PGN_BCS))
    r2.expire(2.0)
    assert r2.open_transfers == 1


def test_new_rts_replaces_unfinished_and_repeat_rts_is_kept() -> None:
    r = Reassembler()
    f = normal(BCP, PGN_BCP)
    run(r, f[:3])
    out = run(r, normal(BCS, PGN_BCS, 0.05))
    assert [t.payload for t in out] == [BCS]
    assert r.anomalies["replaced"] == 1
    r2 = Reassembler()
    run(r2, [(0.0, "rts", rts(9, 2, PGN_BCS)), (0.1, "rts", rts(9, 2, PGN_BCS))])
    assert r2.anomalies["repeated_rts"] == 1 and r2.open_transfers == 1


def test_duplicate_out_of_order_and_retransmitted() -> None:
    payload = bytes(range(20))  # 3 packets
    p = dt_packets(payload)
    r = Reassembler()
    frames = [
        (0.0, "rts", rts(20, 3, PGN_BCS)),
        (0.001, "cts", cts(3, 1, PGN_BCS)),
        (0.01, "dt", p[1]),
        (0.02, "dt", p[1]),
        (0.03, "dt", p[0]),
        (0.04, "dt", bytes([3]) + b"\x00" * 7),
        (0.05, "dt", p[2]),
    ]
    # the wrong packet 3 completes the message first; its replacement comes too late
    out = run(r, frames)
    assert len(out) == 1 and out[0].payload[:14] == payload[:14]
    assert r.anomalies["duplicate"] == 1 and r.anomalies["out_of_order"] == 1
    assert r.anomalies["dt_after_complete"] == 1
    r2 = Reassembler()
    frames2 = [*frames[:5], (0.035, "dt", bytes([2]) + b"\x07" * 7), (0.05, "dt", p[2])]
    (t,) = run(r2, frames2)
    assert r2.anomalies["retransmitted"] == 1 and t.payload[7:14] == b"\x07" * 7


def test_orphans_and_bad_frames_are_counted() -> None:
    r = Reassembler()
    run(r, [(0.0, "dt", dt_packets(BCS)[0])])
    run(r, [(0.0, "cts", cts(2, 1, PGN_BCS)), (0.0, "eoma", eoma(9, 2, PGN_BCS))])
    r.feed_cm(0.0, BMS, CHARGER, b"\x10\x09")
    r.feed_cm(0.0, BMS, CHARGER, bytes.fromhex("1409000200001100"))
    run(r, [(0.0, "rts", rts(0, 0, PGN_BCS)), (0.0, "rts", rts(2000, 255, PGN_BCS))])
    run(r, [(0.0, "rts", rts(20, 2, PGN_BCS))])  # 2 packets cannot hold 20 bytes
    assert r.anomalies == {
        "dt_without_session": 1,
        "cts_without_rts": 1,
        "eoma_without_session": 1,
        "short_tp_cm": 1,
        "unknown_tp_control": 1,
        "bad_rts": 3,
    }


def test_size_packet_mismatch_small_tp_and_bad_sequence() -> None:
    r = Reassembler()
    run(r, [(0.0, "rts", rts(9, 3, PGN_BCS)), (0.001, "cts", cts(3, 1, PGN_BCS))])
    out = run(
        r, [(0.01, "dt", bytes([4]) + b"\0" * 7), *[(0.02, "dt", p) for p in dt_packets(BCS)]]
    )
    assert out and out[0].payload == BCS
    assert r.anomalies["size_packet_mismatch"] == 1 and r.anomalies["bad_sequence"] == 1
    r2 = Reassembler()
    run(r2, [(0.0, "rts", rts(5, 1, PGN_BCS))])
    assert r2.anomalies["small_tp"] == 1


def test_dt_without_cts_and_pgn_mismatch_and_window() -> None:
    r = Reassembler()
    frames = normal(BCS, PGN_BCS)
    out = run(r, [frames[0], *frames[2:]])  # TP.CM_CTS missed by the listener
    assert out[0].payload == BCS and "dt_before_cts" in out[0].anomalies
    r2 = Reassembler()
    run(r2, [frames[0], (0.001, "cts", cts(2, 1, PGN_BCP))])
    assert r2.anomalies["pgn_mismatch"] == 1
    r3 = Reassembler()
    run(r3, [frames[0], (0.001, "cts", cts(1, 1, PGN_BCS)), *frames[2:]])
    assert r3.anomalies["dt_outside_window"] == 1
    r4 = Reassembler()
    run(r4, [frames[0], (0.001, "cts", cts(5, 0, PGN_BCS))])
    assert r4.anomalies["bad_window"] == 1


def test_short_dt_counts_as_missing_and_eoma_reports_incomplete() -> None:
    r = Reassembler()
    f = normal(BCS, PGN_BCS)
    frames = [f[0], f[1], f[2], (0.02, "dt", bytes([2, 0])), f[4]]
    assert run(r, frames) == []
    assert r.anomalies["short_dt"] == 1 and r.anomalies["incomplete_at_eoma"] == 1
    assert r.closed[-1].missing == (2,)


def test_eoma_mismatch_and_abort_after_complete() -> None:
    r = Reassembler()
    f = normal(BCS, PGN_BCS)
    out = run(r, [*f[:-1], (0.03, "eoma", eoma(10, 2, PGN_BCS))])
    assert len(out) == 1 and r.anomalies["eoma_mismatch"] == 1
    r2 = Reassembler()
    out = run(r2, [*f[:-1], (0.03, "cts_side_abort", abort(PGN_BCS, 2))])
    assert len(out) == 1 and r2.anomalies["aborted_after_complete"] == 1


def test_bam_broadcast() -> None:
    r = Reassembler()
    r.feed_cm(0.0, BMS, 0xFF, bam(9, 2, PGN_BCS))
    out = [r.feed_dt(0.05 * (i + 1), BMS, 0xFF, p) for i, p in enumerate(dt_packets(BCS))]
    assert out[-1] is not None and out[-1].payload == BCS and out[-1].mode == "bam"
    assert r.open_transfers == 0
    r.feed_cm(1.0, BMS, 0xFF, bam(9, 2, PGN_BCS))
    r.feed_cm(1.1, BMS, 0xFF, bam(13, 2, PGN_BCP))
    assert r.anomalies["replaced"] == 1
    r.expire(2.0)
    assert r.anomalies["timeout_dt_gap"] == 1


def test_memory_is_bounded() -> None:
    r = Reassembler(max_sessions=4, max_closed_log=10)
    for i in range(1000):
        r.feed_cm(i * 0.001, i % 250, (i * 7) % 250, rts(1785, 255, PGN_BCS))
    assert r.open_transfers <= 4
    assert len(r.closed) <= 10
    assert r.anomalies["evicted"] + r.anomalies["replaced"] >= 990
