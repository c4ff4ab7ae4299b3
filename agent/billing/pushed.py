"""Tariff versions the operator pushes (MQTT ``tariff``): validated like ``[[tariffs]]`` of the
file, kept durably in ``tariffs-pushed.json`` in the state directory and read at every start
next to the config's tariffs (docs/BILLING.md, "Tariff changes from the operator").

A pushed entry is a new version of a tariff the config names (same ``id``) with a
``valid_from`` not in the past: it applies from then on, so a session running across it is
billed by each version for its own stretch (:class:`agent.billing.tariff.TariffBook`). It
cannot make itself the default (that stays in the file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from agent.billing.config import TariffSection, check_periods
from agent.records.envelope import canonical_json

if TYPE_CHECKING:
    from agent.config.schema import Config

PUSHED_FILE: Final = "tariffs-pushed.json"
PAST_SLACK_S: Final = 300.0
"""A ``valid_from`` up to this far in the past still counts as "now" (clock skew)."""


class TariffRefused(ValueError):
    """A pushed entry that is not taken; ``reasons`` name the key of each problem."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def pushed_path(state_dir: str) -> Path:
    return Path(state_dir) / PUSHED_FILE


def entry_sha256(entry: TariffSection) -> str:
    """The SHA-256 of the entry's canonical JSON (keys sorted, no spaces): the ``event``
    names it, so the entry in force can be checked against the record."""
    return hashlib.sha256(canonical_json(msgspec.to_builtins(entry))).hexdigest()


def _convert(entry: dict[str, Any]) -> TariffSection:
    try:
        return msgspec.convert(entry, TariffSection)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, _, where = text.partition(" - at `$")
        key = "tariff" + where.rstrip("`") if where else "tariff"
        raise TariffRefused([f"{key}: {reason}"]) from None


def validate_entry(entry: dict[str, Any], config: Config, now: float) -> TariffSection:
    """The entry as a :class:`TariffSection`, or :class:`TariffRefused` with every problem."""
    section = _convert(entry)
    problems = check_periods(section.periods, "tariff")
    known = sorted({t.id for t in config.tariffs})
    if section.id not in known:
        problems.append(
            f"tariff.id: {section.id!r} is no tariff of the config (known: "
            f"{', '.join(known) or 'none'}); a pushed entry is a new version of one"
        )
    if section.default:
        problems.append("tariff.default: the default tariff is chosen in the config file")
    if section.valid_from is None:
        problems.append("tariff.valid_from: required (YYYY-MM-DD HH:MM:SS, station time)")
    else:
        try:
            since = dt.datetime.strptime(section.valid_from, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            problems.append(f"tariff.valid_from: not a date and time: {section.valid_from!r}")
        else:
            tz = zoneinfo.ZoneInfo(config.station.timezone)
            if since.replace(tzinfo=tz).timestamp() < now - PAST_SLACK_S:
                problems.append(
                    f"tariff.valid_from: {section.valid_from} is in the past; a pushed tariff "
                    "applies from now on"
                )
        if any(t.id == section.id and t.valid_from == section.valid_from for t in config.tariffs):
            problems.append(
                f"tariff: {section.id!r} already has a version from {section.valid_from}"
            )
    if problems:
        raise TariffRefused(problems)
    return section


def load_pushed(state_dir: str) -> list[TariffSection]:
    """The entries pushed so far (none when the file does not exist); :class:`ValueError`
    for a file that is not what :func:`save_pushed` writes."""
    path = pushed_path(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return msgspec.json.decode(raw, type=list[TariffSection])
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a list of tariff entries ({exc})") from None


def save_pushed(state_dir: str, entries: list[TariffSection]) -> None:
    """Write every pushed entry atomically (temporary file, fsync, rename)."""
    path = pushed_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.part")
    data = json.dumps(msgspec.to_builtins(entries), indent=1, ensure_ascii=False).encode()
    with partial.open("wb") as out:
        out.write(data + b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def with_pushed(config: Config, entries: list[TariffSection]) -> Config:
    """``config`` with the pushed entries after its own tariffs."""
    if not entries:
        return config
    return msgspec.structs.replace(config, tariffs=[*config.tariffs, *entries])
