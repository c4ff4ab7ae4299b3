"""Update steps as ``event`` records in the ledger.

The ledger has one writer, the service; so the updater appends its journal's steps while it
has the service stopped (before starting the new release, and before starting the previous
one again on a rollback). ``updates.ledgered`` beside the journal counts the steps already
appended, so each step becomes exactly one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from agent.config.schema import Config
from agent.errors import UserError
from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.stats import ledger_stats
from agent.ops.layout import Layout
from agent.records.bodies import EventBody, body_to_dict
from agent.records.envelope import Record, iso_ts


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


async def _append(config: Config, records: list[Record]) -> None:
    ledger = await Ledger.open(
        Path(config.ledger.path),
        gateway_id=config.gateway.gateway_id,
        key=GatewayKey.load(Path(config.ledger.key_path)),
        station_id=config.station.station_id,
        integrity_delay_s=None,
    )
    try:
        for record in records:
            await ledger.append(record)
    finally:
        await ledger.close()


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
    done = _done(layout)
    pending = steps[done:]
    if not pending:
        return 0
    asyncio.run(_append(config, [_event(config, entry) for entry in pending]))
    _keep_owner(Path(config.ledger.path))
    _marker(layout).write_text(f"{len(steps)}\n")
    return len(pending)


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
