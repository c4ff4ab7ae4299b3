"""What the ledger tells the technician about damage: alarms, events, health messages.

Each function here hands its records to the writer (without waiting: a full disk must not
block) and returns the health message for the ledger's conditions.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence

from agent.ledger.integrity import Integrity
from agent.ledger.losses import Loss
from agent.ledger.opening import Opened, lost_event_body
from agent.ledger.quarantine import quarantine, set_checkpoint_aside
from agent.ledger.readcheck import Damaged, first_seqs
from agent.ledger.recovery import record_losses
from agent.ledger.writer import Writer
from agent.records.envelope import iso_ts

log = logging.getLogger(__name__)


def announce(writer: Writer, opened: Opened) -> list[tuple[str, str]]:
    """Alarms and events for what the open found; returns ``(condition, message)`` pairs."""
    conditions = []
    if opened.recovery is not None:
        message = opened.recovery.message()
        log.error("ledger: %s", message)
        writer.submit(writer.alarm("recovered", "raised", message))
        conditions.append(("recovered_from_corruption", message))
    if opened.damage is not None:
        message = f"ledger is damaged ({opened.damage}); it is rebuilt while running"
        writer.submit(writer.alarm("damaged", "raised", message))
        writer.request_rebuild(opened.damage)
        conditions.append(("damaged", message))
    if opened.notes:
        message = "ledger rows set aside: " + "; ".join(opened.notes)
        log.error("ledger: %s", message)
        writer.submit(writer.alarm("quarantined", "raised", message))
    gone = opened.abandoned
    if gone is not None:
        body = lost_event_body(gone)
        event_seq = writer.submit(writer.event(body))[0][0]
        loss = Loss(gone.from_seq, gone.to_seq, {}, 0)
        writer.run_op(lambda conn: record_losses(conn, [loss], event_seq), None)
        log.error("ledger: %s", body["message"])
        writer.submit(writer.alarm("records_lost", "raised", str(body["message"])))
    return conditions


def integrity(writer: Writer, result: Integrity) -> str | None:
    """Act on the background check: quarantine bad checkpoints; rebuild on damage.

    Returns the health message when a rebuild was requested (None: nothing to rebuild).
    """
    if result.bad_checkpoints:
        bad = list(result.bad_checkpoints)

        def set_aside(conn: sqlite3.Connection) -> None:
            for cid, seq, reason in bad:
                set_checkpoint_aside(conn, (cid, seq), reason)

        writer.run_op(set_aside, None)
        message = "checkpoints set aside: " + "; ".join(
            f"seq {seq}: {reason}" for _cid, seq, reason in bad[:5]
        )
        log.error("ledger: %s", message)
        writer.submit(writer.alarm("quarantined", "raised", message))
    if not result.problems:
        log.info(
            "ledger: integrity check passed (%d records, %.1f s)", result.records, result.seconds
        )
        return None
    reason = "integrity check: " + "; ".join(result.problems[:3])
    log.error("ledger: %s", reason)
    writer.request_rebuild(reason)
    return f"ledger is damaged ({reason}); it is being rebuilt while running"


def damaged_rows(writer: Writer, damaged: Sequence[Damaged], uplink: str) -> str:
    """Rows a read skipped: quarantined, parked for ``uplink``, an alarm, a rebuild."""
    items = list(damaged)
    ts = iso_ts(time.time())

    def note(conn: sqlite3.Connection) -> None:
        for d in items:
            quarantine(conn, "record", d.seq, d.reason, None)
            if uplink:
                conn.execute(
                    "INSERT OR IGNORE INTO parked VALUES (?, ?, ?, ?)",
                    (uplink, d.seq, f"damaged: {d.reason}"[:255], ts),
                )

    writer.run_op(note, None)
    where = f" (read by {uplink}, parked for it)" if uplink else ""
    message = (
        f"{len(items)} ledger records cannot be read, {first_seqs(items)}{where}: "
        f"{items[0].reason}; the ledger is rebuilt and declares them lost"
    )
    log.error("ledger: %s", message)
    writer.submit(writer.alarm("damaged", "raised", message))
    writer.request_rebuild(f"records cannot be read: {first_seqs(items)}")
    return message
