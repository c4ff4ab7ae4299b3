"""A systemd stand-in for the update tests: ``fake_systemctl.py STATE stop|start evgw.service``.

``start`` runs ``<root>/opt/evgw/current/bin/evgw run`` detached (as the unit's ExecStart
would, through the ``current`` link), its log in ``STATE/service-<n>.log``; ``stop`` sends
SIGTERM and waits for the process to end, as ``systemctl stop`` does. ``STATE/env.json``
names the root, the config and the runtime folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def main(state: Path, action: str) -> int:
    env_file = json.loads((state / "env.json").read_text())
    pidfile = state / "evgw.pid"
    if action == "stop":
        if pidfile.exists():
            pid = int(pidfile.read_text())
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            pidfile.unlink()
        return 0
    if action != "start":
        print(f"unknown action {action}", file=sys.stderr)
        return 2
    runs = len(list(state.glob("service-*.log"))) + 1
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(RUNTIME_DIRECTORY=env_file["runtime"], EVGW_CONFIG=env_file["config"])
    evgw = Path(env_file["root"]) / "opt/evgw/current/bin/evgw"
    with (state / f"service-{runs}.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(evgw), "run", "--config", env_file["config"]],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
