"""Poll the meters of one line; the caller's scheduler decides when.

Build a :class:`LinePoller` from plain frozen specs (a line spec and one
:class:`MeterSpec` per meter), then call ``await poller.poll(meter_id, ts)`` (or
``poll_line(ts)``) from the scheduler. Each poll reads the meter's planned blocks through
the line's lock, decodes them, checks plausibility and emits a :class:`MeterReading` and
any events (online/offline, anomaly, alarm) to the sink: a callable or an
``asyncio.Queue``. There are no sleeps here other than the line's inter-frame gap.

A profile with ``[identity]`` registers has them read at the first successful poll, then
every ``seal_interval_s`` and at the next poll after :meth:`LinePoller.check_seal`; the
values go through :class:`~drivers.modbus.seal.SealTracker` (``MeterIdentity``, and
``MeterReplaced`` when one changed). A register the meter refuses is logged once and left
out; the energy polling goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drivers.modbus.checks import ReadingChecker
from drivers.modbus.decode import ReadPlan, plan_reads
from drivers.modbus.events import MeterReading
from drivers.modbus.health import MeterHealth
from drivers.modbus.identity import identity_text
from drivers.modbus.line import LineDiscipline
from drivers.modbus.link import LineSpec, ModbusLine, ReadError
from drivers.modbus.polling import (
    MeterPollerBase,
    Sink,
    line_timeout_s,
    lookup_profile,
    with_retries,
)
from drivers.modbus.profile_model import IdentityRegister, Profile
from drivers.modbus.seal import SealRead, SealTracker

__all__ = ["LinePoller", "MeterSpec", "Sink"]

log = logging.getLogger("evgw.meters")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter on a line. ``function``/``options`` are what the commissioning probe chose
    (``None``/empty: the profile's defaults). ``rated_power_w`` enables the power and
    energy-jump plausibility checks. ``poll_interval_s`` is for the caller's scheduler and is
    the first offline backoff step."""

    meter_id: str
    unit_id: int
    profile: str
    rated_power_w: float | None = None
    poll_interval_s: float = 1.0
    timeout_s: float | None = None
    retries: int = 1
    offline_after: int = 3
    function: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    seal_interval_s: float = 60.0
    """How often the profile's identity registers are read."""


@dataclass(slots=True)
class _Meter:
    spec: MeterSpec
    plan: ReadPlan
    identity: tuple[IdentityRegister, ...]
    health: MeterHealth
    checker: ReadingChecker
    seal: SealTracker
    unread: set[str] = field(default_factory=set)
    """Identity registers already logged as not read (logged again only after a read)."""


class LinePoller(MeterPollerBase[_Meter]):
    """All meters on one line. Raises ``ValueError`` for an inconsistent setup."""

    def __init__(
        self,
        line: LineSpec,
        meters: Sequence[MeterSpec],
        profiles: Mapping[str, Profile],
        sink: Sink | None = None,
        *,
        discipline: LineDiscipline | None = None,
        backoff_max_s: float = 300.0,
    ) -> None:
        super().__init__(sink)
        for spec in meters:
            profile = lookup_profile(profiles, spec.meter_id, spec.profile)
            resolved = profile.resolve(spec.function, spec.options)
            alarms = [f.name for f in resolved.flags if f.alarm]
            meter = _Meter(
                spec,
                plan_reads(resolved),
                resolved.identity,
                MeterHealth(spec.meter_id, spec.offline_after, spec.poll_interval_s, backoff_max_s),
                ReadingChecker(spec.meter_id, spec.rated_power_w, alarms),
                SealTracker(spec.meter_id, interval_s=spec.seal_interval_s),
            )
            self._add(spec.meter_id, f"unit id {spec.unit_id}", line.describe(), meter)
        timeout_s = line_timeout_s(line.timeout_s, meters)
        self.line = ModbusLine(line, timeout_s=timeout_s, discipline=discipline)

    async def poll(self, meter_id: str, ts: float) -> MeterReading | None:
        """Read one meter now. ``None`` when it failed, or is offline and not yet due."""
        m = self._meters[meter_id]
        if not m.health.due(ts):
            return None
        results: list[list[int] | str] = []
        for block in m.plan.blocks:
            reply = await self._read(m, block.function, block.address, block.count)
            if isinstance(reply, ReadError):
                if not reply.answered:
                    self._failed(m, ts, reply.message)
                    return None
                results.append(reply.short)
            else:
                results.append(reply)
        decoded = m.plan.decode(results)
        reading, events = m.checker.check(decoded, ts)
        if m.identity and m.seal.due(ts):
            identity = await self._read_identity(m)
            if identity is not None:
                events += m.seal.feed(identity, ts)
        self._done(m, ts, reading, events)
        return reading

    async def _read(
        self, m: _Meter, function: int, address: int, count: int
    ) -> list[int] | ReadError:
        unit, timeout_s = m.spec.unit_id, m.spec.timeout_s
        return await with_retries(
            lambda: self.line.read(unit, function, address, count, timeout_s), m.spec.retries
        )

    async def _read_identity(self, m: _Meter) -> SealRead | None:
        """The identity registers that could be read; ``None`` when the meter went silent."""
        identity: dict[str, str] = {}
        for reg in m.identity:
            reply = await self._read(m, reg.function, reg.address, reg.count)
            try:
                if isinstance(reply, ReadError):
                    if not reply.answered:
                        return None
                    raise ValueError(reply.short)
                identity[reg.name] = identity_text(reg, reply)
            except ValueError as exc:
                if reg.name not in m.unread:
                    m.unread.add(reg.name)
                    log.warning(
                        "meter %s: identity register %s (FC%02d 0x%04X) not read: %s; "
                        "the meter is polled as before, without it",
                        m.spec.meter_id,
                        reg.name,
                        reg.function,
                        reg.address,
                        exc,
                    )
                continue
            m.unread.discard(reg.name)
        return SealRead(identity)
