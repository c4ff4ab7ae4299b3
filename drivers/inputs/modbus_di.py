"""Digital inputs on Modbus DI modules (FC01 coils / FC02 discrete inputs), polled through
the RS-485 line discipline shared with the meters.

:class:`DiPoller` reads every channel of each module in one request, debounces each
configured input (:class:`~drivers.inputs.debounce.InputTracker`) and emits
:class:`InputChanged`. A module that fails ``offline_after`` reads in a row raises its own
:class:`InputFault` and its inputs keep their last state — a silent module is never a
"door closed" — until it answers again (the fault is then cleared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.inputs.debounce import InputTracker
from drivers.inputs.events import InputEvent, InputFault
from drivers.inputs.profile import ModuleProfile
from drivers.modbus.line import LineDiscipline, ReadError
from drivers.modbus.link import LineSpec, ModbusLine

InputSink = Callable[[InputEvent], object] | asyncio.Queue


@dataclass(frozen=True, slots=True)
class InputSpec:
    input_id: str
    channel: int
    role: str
    active_high: bool = True
    debounce_s: float = 0.2
    connectors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    module_id: str
    unit_id: int
    profile: str
    inputs: tuple[InputSpec, ...]
    poll_interval_s: float = 0.5
    timeout_s: float | None = None
    offline_after: int = 3


@dataclass(slots=True)
class _Module:
    spec: ModuleSpec
    profile: ModuleProfile
    trackers: dict[int, InputTracker]
    failures: int = 0
    faulty: bool = False
    last_error: str | None = None
    inputs: tuple[str, ...] = field(default_factory=tuple)


class DiPoller:
    """All DI modules on one line. Raises ``ValueError`` for an inconsistent setup."""

    def __init__(
        self,
        line: LineSpec,
        modules: Sequence[ModuleSpec],
        profiles: Mapping[str, ModuleProfile],
        sink: InputSink | None = None,
        *,
        discipline: LineDiscipline | None = None,
    ) -> None:
        self._modules: dict[str, _Module] = {}
        for spec in modules:
            try:
                profile = profiles[spec.profile]
            except KeyError as exc:
                raise ValueError(f"input module {spec.module_id!r}: {exc.args[0]}") from None
            trackers = {}
            for i in spec.inputs:
                if not 0 <= i.channel < profile.channels:
                    raise ValueError(
                        f"input {i.input_id!r}: channel {i.channel} is not on a "
                        f"{profile.channels}-channel module"
                    )
                trackers[i.channel] = InputTracker(
                    i.input_id,
                    i.role,
                    active_high=i.active_high,
                    debounce_s=i.debounce_s,
                    connectors=i.connectors,
                )
            ids = tuple(i.input_id for i in spec.inputs)
            self._modules[spec.module_id] = _Module(spec, profile, trackers, inputs=ids)
        self.line = ModbusLine(line, discipline=discipline)
        self._sink = sink

    @property
    def module_ids(self) -> list[str]:
        return list(self._modules)

    def state(self, module_id: str) -> dict[str, bool | None]:
        """The debounced state of each input of a module (``None``: not yet known)."""
        return {t.input_id: t.active for t in self._modules[module_id].trackers.values()}

    def faulty(self, module_id: str) -> bool:
        return self._modules[module_id].faulty

    def _emit(self, event: InputEvent) -> None:
        if self._sink is None:
            return
        if isinstance(self._sink, asyncio.Queue):
            self._sink.put_nowait(event)
        else:
            self._sink(event)

    async def poll(self, module_id: str, ts: float) -> bool:
        """Read one module now; whether it answered."""
        m = self._modules[module_id]
        p = m.profile
        bits = await self.line.read_bits(
            m.spec.unit_id, p.function, p.first_address, p.channels, m.spec.timeout_s
        )
        if isinstance(bits, ReadError):
            m.failures += 1
            m.last_error = bits.message
            if not m.faulty and (m.failures >= m.spec.offline_after or bits.answered):
                m.faulty = True
                self._emit(InputFault(module_id, ts, True, bits.message, m.inputs))
            return False
        m.failures = 0
        if m.faulty:
            m.faulty = False
            self._emit(InputFault(module_id, ts, False, "answers again", m.inputs))
        for channel, tracker in m.trackers.items():
            for event in tracker.feed(bits[channel], ts):
                self._emit(event)
        return True

    def close(self) -> None:
        self.line.close()
