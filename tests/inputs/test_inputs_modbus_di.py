"""Site inputs on a Modbus DI module over a real serial line (socat pty), sharing the line
with a meter: debounce, active level, the module's own fault, never a false "closed"."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.inputs.debounce import InputTracker
from drivers.inputs.events import InputChanged, InputFault
from drivers.inputs.modbus_di import DiPoller, InputSpec, ModuleSpec
from drivers.inputs.profile import load_module_profiles
from drivers.modbus.line import LineDiscipline
from drivers.modbus.link import SerialLineSpec
from drivers.modbus.poller import LinePoller, MeterSpec
from drivers.modbus.profile import load_profiles
from sim.di_module import SimDiModule
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import open_pty_pair

MODULES = load_module_profiles()


def test_debounce_and_active_level() -> None:
    door = InputTracker("door", "door", active_high=False, debounce_s=0.2)
    assert door.feed(True, 0.0) == []  # closed contact (high) = door shut, not yet stable
    (first,) = door.feed(True, 0.25)
    assert first.initial and not first.active
    assert door.feed(False, 1.0) == [] and door.feed(True, 1.1) == []  # a bounce
    assert door.feed(False, 2.0) == []
    (opened,) = door.feed(False, 2.2)
    assert opened.active and not opened.initial and opened.role == "door"


@pytest.mark.parametrize("profile", ["generic-di8", "generic-di16", "generic-di8-coils"])
async def test_module_on_a_shared_line(tmp_path: Path, profile: str) -> None:
    pair = open_pty_pair(tmp_path)
    module = SimDiModule(MODULES[profile], unit_id=5)
    meter = SimMeter(load_profiles()["djsf1352"], 1, energy_import_kwh=10.0)
    server = MeterSimServer([meter, module])
    await server.start_serial(pair.b)
    events: list[object] = []
    line = SerialLineSpec(pair.a, timeout_s=0.3)
    shared = LineDiscipline(line.gap_s)
    last = MODULES[profile].channels - 1
    inputs = (
        InputSpec("estop", 0, "estop", debounce_s=0.0),
        InputSpec("smoke", last, "smoke_room", debounce_s=0.0, connectors=()),
    )
    di = DiPoller(
        line,
        [ModuleSpec("di1", 5, profile, inputs, offline_after=2)],
        MODULES,
        events.append,
        discipline=shared,
    )
    meters = LinePoller(line, [MeterSpec("m", 1, "djsf1352")], load_profiles(), discipline=shared)
    try:
        assert await di.poll("di1", 0.0)
        assert [(e.input_id, e.active, e.initial) for e in events] == [
            ("estop", False, True),
            ("smoke", False, True),
        ]
        module.set(last, True)
        assert await meters.poll("m", 0.5) is not None  # the meter answers on the same line
        assert await di.poll("di1", 1.0)
        (smoke,) = events[2:]
        assert isinstance(smoke, InputChanged) and smoke.active and smoke.role == "smoke_room"
        module.no_answer = True
        assert not await di.poll("di1", 2.0)
        assert not await di.poll("di1", 3.0)
        (fault,) = events[3:]
        assert isinstance(fault, InputFault) and fault.active and fault.inputs == ("estop", "smoke")
        assert di.state("di1") == {"estop": False, "smoke": True}  # not a false "cleared"
        module.no_answer = False
        assert await di.poll("di1", 4.0)
        (back,) = events[4:]
        assert isinstance(back, InputFault) and not back.active
    finally:
        di.close()
        meters.close()
        await server.stop()
        pair.close()


def test_channel_outside_the_module_is_refused() -> None:
    with pytest.raises(ValueError, match="channel 8 is not on a 8-channel module"):
        DiPoller(
            SerialLineSpec("/dev/null"),
            [ModuleSpec("di1", 1, "generic-di8", (InputSpec("x", 8, "door"),))],
            MODULES,
        )
