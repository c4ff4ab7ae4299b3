"""What ``evgw ledger stats`` shows: counts by kind, size on disk, checkpoints, cursors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.ledger import reader
from agent.ledger.store import read_meta, size_on_disk


def ledger_stats(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    kinds = {
        kind: {"stored": int(total - dropped), "dropped": int(dropped)}
        for kind, total, dropped in conn.execute(
            "SELECT kind, count(*), sum(data IS NULL) FROM records GROUP BY kind ORDER BY kind"
        )
    }
    first, last = conn.execute("SELECT min(seq), max(seq) FROM records").fetchone()
    cp = conn.execute("SELECT seq, ts, key_id FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    uplinks = []
    for uplink, cursor in conn.execute("SELECT uplink, seq FROM cursors ORDER BY uplink"):
        parked = conn.execute("SELECT count(*) FROM parked WHERE uplink = ?", (uplink,)).fetchone()[
            0
        ]
        uplinks.append(
            {
                "uplink": uplink,
                "cursor": int(cursor),
                "backlog": reader.backlog(conn, uplink, int(cursor)),
                "parked": int(parked),
            }
        )
    return {
        "ledger": str(path),
        "gateway_id": read_meta(conn).get("gateway_id"),
        "first_seq": first,
        "last_seq": last,
        "kinds": kinds,
        "size_on_disk_bytes": size_on_disk(path),
        "last_checkpoint": None if cp is None else {"seq": cp[0], "ts": cp[1], "key_id": cp[2]},
        "uplinks": uplinks,
    }


def render(stats: dict[str, Any]) -> str:
    lines = [
        f"ledger      {stats['ledger']}",
        f"gateway     {stats['gateway_id']}",
        f"records     seq {stats['first_seq']}..{stats['last_seq']}",
        f"size        {stats['size_on_disk_bytes'] / 1048576:.2f} MiB on disk",
    ]
    cp = stats["last_checkpoint"]
    lines.append(
        "checkpoint  none yet"
        if cp is None
        else f"checkpoint  seq {cp['seq']} at {cp['ts']} by key {cp['key_id'][:16]}…"
    )
    lines.append("kinds:")
    for kind, counts in stats["kinds"].items():
        dropped = f"  ({counts['dropped']} dropped by retention)" if counts["dropped"] else ""
        lines.append(f"  {kind:<18} {counts['stored']:>10}{dropped}")
    lines.append("uplinks:" if stats["uplinks"] else "uplinks: none registered")
    for u in stats["uplinks"]:
        lines.append(
            f"  {u['uplink']:<10} cursor {u['cursor']:>10}  backlog {u['backlog']:>10}  "
            f"parked {u['parked']}"
        )
    return "\n".join(lines)
