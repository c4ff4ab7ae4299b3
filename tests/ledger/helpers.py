"""Shared helpers for the ledger tests: records of each kind and a quick key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.ledger import GatewayKey
from agent.records.envelope import Record


def record(kind: str = "meter_sample", n: int = 0, **body: Any) -> Record:
    return Record(
        kind=kind,
        ts=f"2026-03-01T10:{(n // 60) % 60:02d}:{n % 60:02d}.000Z",
        station_id="ST1",
        equipment_id="EQ1",
        connector_id=str(1 + n % 2),
        body={"n": n, "power_kw": 7.5 + n / 1000, **body},
    )


def key_file(directory: Path, name: str = "gateway.key") -> tuple[GatewayKey, Path]:
    key = GatewayKey.generate()
    path = directory / name
    key.save(path)
    return key, path
