"""What the meter driver emits: readings and events, as frozen typed values.

Timestamps ``ts`` are POSIX seconds (UTC) given by the caller that triggered the poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One successful poll: values in standard units keyed by standard names.

    ``rejected`` maps a quantity to the reason its value was not accepted (NaN, outside
    physical limits, exception reply…); ``notes`` lists flagged but accepted oddities
    (an energy jump larger than the rated power allows). The dictionaries are never
    mutated after creation.
    """

    kind: ClassVar[str] = "meter_reading"
    meter_id: str
    ts: float
    values: dict[str, float]
    flags: dict[str, bool]
    rejected: dict[str, str]
    alarms: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    @property
    def energy_import_kwh(self) -> float | None:
        return self.values.get("energy_import_kwh")

    @property
    def energy_export_kwh(self) -> float | None:
        return self.values.get("energy_export_kwh")

    @property
    def power_w(self) -> float | None:
        return self.values.get("power_w")


@dataclass(frozen=True, slots=True)
class MeterOffline:
    """The meter failed ``failures`` polls in a row; it is retried with backoff."""

    kind: ClassVar[str] = "meter_offline"
    meter_id: str
    ts: float
    failures: int
    reason: str


@dataclass(frozen=True, slots=True)
class MeterOnline:
    """The meter answers again (also emitted once for the first successful poll)."""

    kind: ClassVar[str] = "meter_online"
    meter_id: str
    ts: float
    offline_since: float | None


@dataclass(frozen=True, slots=True)
class MeterAnomaly:
    """Something in a reading that needs a human: ``reason`` is ``energy_jump`` (more energy
    than the rated power allows in the elapsed time) or ``value_rejected``. A register going
    back is not the driver's to say: the station notices it in the readings."""

    kind: ClassVar[str] = "meter_anomaly"
    meter_id: str
    ts: float
    reason: str
    quantity: str
    detail: str
    previous: float | None = None
    current: float | None = None


@dataclass(frozen=True, slots=True)
class MeterAlarm:
    """An alarm flag of the profile (e.g. broken wire) was raised or cleared."""

    kind: ClassVar[str] = "meter_alarm"
    meter_id: str
    ts: float
    flag: str
    active: bool


MeterEvent = MeterOffline | MeterOnline | MeterAnomaly | MeterAlarm
