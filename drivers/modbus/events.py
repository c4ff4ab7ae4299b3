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
    than the rated power allows in the elapsed time), ``value_rejected``, or
    ``counter_decreased`` (an event counter read lower than before: that read is rejected and
    the old count kept). An energy register going back is not the driver's to say: the
    station notices it in the readings."""

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


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the meter says it is (``address``, ``serial``, ``firmware``; only the fields its
    profile reads), emitted at the first read after start and whenever it changes. The
    station compares it with the identity it last recorded to notice a meter exchanged
    while evgw was not running."""

    kind: ClassVar[str] = "meter_identity"
    meter_id: str
    ts: float
    identity: dict[str, str]


@dataclass(frozen=True, slots=True)
class MeterReplaced:
    """The identity changed between two reads: the meter was exchanged (or reprogrammed)."""

    kind: ClassVar[str] = "meter_replaced"
    meter_id: str
    ts: float
    previous: dict[str, str]
    current: dict[str, str]


@dataclass(frozen=True, slots=True)
class MeterCounters:
    """The meter's event counters (the electronic seal) as read, at the first read after
    start: ``counts`` by counter name, ``last_event_ts`` the POSIX time of the latest
    recorded event of each (``None`` when the meter reports none). The station compares
    them with the last counts it recorded, which covers openings while evgw was down."""

    kind: ClassVar[str] = "meter_counters"
    meter_id: str
    ts: float
    counts: dict[str, int]
    last_event_ts: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class MeterTamper:
    """An event counter rose between two reads: ``counter`` is ``meter_cover_open``,
    ``terminal_cover_open``, ``programmed``, ``cleared``, ``clock_set`` or ``power_down``;
    ``last_event_ts`` is when the meter says the latest such event began (POSIX, from the
    meter's clock; ``None`` if it keeps no record)."""

    kind: ClassVar[str] = "meter_tamper"
    meter_id: str
    ts: float
    counter: str
    previous: int
    current: int
    last_event_ts: float | None


@dataclass(frozen=True, slots=True)
class MeterClockDrift:
    """The meter's clock differs from the caller's clock by more than the threshold
    (``active``), or is back within it (``active`` false). ``drift_s`` = meter − caller."""

    kind: ClassVar[str] = "meter_clock_drift"
    meter_id: str
    ts: float
    drift_s: float
    threshold_s: float
    active: bool


SealEvent = MeterIdentity | MeterReplaced | MeterCounters | MeterTamper | MeterClockDrift
"""Identity and electronic-seal events (DL/T 645 meters today)."""

MeterEvent = MeterOffline | MeterOnline | MeterAnomaly | MeterAlarm | SealEvent
