"""The update journal's steps reach the ledger exactly once, from the updater while the
service is stopped and from the running service for the steps written while it runs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from agent.config.load import load_config
from agent.ledger import GatewayKey, Ledger
from agent.ops.layout import Layout
from agent.ops.update_ledger import (
    append_new_steps,
    flush_steps,
    running_layout,
    watch_steps,
)
from tests.foundation.test_config import BASE


def test_the_release_layout_is_found_from_the_running_prefix(tmp_path: Path) -> None:
    release = tmp_path / "opt/evgw/releases/0.2.0"
    release.mkdir(parents=True)
    (tmp_path / "opt/evgw/current").symlink_to("releases/0.2.0")
    assert running_layout(release) == Layout(tmp_path)
    assert running_layout(tmp_path / "opt/evgw/current") == Layout(tmp_path)  # through the link
    assert running_layout(tmp_path / "venv") is None  # a development venv
    assert running_layout(tmp_path / "usr/lib/evgw/releases/x") is None


async def test_steps_once_from_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "evgw.toml"
    path.write_text(
        BASE.replace("SECRETS", str(tmp_path / "secrets.toml"))
        + f'\n[ledger]\npath = "{tmp_path}/ledger.db"\nkey_path = "{tmp_path}/gw.key"\n'
    )
    config = load_config(path)
    GatewayKey.generate().save(Path(config.ledger.key_path))
    layout = Layout(tmp_path / "root")
    layout.record("update_verified", version="0.2.0")
    layout.record("update_switched", version="0.2.0", previous="0.1.0")
    assert await asyncio.to_thread(flush_steps, config, layout) == 2  # the updater, stopped
    layout.record("update_healthy", version="0.2.0", previous="0.1.0")

    key = GatewayKey.load(Path(config.ledger.key_path))
    ledger = await Ledger.open(Path(config.ledger.path), gateway_id=None, key=key)
    try:
        pending = layout.steps()
        assert await append_new_steps(ledger, config, pending) == 1  # only the new one
        assert await append_new_steps(ledger, config, pending) == 0
        layout.record("update_rolled_back", version="0.3.0", to="0.2.0", reason="test")
        watcher = asyncio.create_task(watch_steps(ledger, config, layout))
        await asyncio.sleep(0.3)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        events = [r.body["event"] for r in await ledger.find("event")]
    finally:
        await ledger.close()
    steps = [e for e in events if e.startswith("update_")]
    assert steps == ["update_verified", "update_switched", "update_healthy", "update_rolled_back"]
    assert await asyncio.to_thread(flush_steps, config, layout) == 0  # nothing twice


@pytest.mark.parametrize("line", ["{not json", "[]", '{"no_step": 1}', "\x00\xff"])
async def test_a_damaged_journal_line_is_skipped(tmp_path: Path, line: str) -> None:
    layout = Layout(tmp_path)
    layout.record("update_verified", version="0.2.0")
    with layout.journal.open("a", encoding="utf-8", errors="replace") as f:
        f.write(line + "\n")
    layout.record("update_healthy", version="0.2.0")
    assert [s["step"] for s in layout.steps()] == ["update_verified", "update_healthy"]
