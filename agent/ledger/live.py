"""Rebuilding a damaged ledger while the service runs (damage the background check found).

Runs on the writer thread, between two commits (:meth:`agent.ledger.writer.Writer.
request_rebuild`):

1. everything pending is committed to the damaged file first, so every seq handed out so far
   is in it;
2. the file and its WAL are salvaged into ``<ledger>.rebuild`` exactly as at start-up
   (:func:`agent.ledger.recovery.salvage_into`) — appends meanwhile wait in memory, chained
   as usual;
3. under the writer's lock the recovery event is chained after them, the epoch changes, and
   the waiting records, the event and an alarm are committed into the new file;
4. readers pause, the damaged file is moved aside and the new one takes its place; only then
   are the waiting records reported durable.

If salvage fails (no room for a second file, say), the damage stays reported and the rebuild
is retried after :data:`RETRY_S`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Final

from agent.ledger import recovery
from agent.ledger.batch import Batch
from agent.ledger.losses import Loss
from agent.ledger.recovery import Recovery
from agent.ledger.store import connect
from agent.ledger.writer import Writer

log = logging.getLogger(__name__)

RETRY_S: Final = 600.0
Swap = Callable[[Callable[[], None]], None]
"""Runs a function while no reader uses the ledger file (the ledger's reader lock)."""


def rebuild(writer: Writer, reason: str, swap_readers: Swap) -> Recovery | None:
    """Rebuild ``writer``'s file; see the module docstring. None: not now (see the alarm)."""
    with writer.cond:
        pending, writer.batch = writer.batch, Batch()
    # a failed commit requeues the rows; a damaged file refusing writes is rebuilt anyway
    # (the rows then go to the new file), a full disk has no room for one: try again soon
    refused = (pending.rows or pending.ops) and not writer.commit(pending)
    if refused and writer.fault == "disk_full":
        writer.rebuild_after = time.monotonic() + 1.0
        return None
    path, tmp = writer.path, recovery.rebuild_path(writer.path)
    log.error("ledger: rebuilding %s while running (%s)", path, reason)
    try:
        plan = recovery.salvage_into(
            path, tmp, gateway_id=writer.gateway_id, state=writer.state(),
            keys=[writer.key.public],
        )  # fmt: skip
        new = connect(tmp, writer=True)
    except (OSError, sqlite3.Error) as exc:
        _failed(writer, reason, exc)
        return None
    aside = recovery.aside_name(path)
    with writer.cond:
        follows = writer.tail()
        body = recovery.recovery_body(plan, reason, aside, follows)
        writer.epoch = plan.epoch
        event_seq = writer.submit(writer.event(body))[0][0]
        result = Recovery(
            reason, aside, plan.epoch, plan.kept, follows[0], follows[1].hex(), event_seq,
            tuple(plan.losses),
        )  # fmt: skip
        writer.submit(writer.alarm("recovered", "raised", result.message()))
        batch, writer.batch = writer.batch, Batch()
    batch.ops.append((_finish(plan.losses, event_seq, plan.epoch), None))
    results = writer.write(batch, new)
    if results is None:  # requeued: it goes into the damaged file instead
        new.close()
        recovery.finish_interrupted(path)
        _failed(writer, reason, OSError("the rebuilt file refused the waiting records"))
        return None

    def replace() -> None:
        writer.conn.close()
        new.close()
        recovery.swap(path, tmp, aside)

    swap_readers(replace)
    writer.conn = connect(path, writer=True, limit=writer.wal_limit)
    writer.checkpointed = (writer.durable_seq, dict(writer.counts))
    with writer.cond:
        writer.rebuild_reason = None
    writer.committed(batch, results)
    log.error("ledger: %s", result.message())
    return result


def _finish(
    losses: Sequence[Loss], event_seq: int, epoch: int
) -> Callable[[sqlite3.Connection], None]:
    """The op that records the declared losses and the new epoch with the event."""

    def op(conn: sqlite3.Connection) -> None:
        recovery.record_losses(conn, losses, event_seq)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (str(epoch),))

    return op


def _failed(writer: Writer, reason: str, exc: BaseException) -> None:
    message = (
        f"ledger is damaged ({reason}) and could not be rebuilt now ({exc}); damaged records "
        f"are skipped and reported, the rebuild is retried in {RETRY_S / 60:.0f} minutes"
    )
    log.error("ledger: %s", message)
    writer.rebuild_after = time.monotonic() + RETRY_S
    writer.on_health("damaged", True, message)
    writer.submit(writer.alarm("damaged", "raised", message))
