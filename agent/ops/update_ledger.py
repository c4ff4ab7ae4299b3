"""Update steps as ``event`` records in the ledger.

The ledger has one writer, the service; so the updater appends its journal's steps while it
has the service stopped (before starting the new release, and before starting the previous
one again on a rollback), and the running service appends the steps written while it runs —
the verdict of its own first minute, ``update_healthy`` — within :data:`WATCH_INTERVAL_S`
(:func:`watch_steps`). ``updates.ledgered`` beside the journal counts the steps the updater
appended; both sides skip a step the ledger already holds (same step name and time), so each
step becomes exactly one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

import msgspec

from agent.config.schema import Config
from agent.errors import UserError
from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.stats import ledger_stats
from agent.ops.layout import Layout
from agent.records.bodies import EventBody, body_to_dict
from agent.records.envelope import Record, iso_ts

log = logging.getLogger("agent.ops.update")


def _marker(layout: Layout) -> Path:
    return layout.opt / "updates.ledgered"


def _done(layout: Layout) -> int:
    try:
        return int(_marker(layout).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _event(config: Config, entry: dict[str, Any]) -> Record:
    details = {k: v for k, v in entry.items() if k not in ("ts", "step", "message")}
    message = str(entry.get("message") or entry["step"].replace("_", " "))
    return Record(
        kind="event",
        ts=iso_ts(float(entry.get("ts", time.time()))),
        station_id=config.station.station_id,
        body=body_to_dict(EventBody(event=entry["step"], message=message, details=details)),
    )


def _keep_owner(ledger_path: Path) -> None:
    """Files the updater (root) created beside the ledger stay the service user's."""
    if os.geteuid() != 0:
        return
    st = ledger_path.parent.stat()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chown(f"{ledger_path}{suffix}", st.st_uid, st.st_gid)


def flush_steps(config: Config, layout: Layout) -> int:
    """Append the journal's steps not yet in the ledger (the service must be stopped)."""
    steps = layout.steps()
    pending = steps[_done(layout) :]
    if not pending:
        return 0
    appended = asyncio.run(_append_new(config, pending))
    _keep_owner(Path(config.ledger.path))
    _marker(layout).write_text(f"{len(steps)}\n")
    return appended


async def _append_new(config: Config, pending: list[dict[str, Any]]) -> int:
    ledger = await Ledger.open(
        Path(config.ledger.path),
        gateway_id=config.gateway.gateway_id,
        key=GatewayKey.load(Path(config.ledger.key_path)),
        station_id=config.station.station_id,
        integrity_delay_s=None,
    )
    try:
        return await append_new_steps(ledger, config, pending)
    finally:
        await ledger.close()


async def append_new_steps(ledger: Ledger, config: Config, pending: list[dict[str, Any]]) -> int:
    """Append the steps of ``pending`` the ledger does not hold yet; how many were."""
    recent = await ledger.find("event", limit=RECENT_EVENTS, newest_first=True)
    held = {(r.body.get("event"), r.ts) for r in recent}
    records = [_event(config, entry) for entry in pending]
    new = [r for r in records if (r.body["event"], r.ts) not in held]
    for record in new:
        await ledger.append(record)
    return len(new)


RECENT_EVENTS: Final = 2000
"""The newest events compared with the journal (updates are a few steps each)."""
WATCH_INTERVAL_S: Final = 10.0


def running_layout(prefix: Path | None = None) -> Layout | None:
    """The release layout this process runs from (``<root>/opt/evgw/releases/<version>``),
    None for an evgw installed any other way (a development venv, a distribution package)."""
    releases = (prefix or Path(sys.prefix)).resolve().parent
    opt = releases.parent.parent
    if (releases.name, releases.parent.name, opt.name) == ("releases", "evgw", "opt"):
        return Layout(opt.parent)
    return None


async def watch_steps(ledger: Ledger, config: Config, layout: Layout) -> None:
    """Inside the service, until cancelled: the journal's new steps into the ledger. Only a
    journal that grew since the last look costs a ledger query."""
    handled = _done(layout)
    while True:
        try:
            steps = layout.steps()
            if len(steps) > handled:
                if await append_new_steps(ledger, config, steps[handled:]):
                    log.info("update steps recorded in the ledger")
                handled = len(steps)
        except Exception:  # the journal is a convenience here; the updater writes it again
            log.exception("update journal %s not recorded", layout.journal)
        await asyncio.sleep(WATCH_INTERVAL_S)


def running_version(config: Config, window: int = 2000) -> str | None:
    """The version in the last ``gateway_started`` event of the ledger (what runs now)."""
    path = Path(config.ledger.path)
    try:
        conn = open_for_reading(path)
    except UserError:  # not there yet, or a service still creating it
        return None
    try:
        last = ledger_stats(conn, path)["last_seq"] or 0
        found = None
        for line in export_lines(conn, from_seq=max(1, last - window), kinds=["event"]):
            if b'"gateway_started"' in line:
                found = line
    finally:
        conn.close()
    if found is None:
        return None
    body = msgspec.json.decode(found).get("body") or {}
    version = (body.get("details") or {}).get("version")
    return str(version) if version is not None else None
