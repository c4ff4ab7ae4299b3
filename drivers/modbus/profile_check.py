"""Reading a data file while collecting every problem: the shared core of the profile loaders.

A :class:`Checker` walks one file's TOML tables and records each mistake as a
:class:`Problem` (file, key path, what was expected, what was found) instead of stopping;
the loader raises one :class:`ProfileError` with all of them. The Modbus and the DL/T 645
profile loaders both read their files through it, so a technician sees the same messages.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a profile file."""

    file: str
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: expected {self.expected}, found {self.found}"


class ProfileError(Exception):
    """A profile file (or directory) is invalid; :attr:`problems` lists every mistake."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in meter profile(s):\n{lines}")


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class Checker:
    """Collects problems for one file while reading its tables."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, key: str, expected: str, found: str) -> None:
        self.problems.append(Problem(self.file, key, expected, found))

    def table(self, parent: Mapping[str, Any], key: str, path: str, required: bool) -> dict:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "a table", "nothing (missing)")
            return {}
        if not isinstance(value, dict):
            self.add(path, "a table", type_name(value))
            return {}
        return value

    def unknown(self, table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if path else key,
                    f"one of the keys {', '.join(allowed)}",
                    "an unknown key",
                )

    def text(self, table: Mapping[str, Any], key: str, path: str, default: str | None) -> str:
        value = table.get(key, default)
        if value is None:
            self.add(path, "text", "nothing (missing)")
            return ""
        if not isinstance(value, str):
            self.add(path, "text", type_name(value))
            return ""
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: int | None,
        low: int,
        high: int,
    ) -> int:
        value = table.get(key, default)
        if value is None:
            self.add(path, f"an integer {low}…{high}", "nothing (missing)")
            return low
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(path, f"an integer {low}…{high}", type_name(value))
            return low
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, path: str, default: Any, allowed: Iterable[Any]
    ) -> Any:
        allowed = tuple(allowed)
        value = table.get(key, default)
        if value is None or isinstance(value, bool) or value not in allowed:
            found = "nothing (missing)" if value is None else type_name(value)
            self.add(path, "one of " + ", ".join(str(a) for a in allowed), found)
            return allowed[0]
        return value

    def number(self, table: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value == 0
        ):
            self.add(path, "a finite non-zero number", type_name(value))
            return 1.0
        return float(value)

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.add(path, "true or false", type_name(value))
            return default
        return value


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML data of one profile file, or a :class:`ProfileError` saying why not."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(
            [Problem(str(path), "(file)", "an existing profile file", "no such file")]
        ) from None
    except OSError as exc:
        raise ProfileError(
            [Problem(str(path), "(file)", "a readable file", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError:
        raise ProfileError([Problem(str(path), "(file)", "UTF-8 text", "binary data")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([Problem(str(path), "(syntax)", "valid TOML", str(exc))]) from None
