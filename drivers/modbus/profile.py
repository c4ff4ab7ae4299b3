"""Finding meter profiles: the shipped ones (package data of ``drivers.modbus``) and the
technician's folders, one TOML file per meter model.

:func:`load_profile_dirs` reads the shipped profiles and then each extra folder in order; a
field profile with the same name as an earlier one replaces it, and the :class:`ProfileSet`
remembers where each profile came from (``shipped`` or the file's path) and what it
replaced. Every problem of every file is reported together in one :class:`ProfileError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from drivers.modbus.profile_check import Problem, ProfileError, read_toml
from drivers.modbus.profile_model import Profile
from drivers.modbus.profile_toml import parse_profile

SHIPPED = "shipped"
"""The origin of a profile that comes with evgw."""


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...


P = TypeVar("P", bound=_Named)


def builtin_profiles_dir() -> Path:
    """The shipped Modbus profiles: ``profiles/`` beside this module (package data)."""
    return Path(__file__).resolve().parent / "profiles"


Parser = Callable[[Mapping[str, Any], str, str], P]
"""(TOML data, profile name, file) → profile, raising :class:`ProfileError`."""

OTHER_PROTOCOLS: Final = ("dlt645", "module")
"""Top-level tables that mark a profile file of another kind (a DL/T 645 meter, a digital
input module): skipped here."""


def is_modbus_profile(data: Mapping[str, Any]) -> bool:
    """A profile folder may hold profiles of every protocol; each says which by its table."""
    return not any(key in data for key in OTHER_PROTOCOLS)


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Load and validate one profile file; its name is the file name without ``.toml``."""
    p = Path(path)
    return parse_profile(read_toml(p), p.stem, str(p))


@dataclass(frozen=True, slots=True)
class ProfileOrigin:
    """Where a profile came from: ``shipped`` or the path of its file, and the origin of the
    profile of the same name it replaced (``None`` when it replaced nothing)."""

    source: str
    replaces: str | None = None


class ProfileSet(Mapping[str, P]):
    """Profiles by name (iterates in name order), each with its :class:`ProfileOrigin`."""

    def __init__(
        self, profiles: Mapping[str, P], origins: Mapping[str, ProfileOrigin] | None = None
    ) -> None:
        self._profiles = dict(sorted(profiles.items()))
        self._origins = dict(origins or {})

    def __getitem__(self, name: str) -> P:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(self._profiles) or "none"
            raise KeyError(f"no meter profile {name!r} (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)

    def origin(self, name: str) -> ProfileOrigin:
        return self._origins.get(name) or ProfileOrigin(self[name].path)


def read_profile_folder(
    root: Path, parse: Parser[P], accepts: Callable[[Mapping[str, Any]], bool]
) -> dict[str, P]:
    """Every ``*.toml`` in ``root`` that ``accepts`` its data, parsed with ``parse``; all
    problems raised together."""
    if not root.is_dir():
        raise ProfileError(
            [
                Problem(
                    str(root), "(directory)", "a directory of *.toml profiles", "no such directory"
                )
            ]
        )
    problems: list[Problem] = []
    found: dict[str, P] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        try:
            data = read_toml(entry)
            if not accepts(data):
                continue
            prof = parse(data, entry.stem, str(entry))
        except ProfileError as exc:
            problems.extend(exc.problems)
            continue
        found[prof.name] = prof
    if problems:
        raise ProfileError(problems)
    return found


def load_profiles(source: str | os.PathLike[str] | None = None) -> ProfileSet[Profile]:
    """Load every ``*.toml`` profile in a directory (default: the shipped profiles), or one
    file. All problems of all files are reported together in one :class:`ProfileError`."""
    if source is None:
        return load_profile_dirs(())
    root = Path(source)
    if root.is_file():
        prof = load_profile(root)
        return ProfileSet({prof.name: prof})
    return ProfileSet(read_profile_folder(root, parse_profile, is_modbus_profile))


def layer_profiles(
    shipped: Mapping[str, P],
    folders: Sequence[str | os.PathLike[str]],
    parse: Parser[P],
    accepts: Callable[[Mapping[str, Any]], bool],
    *,
    skip_missing: bool = True,
) -> ProfileSet[P]:
    """``shipped`` overlaid with each folder in turn (a later profile of the same name wins).

    A folder that does not exist is skipped when ``skip_missing`` (the config check has
    already said whether that is allowed); problems in any file are raised together.
    """
    profiles: dict[str, P] = dict(shipped)
    origins = {name: ProfileOrigin(SHIPPED) for name in shipped}
    problems: list[Problem] = []
    for folder in folders:
        root = Path(folder)
        if skip_missing and not root.exists():
            continue
        try:
            found = read_profile_folder(root, parse, accepts)
        except ProfileError as exc:
            problems.extend(exc.problems)
            continue
        for name, prof in found.items():
            before = origins.get(name)
            origins[name] = ProfileOrigin(prof.path, before.source if before else None)
            profiles[name] = prof
    if problems:
        raise ProfileError(problems)
    return ProfileSet(profiles, origins)


def load_profile_dirs(
    folders: Sequence[str | os.PathLike[str]], *, skip_missing: bool = True
) -> ProfileSet[Profile]:
    """The shipped Modbus profiles overlaid with the technician's folders, in order."""
    shipped = read_profile_folder(builtin_profiles_dir(), parse_profile, is_modbus_profile)
    return layer_profiles(
        shipped, folders, parse_profile, is_modbus_profile, skip_missing=skip_missing
    )
