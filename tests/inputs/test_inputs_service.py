"""`[[input_modules]]` and `[[inputs]]` in the config (every problem with its key) and the
service's device layer reading a simulated DI module beside a meter on one pty."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config.errors import ConfigError
from agent.config.load import parse_config
from agent.config.resources import read_resource
from agent.service.devices import Devices
from drivers.inputs.events import InputChanged
from drivers.inputs.profile import load_module_profiles
from drivers.modbus.events import MeterReading
from drivers.modbus.profile import load_profiles
from sim.di_module import SimDiModule
from sim.meter import MeterSimServer, SimMeter
from tests.conftest import open_pty_pair

EXAMPLE = read_resource("evgw.example.toml")


def with_inputs(port: str, *extra: str) -> str:
    text = EXAMPLE.replace('port = "/dev/ttyUSB0"', f'port = "{port}"')
    module = (
        f'\n[[input_modules]]\nmodule_id = "di1"\nprofile = "generic-di8"\nport = "{port}"\n'
        "unit_id = 9\npoll_interval_s = 0.2\n"
    )
    door = (
        '\n[[inputs]]\ninput_id = "door"\nmodule = "di1"\nchannel = 2\nrole = "door"\n'
        'active_level = "low"\ndebounce_s = 0\nconnectors = ["SZFT0001DC0101"]\n'
    )
    return text + module + door + "".join(extra)


def test_config_names_every_problem() -> None:
    bad = (
        '\n[[inputs]]\ninput_id = "door"\nmodule = "di2"\nchannel = 1\nrole = "door"\n'
        '\n[[inputs]]\ninput_id = "x"\nmodule = "di1"\nchannel = 8\nrole = "custom"\n'
        'connectors = ["NOPE"]\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(with_inputs("/dev/ttyUSB0", bad).replace("unit_id = 9", "unit_id = 1"))
    text = str(err.value)
    for expected in (
        "inputs: input_id 'door' is used more than once",
        "input_modules[0].unit_id: 1 is meter 'dc1a''s on /dev/ttyUSB0",
        "inputs[1].module: no input module 'di2' (known: di1)",
        "inputs[2].channel: 8 is not on the 8-channel module 'di1' (channels 0-7)",
        "inputs[2].connectors: no connector 'NOPE'",
        'inputs[2].description: required for role = "custom"',
    ):
        assert expected in text, expected
    with pytest.raises(ConfigError, match=r"inputs\[0\].role: expected one of 'estop'"):
        parse_config(with_inputs("/dev/ttyUSB0").replace('role = "door"', 'role = "window"'))


async def test_service_reads_a_module_beside_the_meters(tmp_path: Path) -> None:
    pair = open_pty_pair(tmp_path)
    module = SimDiModule(load_module_profiles()["generic-di8"], 9)
    module.set(2, True)  # a closed loop: the door is shut
    meters = [SimMeter(load_profiles()["djsf1352"], u) for u in (1, 2)]
    server = MeterSimServer([*meters, module])
    await server.start_serial(pair.b)
    config = parse_config(with_inputs(pair.a))
    queue: asyncio.Queue[object] = asyncio.Queue()
    devices = Devices.build(config, queue)
    task = asyncio.create_task(devices.run_meter_polls())
    try:
        async with asyncio.timeout(10):
            while devices.input_pollers[0].state("di1")["door"] is None:
                await asyncio.sleep(0.05)
            assert devices.input_pollers[0].state("di1") == {"door": False}
            module.set(2, False)  # the loop opens: door open
            while not devices.input_pollers[0].state("di1")["door"]:
                await asyncio.sleep(0.05)
        # the changes go to the station (which raises and clears alarm 26 from them)
        seen: list[object] = []
        while not queue.empty():
            seen.append(queue.get_nowait())
        door = [e for e in seen if isinstance(e, InputChanged) and e.input_id == "door"]
        assert [(e.active, e.initial, e.connectors) for e in door] == [
            (False, True, ("SZFT0001DC0101",)),
            (True, False, ("SZFT0001DC0101",)),
        ]
        assert any(isinstance(e, MeterReading) for e in seen)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
        pair.close()
