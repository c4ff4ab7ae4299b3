"""Register decoding: every type and order, exponent registers, broken replies."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import choose_exponent, encode_value, plan_reads
from drivers.modbus.events import MeterAlarm, MeterAnomaly, MeterOffline, MeterOnline
from drivers.modbus.health import MeterHealth
from drivers.modbus.profile import load_profiles
from drivers.modbus.profile_toml import parse_profile


def _profile(quantities: dict, **modbus):
    data = {
        "meter": {"vendor": "T", "model": "T", "kind": "ac1"},
        "link": {"baud": 9600},
        "modbus": {"function": 3, **modbus},
        "quantities": quantities,
    }
    return parse_profile(data, "t", "t.toml")


@pytest.mark.parametrize(
    ("typ", "word", "byte", "regs", "expected"),
    [
        ("u16", "big", "big", [0xFFFE], 65534),
        ("i16", "big", "big", [0xFFFE], -2),
        ("u32", "big", "big", [0x0001, 0x0002], 65538),
        ("u32", "little", "big", [0x0002, 0x0001], 65538),
        ("i32", "big", "big", [0xFFFF, 0xFFFF], -1),
        ("f32", "big", "big", list(struct.unpack(">2H", struct.pack(">f", 230.5))), 230.5),
        ("f32", "little", "big", list(struct.unpack(">2H", struct.pack(">f", 230.5)))[::-1], 230.5),
        ("f32", "big", "little", [0x6643, 0x0080], 230.5),  # BADC
        ("f64", "big", "big", list(struct.unpack(">4H", struct.pack(">d", 1.25))), 1.25),
        ("u64", "little", "big", [5, 0, 0, 0], 5),
    ],
)
def test_types_and_orders(typ, word, byte, regs, expected) -> None:
    prof = _profile(
        {"x_v": {"address": 10, "type": typ, "word_order": word, "byte_order": byte, "unit": ""}}
    )
    plan = plan_reads(prof.resolve())
    out = plan.decode([regs])
    assert out.values["x_v"] == pytest.approx(expected)


@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from(["big", "little"]),
    st.sampled_from(["big", "little"]),
)
def test_encode_decode_roundtrip(value: float, word: str, byte: str) -> None:
    prof = _profile(
        {
            "x_v": {
                "address": 0,
                "type": "f32",
                "word_order": word,
                "byte_order": byte,
                "scale": 0.1,
                "unit": "",
            }
        }
    )
    plan = plan_reads(prof.resolve())
    q = prof.quantities[0]
    out = plan.decode([encode_value(q, value)])
    assert out.values["x_v"] == pytest.approx(value, rel=1e-6, abs=1e-3)


def test_contiguous_blocks_limit() -> None:
    qs = {f"x_q{i}": {"address": i * 2, "type": "f32", "unit": ""} for i in range(100)}
    plan = plan_reads(_profile(qs).resolve())
    assert [b.count for b in plan.blocks] == [124, 76]
    gap = _profile(
        {
            "x_a": {"address": 0, "type": "u16", "unit": ""},
            "x_b": {"address": 3, "type": "u16", "unit": ""},
        },
        max_gap=2,
    )
    assert [(b.address, b.count) for b in plan_reads(gap.resolve()).blocks] == [(0, 4)]
    nogap = _profile(
        {
            "x_a": {"address": 0, "type": "u16", "unit": ""},
            "x_b": {"address": 3, "type": "u16", "unit": ""},
        }
    )
    assert len(plan_reads(nogap.resolve()).blocks) == 2


def test_djsf_exponents_flags_and_encode() -> None:
    prof = load_profiles()["djsf1352"]
    res = prof.resolve()
    plan = plan_reads(res)
    assert len(plan.blocks) == 1 and plan.blocks[0].count == 20
    q = {x.name: x for x in res.quantities}
    regs = [0] * 20
    e_v = choose_exponent(q["voltage_v"], 750.2)
    regs[0] = encode_value(q["voltage_v"], 750.2, e_v)[0]
    regs[1] = e_v
    regs[2:4] = [encode_value(q["current_a"], -120.5, 2)[0], 2]
    regs[4] = 1  # broken wire
    regs[5] = encode_value(q["temperature_c"], 31.5)[0]
    regs[8:10] = [encode_value(q["power_w"], 9000.0, 4)[0], 4]
    regs[12:14] = encode_value(q["energy_import_kwh"], 1234.567)
    regs[0x12] = 0b1_0000_0001  # DO1 and DI1
    out = plan.decode([regs])
    assert out.values["voltage_v"] == pytest.approx(750.2, abs=0.01)
    assert out.values["current_a"] == pytest.approx(-120.5, abs=0.1)
    assert out.values["power_w"] == pytest.approx(9000.0)
    assert out.values["temperature_c"] == pytest.approx(31.5)
    assert out.values["energy_import_kwh"] == pytest.approx(1234.567)
    assert out.flags == {
        "wire_broken": True,
        "do1": True,
        "do2": False,
        "di1": True,
        "di2": False,
        "alarm_active": False,
    }


def test_broken_replies_reject_not_crash() -> None:
    prof = load_profiles()["sdm120"]
    plan = plan_reads(prof.resolve())
    nan = list(struct.unpack(">2H", struct.pack(">f", math.nan)))
    inf = list(struct.unpack(">2H", struct.pack(">f", math.inf)))
    results: list = [nan, inf, [1], "exception 2 (illegal data address)"]
    results += [[0] * b.count for b in plan.blocks[len(results) :]]
    out = plan.decode(results)
    assert out.rejected["voltage_v"] == "not a number (NaN)"
    assert out.rejected["current_a"] == "infinite value"
    assert "expected 2" in out.rejected["power_w"]
    assert "illegal data address" in out.rejected["apparent_power_va"]
    assert out.values["energy_import_kwh"] == 0.0
    with pytest.raises(ValueError):
        plan.decode(results[:-1])  # wrong number of blocks is a programming error


def test_exponent_garbage_and_sentinel() -> None:
    prof = _profile(
        {
            "voltage_v": {
                "address": 0,
                "type": "u16",
                "unit": "V",
                "exponent": {"address": 1, "offset": -3},
            },
            "current_a": {"address": 2, "type": "u16", "unit": "A", "sentinel": 0xFFFF},
        }
    )
    plan = plan_reads(prof.resolve())
    out = plan.decode([[100, 500, 0xFFFF]])
    assert "decimal-point register" in out.rejected["voltage_v"]
    assert "not available" in out.rejected["current_a"]


def test_checker_rejects_impossible_and_flags_energy() -> None:
    prof = load_profiles()["djsf1352"]
    plan = plan_reads(prof.resolve())
    checker = ReadingChecker("m1", rated_power_w=60_000, alarm_flags=("wire_broken",))

    def decoded(energy_wh: int, volts_raw: int = 7502, wire: int = 0):
        regs = [0] * 20
        regs[0], regs[1] = volts_raw, 2
        regs[4] = wire
        regs[12], regs[13] = energy_wh >> 16, energy_wh & 0xFFFF
        return plan.decode([regs])

    r, ev = checker.check(decoded(1_000_000), 0.0)
    assert r.energy_import_kwh == 1000.0 and ev == []
    # 60 kW for 60 s allows 1 kWh (+10 %, +0.02): 1.05 kWh is fine, 5 kWh is a jump
    r, ev = checker.check(decoded(1_001_050), 60.0)
    assert ev == [] and r.notes == ()
    r, ev = checker.check(decoded(1_006_050), 120.0)
    assert [e.reason for e in ev] == ["energy_jump"] and r.energy_import_kwh == 1006.05
    # a register going back is reported by the station (tests/station: 1006.05 → 0.01); the
    # driver passes the value on and measures jumps from it
    r, ev = checker.check(decoded(10), 180.0)
    assert ev == [] and r.energy_import_kwh == 0.01 and r.notes == ()
    # impossible voltage (2000 V DC) rejected once, with a reason; alarm raised and cleared
    r, ev = checker.check(decoded(20, volts_raw=20000, wire=1), 240.0)
    assert "voltage_v" not in r.values and "physical range" in r.rejected["voltage_v"]
    assert [type(e) for e in ev] == [MeterAnomaly, MeterAlarm]
    assert r.alarms == ("wire_broken",)
    r, ev = checker.check(decoded(20, volts_raw=20000, wire=0), 300.0)
    assert ev == [MeterAlarm("m1", 300.0, "wire_broken", False)]


def test_health_offline_backoff_online() -> None:
    h = MeterHealth("m", offline_after=2, backoff_s=10, backoff_max_s=40)
    assert [type(e) for e in h.success(0)] == [MeterOnline]
    assert h.failure(1, "timeout") == []
    ev = h.failure(2, "timeout")
    assert ev == [MeterOffline("m", 2, 2, "timeout")]
    assert not h.due(11) and h.due(12)
    h.failure(12, "timeout")  # backoff doubles: next try at 32
    assert not h.due(31) and h.due(32)
    h.failure(32, "t")
    h.failure(72, "t")  # capped at 40
    assert h.due(112) and not h.due(111)
    assert h.success(112) == [MeterOnline("m", 112, 2)]
