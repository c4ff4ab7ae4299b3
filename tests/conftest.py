"""Fixtures shared by every test folder: real socat pty pairs, a real mosquitto broker,
the real GB/T capture, and free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EVGW_SHARED_DIR") or REPO.parent / "shared")
"""The shared folder (specs, real captures); ``EVGW_SHARED_DIR`` points elsewhere."""
CAPTURE = SHARED / "gbt-logs" / "session-v11-lfp.log"


@pytest.fixture
def capture_path() -> Path:
    """The real GB/T 27930 capture; the test is skipped when ../shared is absent."""
    if not CAPTURE.is_file():
        pytest.skip(f"real capture not available at {CAPTURE}")
    return CAPTURE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line naming the shared folder when tests were skipped because it is absent."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if str(SHARED) in str(getattr(r, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"{SHARED} is absent: {len(skipped)} tests that read it were skipped"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PtyPair:
    """Two linked pseudo-terminals made by socat: bytes written to one come out of the other."""

    a: str
    b: str
    proc: subprocess.Popen[bytes]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_pty_pair(directory: Path, name: str = "tty") -> PtyPair:
    """Start ``socat`` linking ``directory/name-a`` and ``directory/name-b``."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail(
            "socat is not installed: run `make test` (installs it as root) or apt-get install socat"
        )
    a, b = directory / f"{name}-a", directory / f"{name}-b"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"socat did not create the pty pair {a} / {b}")
        time.sleep(0.01)
    return PtyPair(str(a), str(b), proc)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    pair = open_pty_pair(tmp_path)
    yield pair
    pair.close()


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        pytest.fail(
            "mosquitto is not installed: run `make test` (installs it as root) or apt-get install mosquitto"
        )
    return found


@dataclass
class Broker:
    """A real mosquitto process on a loopback port; ``restart()`` keeps its port and config."""

    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited with {self.proc.returncode}; config {self.conf}"
                    ) from None
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def make_broker(directory: Path, extra_conf: str = "") -> Broker:
    """A broker config on a free port with anonymous access and in-memory persistence only."""
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 0\n{extra_conf}"
    )
    return Broker(port=port, conf=conf)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = make_broker(tmp_path)
    b.start()
    yield b
    b.stop()
