"""Inputs of the station model that are not driver events.

* :class:`BusActivity`: "frames were seen on this connector's CAN bus at ``ts``". The bus
  adapter sends one at most every second or so (any frame counts, even foreign ones); it is
  how the model tells an idle DC connector (bus alive) from an offline one.
* :class:`Reservation`: a reservation lock set or released (T/CEC status 4), e.g. by a
  platform command.
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
