"""The platform as a whole: parked or open (spec §10.1), and how long it has been failing.

- :class:`PeerGate`: a ``Ret`` in ``park_peer_on`` (4003 by default: Shenzhen answers it
  while an operator's access is pending review) parks the **peer**: no lane sends anything;
  the lane that got the answer probes every ``probe_interval_s`` by sending its record
  again, and the first answer that is not a peer-parking code opens the gate — the queue
  resumes in order.
- :class:`LinkWatch`: when the platform has been unreachable or refusing for longer than
  ``link_alarm_after_s`` (or at once for a refused Sig, 4001), it is time to raise alarm 27
  (back-end communication fault, spec §15.6); the first accepted request clears it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final, Literal

from agent.records.bodies import AlarmBody, body_to_dict
from agent.records.envelope import Record, StoredRecord, iso_ts, parse_iso_ts

log = logging.getLogger("agent.uplink.cec")


@dataclass(slots=True)
class PeerGate:
    reason: str | None = None
    """Why the peer is parked (the platform's answer), None while it is open."""
    since: float | None = None
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self.reason is None

    def park(self, reason: str, now: float) -> bool:
        """Park the peer; True for the caller that parked it (it probes), False if it was."""
        if self.reason is not None:
            return False
        self.reason, self.since = reason, now
        self._open.clear()
        return True

    def resume(self) -> None:
        self.reason = self.since = None
        self._open.set()

    async def wait_open(self) -> None:
        await self._open.wait()


@dataclass(slots=True)
class LinkWatch:
    after_s: float
    failing_since: float | None = None
    reason: str = ""
    raised: bool = False

    def failing(self, now: float, reason: str, *, at_once: bool = False) -> bool:
        """Note a failure; True when the alarm is to be raised now (once per outage)."""
        if self.failing_since is None:
            self.failing_since = now
        self.reason = reason
        return self._raise(at_once or now - self.failing_since >= self.after_s)

    def check(self, now: float) -> bool:
        """True when an outage in progress has just lasted past ``after_s``."""
        since = self.failing_since
        return self._raise(since is not None and now - since >= self.after_s)

    def _raise(self, due: bool) -> bool:
        if self.raised or not due:
            return False
        self.raised = True
        return True

    def ok(self) -> bool:
        """Note an accepted request; True when a raised alarm is to be cleared now."""
        self.failing_since = None
        was_raised, self.raised = self.raised, False
        return was_raised

    def restore(self, newest_alarms: list[StoredRecord]) -> None:
        """At start, from the ledger's newest alarm records (newest first): when the last
        alarm-27 edge is still "raised", the outage goes on — the alarm stays raised and the
        first accepted request clears it, even across a restart. An outage not yet alarmed at
        the restart starts its count again."""
        for record in newest_alarms:
            body = record.body
            if body.get("code") != LINK_ALARM_CODE:
                continue
            if body.get("status") == "raised":
                self.raised = True
                self.failing_since = parse_iso_ts(record.ts) - self.after_s
                self.reason = "still failing at the last stop"
            return


LINK_ALARM_CODE: Final = 27
"""Shenzhen AlarmCode 27: back-end communication fault (后台通讯故障), type 1, level 3."""


def link_alarm_records(
    status: Literal["raised", "cleared"],
    reason: str,
    after_s: float,
    station_id: str,
    connectors: tuple[tuple[str, str], ...],
    now: float,
) -> list[Record]:
    """Alarm 27 edges, one per connector (or one for the station when there are none)."""
    if status == "raised":
        message = f"T/CEC platform unreachable or refusing for {after_s:g} s or more: {reason}"
        log.error("alarm 27 raised: %s", message)
    else:
        message = f"T/CEC platform back: {reason}"
        log.warning("alarm 27 cleared: %s", message)
    body = body_to_dict(
        AlarmBody(code=LINK_ALARM_CODE, type=1, level=3, status=status, message=message[:255])
    )
    places: tuple[tuple[str | None, str | None], ...] = connectors or ((None, None),)
    return [
        Record(
            kind="alarm",
            ts=iso_ts(now),
            station_id=station_id,
            equipment_id=equipment_id,
            connector_id=connector_id,
            body=body,
        )
        for equipment_id, connector_id in places
    ]
