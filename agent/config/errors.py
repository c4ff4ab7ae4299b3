"""The error every config and secrets problem is reported with."""

from __future__ import annotations

from agent.errors import UserError


class ConfigError(UserError):
    """A config (or secrets) file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {count}:\n{lines}", exit_code=2)
