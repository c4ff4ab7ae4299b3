"""Alarm state of one connector (or of the station): raise and clear edges, no repeats.

An alarm is identified by its code. Several *causes* can hold the same code active (the BSM
over-temperature flag, the BST fault bit and the configured threshold all mean code 120): the
code is raised when its first cause appears and cleared when its last cause goes away, so the
platform sees exactly one raise and one clear. Causes are ``session`` scoped (cleared when the
charging session closes) or ``device`` scoped (meter faults, audit findings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.records.bodies import AlarmBody, BmsProcessBody
from agent.station.codes import ALARM_CODES

Scope = Literal["session", "device"]


@dataclass(frozen=True, slots=True)
class AlarmEdge:
    """A raise or clear to be written as an ``alarm`` record."""

    ts: float
    code: int
    status: Literal["raised", "cleared"]
    message: str
    causes: tuple[str, ...]


@dataclass(slots=True)
class _Active:
    causes: dict[str, Scope] = field(default_factory=dict)
    raised_ts: float = 0.0


class AlarmBook:
    """The active alarms of one place; every method returns the edges to write."""

    def __init__(self) -> None:
        self._active: dict[int, _Active] = {}
        self.raised_total = 0

    def is_active(self, code: int) -> bool:
        return code in self._active

    def active_codes(self) -> list[int]:
        return sorted(self._active)

    def causes(self, code: int) -> tuple[str, ...]:
        a = self._active.get(code)
        return () if a is None else tuple(a.causes)

    def raised_ts(self, code: int) -> float | None:
        a = self._active.get(code)
        return None if a is None else a.raised_ts

    def has_cause(self, cause: str) -> bool:
        return any(cause in a.causes for a in self._active.values())

    def raise_(
        self, ts: float, code: int, cause: str, message: str, scope: Scope = "session"
    ) -> AlarmEdge | None:
        if code not in ALARM_CODES:
            raise KeyError(f"alarm code {code} is not in the code table")
        a = self._active.get(code)
        if a is not None:
            a.causes.setdefault(cause, scope)
            return None
        self._active[code] = _Active({cause: scope}, ts)
        self.raised_total += 1
        return AlarmEdge(ts, code, "raised", message, (cause,))

    def restore(self, code: int, cause: str, scope: Scope, raised_ts: float) -> None:
        """Hold ``code`` active for ``cause`` again without an edge: the ledger says a
        previous run raised it and never cleared it (so this run can clear it)."""
        a = self._active.setdefault(code, _Active({}, raised_ts))
        a.causes.setdefault(cause, scope)

    def clear(self, ts: float, code: int, cause: str, message: str) -> AlarmEdge | None:
        a = self._active.get(code)
        if a is None or cause not in a.causes:
            return None
        del a.causes[cause]
        if a.causes:
            return None
        del self._active[code]
        return AlarmEdge(ts, code, "cleared", message, ())

    def clear_cause(self, ts: float, cause: str, message: str) -> list[AlarmEdge]:
        """Clear ``cause`` wherever it holds a code."""
        out = []
        for code in [c for c, a in self._active.items() if cause in a.causes]:
            edge = self.clear(ts, code, cause, message)
            if edge is not None:
                out.append(edge)
        return out

    def clear_scope(self, ts: float, scope: Scope, message: str) -> list[AlarmEdge]:
        """Clear every cause of ``scope`` (e.g. all session alarms when the session closes)."""
        out = []
        for code, a in list(self._active.items()):
            for cause in [c for c, s in a.causes.items() if s == scope]:
                edge = self.clear(ts, code, cause, message)
                if edge is not None:
                    out.append(edge)
        return out


def alarm_body(edge: AlarmEdge, bms: BmsProcessBody | None) -> AlarmBody:
    info = ALARM_CODES[edge.code]
    text = f"{info.meaning}: {edge.message}" if edge.message else info.meaning
    return AlarmBody(
        code=edge.code,
        type=info.type,  # type: ignore[arg-type]
        level=info.level,  # type: ignore[arg-type]
        status=edge.status,
        message=text[:255],
        bms=bms,
        causes=edge.causes,
    )
