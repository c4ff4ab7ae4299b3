"""One line of ``evgw check``: a name, OK / WARN / FAIL / SKIP, what was found and a hint.

Every check (local, device, uplink plug-in) returns these; :func:`guarded` turns an
unexpected exception into a FAIL line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"
    """The check could not run; ``detail`` says why."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    level: Level
    detail: str
    hint: str = ""


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Level.OK, detail)


def warn(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Level.WARN, detail, hint)


def fail(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Level.FAIL, detail, hint)


def skip(name: str, reason: str) -> CheckResult:
    return CheckResult(name, Level.SKIP, reason)


def guarded(name: str, check: Callable[[], Iterable[CheckResult]]) -> list[CheckResult]:
    """Run one check; an unexpected exception becomes a FAIL line instead of a traceback."""
    try:
        return list(check())
    except Exception as exc:
        return [
            fail(
                name,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this with the output of `evgw check --log-level debug`",
            )
        ]


def render(results: list[CheckResult]) -> str:
    width = max((len(r.name) for r in results), default=4)
    lines = []
    for r in results:
        lines.append(f"{r.level.value:<4}  {r.name:<{width}}  {r.detail}")
        if r.hint and r.level in (Level.WARN, Level.FAIL):
            lines.append(f"{'':<4}  {'':<{width}}  → {r.hint}")
    return "\n".join(lines)
