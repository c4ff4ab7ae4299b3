"""Session tracker: phases, 2011-era sessions, errors and reconnects, silence, pauses, untrusted
values and stop initiators, driven with a fake clock."""

from __future__ import annotations

from drivers.gbt27930.decode import decode
from drivers.gbt27930.enums import Status2
from drivers.gbt27930.events import (
    BmsEvent,
    ChargingPaused,
    ChargingResumed,
    ChargingSample,
    CommunicationLost,
    ErrorReported,
    ParametersReceived,
    Phase,
    SessionClosed,
    SessionEnded,
    SessionStarted,
    StopRequested,
    VehicleIdentified,
)
from drivers.gbt27930.pipeline import Pipeline
from drivers.gbt27930.tracker import Tracker, TrackerConfig
from sim.charging import SimOptions, VehicleProfile, generate

H = bytes.fromhex
BRM_V10 = H("000100030F05400E") + b"\xff" * 16 + b"LGBH52E0XAY123456"
M = {
    "CHM": (0x26, "010100"),
    "BHM": (0x27, "A510"),
    "CRM00": (0x01, "00FFFFFFFFFFFFFF"),
    "CRMAA": (0x01, "AAFFFFFFFFFFFFFF"),
    "CML6": (0x08, "1C257C01DC05"),
    "BRO": (0x09, "AA"),
    "CROAA": (0x0A, "AA"),
    "BCL": (0x10, "A510D80E02"),
    "CCS6": (0x12, "240BA00F0000"),
    "CCS": (0x12, "240BA00F0000FD"),
    "CCS_PAUSE": (0x12, "240BA00F0000FC"),
    "BSM": (0x13, "1E3606350F0010"),
    "BSM_PAUSE": (0x13, "1E3606350F0000"),
    "BSM_UNTRUSTED": (0x13, "1E3606350F0012"),
    "BSM_INSUL": (0x13, "1E3606350F0011"),
    "BST_SOC": (0x19, "01F0F0F0"),
    "BST_BYCHG": (0x19, "40F0F0F0"),
    "CST_BYBMS": (0x1A, "40F0F0F0"),
    "CST_MANUAL": (0x1A, "04F0F0F0"),
    "BSD": (0x1C, "4D4D014E013536"),
    "CSD": (0x1D, "0A00F4010A000000"),
    "BEM_CCS": (0x1E, "F0F0F1FC"),
    "CEM_BCL": (0x1F, "FCF0F4FC"),
}


def msg(key: str):
    pf, hexdata = M[key]
    return decode(pf, H(hexdata))


def feed_all(t: Tracker, items: list[tuple[float, str]]) -> list:
    out = []
    for ts, key in items:
        out += t.feed(ts, decode(0x02, BRM_V10, True) if key == "BRM" else msg(key))
    return out


def charging_block(t0: float, seconds: float, step: float = 0.05) -> list[tuple[float, str]]:
    items = []
    n = int(seconds / step)
    for i in range(n):
        ts = t0 + i * step
        items.append((ts, "BCL"))
        items.append((ts + 0.01, "CCS"))
        if i % 5 == 0:
            items.append((ts + 0.02, "BSM"))
    return items


def test_2011_session_without_handshake() -> None:
    t = Tracker("c1")
    items = [
        (0.0, "CRM00"),
        (0.1, "BRM"),
        (0.2, "CRMAA"),
        (0.3, "CML6"),
        (0.4, "BRO"),
        (0.5, "CROAA"),
    ]
    items += [(0.6 + i * 0.05, "CCS6") for i in range(20)]
    items += [(2.0, "BST_SOC"), (2.01, "CST_BYBMS"), (2.3, "BSD"), (2.31, "CSD")]
    events = feed_all(t, items) + t.finish(30.0)
    assert isinstance(events[0], SessionStarted) and events[0].phase is Phase.RECOGNITION
    closed = events[-1]
    assert isinstance(closed, SessionClosed) and closed.end_reason == "normal"
    s = closed.summary
    assert s.generation == "2011" and s.protocol_version == "1.0"
    assert s.brm is not None and s.brm.vin == "LGBH52E0XAY123456"
    assert s.charger_number is None and s.stop_initiator == "bms"
    assert (
        "charger_2011_era" in s.flags and s.cml is not None and s.cml.min_output_current_a is None
    )
    assert s.csd is not None and (s.csd.output_energy_kwh, s.csd.cumulative_charge_time_min) == (
        50.0,
        10,
    )
    assert [p.phase for p in s.phases] == [
        Phase.RECOGNITION,
        Phase.CONFIGURATION,
        Phase.CHARGING,
        Phase.STOPPING,
        Phase.STATISTICS,
    ]


def test_error_then_reconnect() -> None:
    t = Tracker()
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "BRM"), (0.3, "CRMAA"), (0.4, "CROAA")]
    items += charging_block(0.5, 1.0)
    items += [(1.6, "BEM_CCS"), (1.85, "BEM_CCS"), (2.1, "CRM00"), (2.2, "CRMAA"), (2.3, "CROAA")]
    events = feed_all(t, items)
    errors = [e for e in events if isinstance(e, ErrorReported)]
    assert len(errors) == 1 and errors[0].side == "bms" and errors[0].timeouts == ("timeout_ccs",)
    assert t.phase is Phase.CHARGING
    (closed,) = [e for e in t.finish(100.0) if isinstance(e, SessionClosed)]
    assert closed.summary.reconnect_attempts == 1
    assert closed.summary.errors[0].timeouts == ("timeout_ccs",)


def test_excess_reconnects_and_error_end() -> None:
    t = Tracker()
    items = [(0.0, "CRM00")]
    for k in range(5):
        items += [(1.0 + k, "CEM_BCL"), (1.5 + k, "CRM00")]
    items.append((7.0, "CEM_BCL"))
    events = feed_all(t, items) + t.tick(7.0 + 36.0)
    closed = events[-1]
    assert isinstance(closed, SessionClosed) and closed.end_reason == "error"
    assert closed.summary.reconnect_attempts == 5 and "excess_reconnects" in closed.summary.flags


def test_communication_lost_in_charging() -> None:
    t = Tracker("c2")
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "CRMAA"), (0.3, "CROAA")]
    items += charging_block(0.4, 2.0)
    events = feed_all(t, items)
    last = items[-1][0]
    assert t.tick(last + 1.2) == []  # within the 1 s timeout plus 0.5 s tolerance
    lost = t.tick(last + 1.6)
    assert len(lost) == 1 and isinstance(lost[0], CommunicationLost)
    assert lost[0].phase is Phase.CHARGING and lost[0].reason == "silence"
    closed = t.tick(last + 10.0)
    assert isinstance(closed[-1], SessionClosed) and closed[-1].end_reason == "lost"
    assert closed[-1].ts == last and closed[-1].summary.timeouts[0].phase is Phase.CHARGING
    assert any(isinstance(e, ChargingSample) for e in events)


def test_session_that_disappears_and_restarts() -> None:
    t = Tracker()
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "CRMAA"), (0.3, "CROAA"), *charging_block(0.4, 1)]
    items.append((1.5, "CHM"))
    events = feed_all(t, items)
    kinds = [type(e).__name__ for e in events if not isinstance(e, ChargingSample)]
    assert kinds[-3:] == ["CommunicationLost", "SessionClosed", "SessionStarted"]
    closed = next(e for e in events if isinstance(e, SessionClosed))
    assert closed.end_reason == "lost" and "restarted_without_end" in closed.summary.flags


def test_pauses_and_untrusted_values() -> None:
    t = Tracker()
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "CRMAA"), (0.3, "CROAA"), (0.4, "BSM")]
    items += [
        (0.5, "BSM_PAUSE"),
        (0.6, "BSM_PAUSE"),
        (0.7, "BSM"),
        (0.8, "CCS_PAUSE"),
        (0.9, "CCS"),
        (1.0, "BSM_UNTRUSTED"),
        (1.1, "BSM_INSUL"),
        (2.5, "BSM_UNTRUSTED"),
    ]
    events = feed_all(t, items)
    paused = [
        (type(e).__name__, e.by, e.ts)
        for e in events
        if isinstance(e, ChargingPaused | ChargingResumed)
    ]
    assert paused == [
        ("ChargingPaused", "bms", 0.5),
        ("ChargingResumed", "bms", 0.7),
        ("ChargingPaused", "charger", 0.8),
        ("ChargingResumed", "charger", 0.9),
    ]
    samples = [e for e in events if isinstance(e, ChargingSample)]
    # the untrusted insulation code keeps the last trusted value (ABNORMAL from 1.1)
    assert samples[-1].ts == 2.5 and samples[-1].insulation_status is Status2.ACTIVE
    (closed,) = [e for e in t.finish(20) if isinstance(e, SessionClosed)]
    assert closed.summary.untrusted_values == 2
    assert [(p.by, p.start_ts, p.end_ts) for p in closed.summary.pauses] == [
        ("bms", 0.5, 0.7),
        ("charger", 0.8, 0.9),
    ]


def test_initiator_conflict_trusts_reason_bits() -> None:
    t = Tracker()
    items = [
        (0.0, "CHM"),
        (0.1, "CRM00"),
        (0.2, "CRMAA"),
        (0.3, "CROAA"),
        (0.4, "BCL"),
        (0.5, "BST_BYCHG"),
        (0.52, "CST_MANUAL"),
    ]
    events = feed_all(t, items)
    stops = [e for e in events if isinstance(e, StopRequested)]
    assert stops[0].side == "bms" and stops[0].initiator == "charger"
    assert stops[0].initiator_conflict
    (closed,) = [e for e in t.finish(30) if isinstance(e, SessionClosed)]
    assert closed.summary.stop_initiator == "charger"
    assert closed.end_reason == "stopped_without_statistics"
    assert "initiator_conflict" in closed.summary.flags


def test_late_join_and_missed_phases() -> None:
    t = Tracker()
    events = feed_all(t, [(0.0, "BCL"), (0.05, "CCS")])
    assert isinstance(events[0], SessionStarted) and events[0].phase is Phase.CHARGING
    (closed,) = [e for e in t.finish(1.0) if isinstance(e, SessionClosed)]
    assert "joined_late" in closed.summary.flags and "input_ended" in closed.summary.flags
    t2 = Tracker()
    feed_all(t2, [(0.0, "CHM"), (0.1, "BCL")])
    (closed2,) = [e for e in t2.finish() if isinstance(e, SessionClosed)]
    assert "missed_cro_aa" in closed2.summary.flags


def test_aborted_before_charging_and_statistics_then_new_session() -> None:
    t = Tracker()
    events = feed_all(t, [(0.0, "CHM"), (0.25, "BHM")]) + t.tick(11.0)
    closed = events[-1]
    assert isinstance(closed, SessionClosed) and closed.end_reason == "aborted_before_charging"
    assert closed.summary.timeouts and closed.summary.timeouts[0].phase is Phase.HANDSHAKE
    t2 = Tracker()
    events = feed_all(t2, [(0.0, "CHM"), (0.1, "BSD"), (0.2, "CSD"), (1.0, "CHM")])
    kinds = [type(e).__name__ for e in events]
    assert kinds[-3:] == ["SessionEnded", "SessionClosed", "SessionStarted"] or kinds[-2:] == [
        "SessionClosed",
        "SessionStarted",
    ]
    assert t2.session_id == 2


def test_sample_interval_is_configurable() -> None:
    t = Tracker(config=TrackerConfig(sample_interval_s=0.25))
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "CRMAA"), (0.3, "CROAA"), *charging_block(0.4, 2)]
    samples = [e for e in feed_all(t, items) if isinstance(e, ChargingSample)]
    assert 7 <= len(samples) <= 9


def test_constant_timestamps_sample_per_message_cycle() -> None:
    """All frames stamped alike: after a warm-up cycle, one sample per cycle of BCL/CCS/BSM,
    flagged; when BSM stops coming, samples go on (a cycle closes after 20 repeats of one kind
    without it, and the cycle is then what still arrives)."""
    t = Tracker()
    setup = [(5.0, "CHM"), (5.0, "CRM00"), (5.0, "CRMAA"), (5.0, "CROAA")]
    cycle = [(5.0, "BCL"), (5.0, "CCS")] * 5 + [(5.0, "BSM")]
    warm_up = [e for e in feed_all(t, setup + cycle * 2) if isinstance(e, ChargingSample)]
    assert warm_up and all(e.timestamps_constant for e in warm_up)
    steady = [e for e in feed_all(t, cycle * 10) if isinstance(e, ChargingSample)]
    assert len(steady) == 10 and all(e.timestamps_constant for e in steady)
    without_bsm = [e for e in feed_all(t, cycle[:-1] * 10) if isinstance(e, ChargingSample)]
    assert len(without_bsm) >= 10
    (closed,) = [e for e in t.finish() if isinstance(e, SessionClosed)]
    assert closed.summary.timestamps_constant and closed.summary.start_ts == closed.summary.end_ts


def test_advancing_timestamps_are_not_constant() -> None:
    t = Tracker()
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "CRMAA"), (0.3, "CROAA"), *charging_block(0.4, 3)]
    samples = [e for e in feed_all(t, items) if isinstance(e, ChargingSample)]
    assert len(samples) == 3 and not any(e.timestamps_constant for e in samples)
    (closed,) = [e for e in t.finish() if isinstance(e, SessionClosed)]
    assert not closed.summary.timestamps_constant


def test_events_carry_the_sessions_facts() -> None:
    """Content events carry the tracker's session data: latest BRM/BCP/CML, the first BST and
    CST (a later, different BST changes the summary's latest BST, not the facts), the latest
    BEM/CEM with the side that reported last, and the statistics."""
    t = Tracker()
    items = [(0.0, "CHM"), (0.1, "CRM00"), (0.2, "BRM"), (0.3, "CRMAA"), (0.4, "CML6")]
    items += [(0.5, "CROAA"), (0.6, "BEM_CCS"), (0.7, "CEM_BCL"), (0.8, "BST_SOC")]
    items += [(0.85, "BST_BYCHG"), (0.9, "CST_BYBMS"), (1.0, "BSD"), (1.1, "CSD")]
    events = feed_all(t, items)
    (vehicle,) = [e for e in events if isinstance(e, VehicleIdentified)]
    assert vehicle.facts.brm is vehicle.brm and vehicle.facts.bst is None
    (params,) = [e for e in events if isinstance(e, ParametersReceived)]
    assert params.facts.cml is params.cml and params.facts.brm is vehicle.brm
    errors = [e for e in events if isinstance(e, ErrorReported)]
    assert [e.facts.last_error_side for e in errors] == ["bms", "charger"]
    assert errors[-1].facts.bem is errors[0].message and errors[-1].facts.cem is errors[1].message
    stops = [e for e in events if isinstance(e, StopRequested)]
    assert [e.side for e in stops] == ["bms", "charger"]
    first_bst = stops[0].message
    assert stops[1].facts.bst is first_bst and stops[1].facts.cst is stops[1].message
    assert stops[1].facts.stop_initiator == "bms"
    (ended,) = [e for e in events if isinstance(e, SessionEnded)]
    assert ended.facts.csd is ended.csd and ended.facts.bsd is ended.bsd
    assert ended.facts.bst is first_bst and ended.facts.bem is errors[0].message
    (closed,) = [e for e in t.finish(30.0) if isinstance(e, SessionClosed)]
    assert closed.summary.bst is not None and closed.summary.bst is not first_bst


def test_a_session_joined_mid_charging_runs_to_a_normal_end() -> None:
    """A gateway restarted mid-session sees the cyclic charging messages first: the tracker
    starts in a joined-late charging state, samples them (SOC and the charger's charging time
    included, what the station compares with the open session), and follows the stop and the
    statistics to a normal end."""
    s = generate(VehicleProfile(capacity_ah=20.0), options=SimOptions())
    back = s.curve[0].ts + 90
    pipe = Pipeline("DC1")
    events: list[BmsEvent] = []
    for f in s.frames:
        if f.ts >= back:
            events += [e for e in pipe.feed(f.ts, f.can_id, f.data) if isinstance(e, BmsEvent)]
    events += [e for e in pipe.finish() if isinstance(e, BmsEvent)]
    started = events[0]
    assert isinstance(started, SessionStarted) and started.joined_late
    assert started.phase is Phase.CHARGING
    samples = [e for e in events if isinstance(e, ChargingSample)]
    assert samples and samples[0].ts - back < 1.0
    assert any(e.soc_pct is not None for e in samples[:5])
    assert any(e.cumulative_charge_time_min is not None for e in samples[:5])
    assert {e.side for e in events if isinstance(e, StopRequested)} == {"bms", "charger"}
    assert any(isinstance(e, SessionEnded) for e in events)
    (closed,) = [e for e in events if isinstance(e, SessionClosed)]
    assert closed.end_reason == "normal" and "joined_late" in closed.summary.flags
