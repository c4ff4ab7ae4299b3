"""`evgw session plot` renders the real capture and a ledger's session; without matplotlib it
says which extra to install."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agent.ledger import GatewayKey, Ledger
from agent.station.replay import replay_file

image = pytest.importorskip("matplotlib.image", reason="the optional extra evgw[plot]")

EVGW = [sys.executable, "-m", "agent.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*EVGW, *args], capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def check_image(path: Path) -> None:
    pixels = image.imread(path)
    assert pixels.shape[:2] == (900, 1100)
    rgb = (pixels[..., :3] * 255).round().astype(int)
    colours = {tuple(p) for p in rgb.reshape(-1, 3)[::7]}
    assert len(colours) > 50  # axes, three line colours per panel, text: not a blank image
    red = (
        (abs(rgb[..., 0] - 214) < 12) & (abs(rgb[..., 1] - 39) < 12) & (abs(rgb[..., 2] - 40) < 12)
    )
    assert red.sum() > 200  # the stop request's marker line across the panels


def test_plot_the_real_capture(capture_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "session.png"
    done = run("session", "plot", "--can", str(capture_path), str(out))
    assert done.returncode == 0, done.stderr
    assert "27 samples, 2 marks" in done.stdout
    check_image(out)


def test_replay_plots_the_capture_as_it_replays_it(capture_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay.png"
    done = run("replay", "--can", str(capture_path), "--plot", str(out))
    assert done.returncode == 0, done.stderr
    assert '"kind":"charge_order"' in done.stdout  # the records still go to stdout
    assert f"wrote {out}: 27 samples" in done.stderr
    check_image(out)
    bad = run("replay", "--can", str(capture_path), "--plot", str(tmp_path / "x.nosuchformat"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert "cannot write" in bad.stderr


async def _ledger_from(capture: Path, path: Path) -> str:
    records = replay_file(capture)
    ledger = await Ledger.open(path, gateway_id="gw-plot", key=GatewayKey.generate())
    try:
        for record in records:
            await ledger.append(record)
    finally:
        await ledger.close()
    return next(r.body["session_id"] for r in records if r.kind == "bms_process")


def test_plot_a_session_from_the_ledger(capture_path: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    session = asyncio.run(_ledger_from(capture_path, ledger))
    out = tmp_path / "from-ledger.svg"
    done = run("session", "plot", session, str(out), "--ledger", str(ledger))
    assert done.returncode == 0, done.stderr
    assert out.read_text().lstrip().startswith("<?xml") and "<svg" in out.read_text()
    missing = run("session", "plot", "no-such-session", str(out), "--ledger", str(ledger))
    assert (
        missing.returncode == 1
        and "no bms_process records of session 'no-such-session'" in missing.stderr
    )


def test_without_matplotlib_names_the_extra(capture_path: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; from agent.cli import main; "
        f"sys.exit(main(['session', 'plot', '--can', {str(capture_path)!r}, {str(tmp_path / 'x.png')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'evgw[plot]'" in done.stderr
    assert "Traceback" not in done.stderr
