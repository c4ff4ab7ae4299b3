"""Modbus meter identity (profile ``[identity]``): the registers read at the first poll and
every ``seal_interval_s`` over a socat pty RTU line and over TCP against the simulator, a
CT ratio reprogrammed between polls (``MeterReplaced``), a meter that refuses the
registers (its energy polling goes on, logged once), broken identity tables refused with
their key path, and the decoding of the register words fuzzed."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.events import MeterIdentity, MeterReading, MeterReplaced
from drivers.modbus.identity import identity_text, identity_words
from drivers.modbus.link import SerialLineSpec, TcpLineSpec, quiet_library_logging
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles
from drivers.modbus.profile_check import ProfileError
from drivers.modbus.profile_model import IDENTITY as IDENTITY_NAMES
from drivers.modbus.profile_model import IDENTITY_TYPES, ORDERS, IdentityRegister
from drivers.modbus.profile_toml import parse_profile
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import open_pty_pair

PROFILES = load_profiles()
quiet_library_logging()
DTSU_IDENTITY = {
    "ct_ratio": "1",
    "pt_ratio": "1",
    "protocol": "1",
    "baud_code": "1",
    "modbus_address": "4",
}


def test_shipped_profiles_declare_the_spec_registers() -> None:
    def regs(name: str) -> dict[str, int]:
        return {r.name: r.address for r in PROFILES[name].identity}

    assert regs("dtsu666") == {
        "ct_ratio": 0x0006,
        "pt_ratio": 0x0007,
        "protocol": 0x002C,
        "baud_code": 0x002D,
        "modbus_address": 0x002E,
    }
    assert regs("adl400") == {"pt_ratio": 0x008D, "ct_ratio": 0x008E}
    assert regs("djsf1352") == {"pt_ratio": 0x0010, "rated_current_a": 0x0011, "firmware": 0x0023}
    assert regs("sdm630") == {}


def _events(got: list, kind: type) -> list:
    return [e for e in got if isinstance(e, kind)]


async def _identity_round(poller: LinePoller, sim: SimMeter, got: list) -> None:
    """First poll reads the identity; within the interval it is not read again; a CT ratio
    reprogrammed is noticed at the next due read; ``check_seal`` reads at the next poll."""
    assert await poller.poll("ac", 100.0) is not None
    [first] = _events(got, MeterIdentity)
    assert first.identity == DTSU_IDENTITY
    requests = sim.requests
    assert await poller.poll("ac", 110.0) is not None
    assert sim.requests - requests == len(sim.plan.blocks)  # the energy, no identity
    sim.set_identity("ct_ratio", 200)
    assert await poller.poll("ac", 120.0) is not None
    assert _events(got, MeterReplaced) == []  # not due before 100 + 30 s
    reading = await poller.poll("ac", 131.0)
    assert isinstance(reading, MeterReading)
    [replaced] = _events(got, MeterReplaced)
    assert replaced.previous == DTSU_IDENTITY
    assert replaced.current == {**DTSU_IDENTITY, "ct_ratio": "200"}
    assert replaced.ts == 131.0
    # a session starts: the identity is read at the next poll, whatever the interval
    sim.set_identity("pt_ratio", 100)
    poller.check_seal("ac")
    assert await poller.poll("ac", 135.0) is not None
    assert _events(got, MeterReplaced)[-1].current["pt_ratio"] == "100"


def _dtsu(unit: int = 4) -> SimMeter:
    sim = SimMeter(PROFILES["dtsu666"], unit, power_w=11_000.0, energy_import_kwh=42.0)
    for name in ("ct_ratio", "pt_ratio", "protocol", "baud_code"):
        sim.set_identity(name, 1)
    return sim


async def test_identity_over_rtu_pty(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    sim = _dtsu()
    server = MeterSimServer([sim])
    await server.start_serial(pair.b, baud=9600)
    got: list = []
    poller = LinePoller(
        SerialLineSpec(pair.a, baud=9600, timeout_s=0.3),
        [MeterSpec("ac", 4, "dtsu666", seal_interval_s=30.0)],
        PROFILES,
        got.append,
    )
    try:
        await _identity_round(poller, sim, got)
    finally:
        poller.close()
        await server.stop()
        pair.close()


async def test_identity_over_tcp_and_a_meter_that_refuses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, mute = _dtsu(), _dtsu(5)
    mute.refused = mute.identity_addresses()
    server = MeterSimServer([sim, mute])
    port = await server.start_tcp()
    got: list = []
    poller = LinePoller(
        TcpLineSpec("127.0.0.1", port, timeout_s=1.0),
        [
            MeterSpec("ac", 4, "dtsu666", seal_interval_s=30.0),
            MeterSpec("mute", 5, "dtsu666", seal_interval_s=30.0),
        ],
        PROFILES,
        got.append,
    )
    try:
        await _identity_round(poller, sim, got)
        caplog.set_level(logging.WARNING, logger="evgw.meters")
        for ts in (100.0, 131.0, 162.0):  # three identity reads, every register refused
            reading = await poller.poll("mute", ts)
            assert reading is not None and reading.energy_import_kwh == pytest.approx(42.0)
        assert not [e for e in got if getattr(e, "meter_id", "") == "mute" and "identity" in e.kind]
        warned = [r.getMessage() for r in caplog.records if "mute" in r.getMessage()]
        assert len(warned) == len(DTSU_IDENTITY)  # once per register, not once per read
        assert "ct_ratio (FC03 0x0006) not read: exception 02 (illegal data address)" in warned[0]
        # the firmware answers again: the identity is there at the next read
        mute.refused = set()
        assert await poller.poll("mute", 193.0) is not None
        [ident] = [e for e in _events(got, MeterIdentity) if e.meter_id == "mute"]
        assert ident.identity == {**DTSU_IDENTITY, "modbus_address": "5"}
    finally:
        poller.close()
        await server.stop()


def _profile(identity: str) -> dict:
    """The shipped SDM120 profile's data with the given top-level TOML added."""
    data = tomllib.loads(Path(PROFILES["sdm120"].path).read_text(encoding="utf-8"))
    return {**data, **tomllib.loads(identity)}


@pytest.mark.parametrize(
    ("identity", "key", "expected"),
    [
        ("[identity]\nct_ratoi = { address = 6 }", "identity.ct_ratoi", "one of serial"),
        ("[identity]\nct_ratio = 6", "identity.ct_ratio", "a table {address, type}"),
        ("[identity]\nct_ratio = { }", "identity.ct_ratio.address", "an integer 0…65535"),
        (
            '[identity]\nct_ratio = { address = 6, type = "f32" }',
            "identity.ct_ratio.type",
            "one of u16",
        ),
        (
            "[identity]\nct_ratio = { address = 6, scale = 0.1 }",
            "identity.ct_ratio.scale",
            "one of the keys",
        ),
        (
            '[identity]\nserial = { address = 6, type = "u32" }\nct_ratio = { address = 7 }',
            "identity.ct_ratio.address",
            "registers not already used by serial",
        ),
        (
            '[identity]\nserial = { address = 0xFFFF, type = "u32" }',
            "identity.serial.address",
            "a register range inside",
        ),
        ("identity = 3", "identity", "a table"),
    ],
)
def test_broken_identity_table_refused_with_key_path(
    identity: str, key: str, expected: str
) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile(_profile(identity), "field", "/etc/evgw/meters/field.toml")
    [problem] = err.value.problems
    assert problem.key == key
    assert problem.expected.startswith(expected)
    assert f"/etc/evgw/meters/field.toml: {key}: expected" in str(err.value)


def test_a_good_identity_table_follows_the_chosen_function_code() -> None:
    prof = parse_profile(
        _profile('[identity]\nx_tariff = { address = 0x20, type = "s32", word_order = "little" }'),
        "field",
        "field.toml",
    )
    [reg] = prof.identity
    assert (reg.name, reg.address, reg.type, reg.word_order, reg.function) == (
        "x_tariff",
        0x20,
        "i32",
        "little",
        4,
    )
    assert prof.resolve(3).identity[0].function == 3


_REGS = st.builds(
    IdentityRegister,
    st.just("serial"),
    st.integers(0, 0xFFF0),
    st.sampled_from((3, 4)),
    st.sampled_from(IDENTITY_TYPES),
    st.sampled_from(ORDERS),
)


@given(_REGS, st.lists(st.integers(-(1 << 17), 1 << 17), max_size=6))
def test_identity_decoding_of_any_reply(reg: IdentityRegister, words: list[int]) -> None:
    try:
        text = identity_text(reg, words)
    except ValueError as exc:
        assert "register" in str(exc)
        assert len(words) != reg.count or any(not 0 <= w <= 0xFFFF for w in words)
        return
    assert identity_words(reg, int(text)) == words


@given(_REGS, st.binary(min_size=0, max_size=12))
def test_identity_decoding_of_reply_bytes(reg: IdentityRegister, data: bytes) -> None:
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]
    if len(words) != reg.count:
        with pytest.raises(ValueError, match="registers, expected"):
            identity_text(reg, words)
        return
    value = int(identity_text(reg, words))
    ordered = words[::-1] if reg.word_order == "little" else words
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    assert value == int.from_bytes(raw, "big", signed=reg.type.startswith("i"))


_TOML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 20), 1 << 20)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_IDENTITY_KEYS = st.sampled_from(["address", "function", "type", "word_order", "scale"]) | st.text(
    max_size=6
)


@given(
    st.dictionaries(
        st.sampled_from([*list(IDENTITY_NAMES), "x_vendor", "bogus"]),
        st.dictionaries(_IDENTITY_KEYS, _TOML_VALUES, max_size=4) | _TOML_VALUES,
        max_size=4,
    )
)
def test_any_identity_table_is_a_profile_or_a_list_of_problems(table: dict) -> None:
    data = {**_profile(""), "identity": {k: v for k, v in table.items() if v is not None}}
    try:
        prof = parse_profile(data, "field", "field.toml")
    except ProfileError as exc:
        assert exc.problems and all(p.key.startswith("identity") for p in exc.problems)
        return
    assert {r.name for r in prof.identity} == set(data["identity"])
