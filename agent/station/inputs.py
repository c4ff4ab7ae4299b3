"""Inputs of the station model that are not driver events.

* :class:`BusActivity`: "frames were seen on this connector's CAN bus at ``ts``". The bus
  adapter sends one at most every second or so (any frame counts, even foreign ones); it is
  how the model tells an idle DC connector (bus alive) from an offline one.
* :class:`Reservation`: a reservation lock set or released (T/CEC status 4), e.g. by a
  platform command.
* :class:`RemoteStop`: the platform asked to stop the running session (``query_stop_charge``);
  when the charger then stops normally the order's StopReason is 1 (platform) instead of 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BusActivity:
    connector_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class Reservation:
    connector_id: str
    ts: float
    reserved: bool


@dataclass(frozen=True, slots=True)
class RemoteStop:
    connector_id: str
    ts: float
