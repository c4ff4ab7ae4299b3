"""The systemd notification protocol (``sd_notify``), without a C library.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and,
with ``WatchdogSec=``, ``WATCHDOG_USEC``. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = not pid or pid == str(os.getpid())
        self.watchdog_interval_s: float | None = (
            int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 and watchdog_for_us else None
        )
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> None:
        if not self._address:
            return
        try:
            if self._sock is None:
                # non-blocking: a notification that cannot be queued is dropped rather than
                # ever stalling the event loop (the next watchdog ping follows shortly)
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto("\n".join(fields).encode(), self._address)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # log once per failure streak, not every watchdog ping
                log.warning("cannot notify systemd on %s: %s", self._address.lstrip("\0"), exc)
            self._failed = True

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def status(self, status: str) -> None:
        """Send ``STATUS=`` when it changed since the last one."""
        if status != self._last_status:
            self._last_status = status
            self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        self.notify("RELOADING=1", "STATUS=reloading configuration")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
