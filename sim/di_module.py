"""A simulated Modbus digital-input module (8/16 channels, FC01 or FC02) for tests and the
demo; it is served by :class:`sim.meter.MeterSimServer` like a meter, so modules and meters
can share one simulated RS-485 line.

``SimDiModule(profile, unit_id)`` with ``set(channel, level)``, and the same fault switches
as a simulated meter: ``no_answer``, ``exception_code``, ``garbage``.
"""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.inputs.profile import ModuleProfile


class SimDiModule:
    def __init__(self, profile: ModuleProfile, unit_id: int | None = None) -> None:
        self.profile = profile
        self.unit_id = unit_id or profile.unit_id
        self.levels = [False] * profile.channels
        self.no_answer = False
        self.exception_code: int | None = None
        self.garbage = False
        self.requests = 0

    def set(self, channel: int, level: bool) -> None:
        self.levels[channel] = level

    def _words(self) -> list[int]:
        words = [0] * ((self.profile.channels + 15) // 16)
        for channel, level in enumerate(self.levels):
            if level:
                words[channel // 16] |= 1 << (channel % 16)
        return words

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if set_values is not None or function_code != self.profile.function:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.exception_code is not None:
            return ExcCodes(self.exception_code)
        for i, word in enumerate(self._words()):
            if 0 <= i < len(registers):
                registers[i] = word
        return None

    def sim_device(self) -> SimDevice:
        first = self.profile.first_address
        data = [
            SimData(address=first + i, count=1, values=0, datatype=DataType.REGISTERS)
            for i in range(len(self._words()))
        ]
        return SimDevice(id=self.unit_id, simdata=data, action=self._action)
