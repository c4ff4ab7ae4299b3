"""``evgw run``: the gateway service on one asyncio loop.

Start-up: load and validate the config and secrets (a bad config stops here with exit 2,
before systemd is told we are ready), build the components (:mod:`agent.service.wiring`), start
each as a supervised task, then send ``READY=1``. While running: ``WATCHDOG=1`` from the
loop at half the watchdog interval and a one-line ``STATUS=``. SIGHUP reloads the config
part by part; one that fails validation is logged and ignored, the service keeps the old
one. A config sent over the status socket (``evgw config apply``, MQTT ``config.apply``) is
applied part by part and rolled back when the service does not work with it
(:mod:`agent.service.apply`). SIGTERM (or SIGINT) stops intake, flushes and returns 0 within
the stop budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

from agent.config.errors import ConfigError
from agent.config.load import config_warnings, load_config
from agent.config.schema import Config
from agent.config.secrets import Secrets, load_secrets
from agent.service.apply import MAX_REQUEST_BYTES, handle_request, reload_parts
from agent.service.logs import register_secrets
from agent.service.metrics import start_metrics_server
from agent.service.status_socket import StatusServer, register_handler, socket_path
from agent.service.supervisor import Supervisor
from agent.service.systemd_notify import Notifier
from agent.service.wiring import Runtime, build_runtime

log = logging.getLogger("evgw.service")

STOP_BUDGET_S = 8.0
"""Everything must be flushed and closed within this; the unit allows 10 s."""
UPLINK_DRAIN_S = 1.5
"""At stop, how long the uplinks may keep delivering the last records."""


class Service:
    def __init__(self, config_path: Path, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.config: Config | None = None
        self.config_bytes = b""
        """The text of the running config, as read or applied."""
        self.apply_lock = asyncio.Lock()
        """One config change at a time: a SIGHUP reload or an apply."""
        self.secrets: Secrets | None = None
        self.runtime: Runtime | None = None
        self.supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._started_monotonic = time.monotonic()
        self.status_server: StatusServer | None = None
        self.metrics_server: Any = None

    def _load(self) -> tuple[Config, Secrets, bytes]:
        """The config, its secrets and the text of the file as read."""
        config = load_config(self.config_path)
        try:
            text = self.config_path.read_bytes()
        except OSError as exc:  # gone since it was loaded: an apply then just replaces it
            log.warning("config file %s: %s", self.config_path, exc)
            text = b""
        for warning in config_warnings(config):
            log.warning("config: %s", warning)
        secrets = load_secrets(config)
        register_secrets(secrets.values())
        log.debug("secrets loaded from %s (fingerprint %s)", secrets.source, secrets.fingerprint())
        return config, secrets, text

    def _start_components(self) -> None:
        assert self.runtime is not None
        for component in self.runtime.components:
            self.supervisor.start(component.name, component.run)

    def snapshot(self) -> dict[str, Any]:
        """What `evgw status` shows: identity, tasks and each part's own view."""
        assert self.config is not None
        return {
            "gateway_id": self.config.gateway.gateway_id,
            "station_id": self.config.station.station_id,
            "uptime_s": round(time.monotonic() - self._started_monotonic, 1),
            "status": self.status_line(),
            "config": {
                "path": str(self.config_path),
                "sha256": hashlib.sha256(self.config_bytes).hexdigest(),
            },
            "tasks": {
                name: {"state": s.state, "restarts": s.restarts, "last_error": s.last_error}
                for name, s in self.supervisor.states.items()
            },
            **(self.runtime.snapshot() if self.runtime else {}),
        }

    def status_line(self) -> str:
        parts = [self.runtime.summary() if self.runtime else "starting", self.supervisor.summary()]
        return "; ".join(parts)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        # ConfigError propagates: exit 2, not READY
        self.config, self.secrets, self.config_bytes = self._load()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        self.runtime = await build_runtime(self.config, self.secrets)
        self._start_components()
        register_handler(
            "config", lambda request: handle_request(self, request), max_bytes=MAX_REQUEST_BYTES
        )
        self.status_server = StatusServer(
            socket_path(self.config.gateway.runtime_dir), self.snapshot
        )
        try:
            await self.status_server.start()
        except OSError as exc:  # status is a convenience: never a reason not to run
            log.warning("status socket unavailable (%s): evgw status will not answer", exc)
            self.status_server = None
        if self.config.metrics.enabled:
            try:
                self.metrics_server, _ = start_metrics_server(
                    self.config.metrics.port, lambda: self.runtime
                )
            except OSError as exc:
                log.warning(
                    "metrics endpoint on port %d unavailable: %s", self.config.metrics.port, exc
                )
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        log.info(
            "started: gateway %s, station %s, config %s",
            self.config.gateway.gateway_id,
            self.config.station.station_id,
            self.config_path,
        )
        self.notifier.ready(self.status_line())
        try:
            while not self._stop.is_set():
                reload_wait = asyncio.create_task(self._reload.wait())
                stop_wait = asyncio.create_task(self._stop.wait())
                await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                reload_wait.cancel()
                stop_wait.cancel()
                if self._reload.is_set() and not self._stop.is_set():
                    self._reload.clear()
                    await self._do_reload()
        finally:
            self.notifier.stopping()
            log.info("stopping")
            watchdog.cancel()
            await self._shutdown()
            self.notifier.close()
        log.info("stopped")
        return 0

    async def _do_reload(self) -> None:
        async with self.apply_lock:
            await self._reload_now()

    async def _reload_now(self) -> None:
        self.notifier.reloading()
        try:
            config, secrets, text = self._load()
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            self.notifier.status(f"reload rejected; {self.status_line()}")
            return
        await reload_parts(self, config, secrets, text)
        self.notifier.ready(self.status_line())

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        while True:
            if interval is not None:
                self.notifier.watchdog()
            self.notifier.status(self.status_line())
            await asyncio.sleep(interval if interval is not None else 30.0)

    async def _shutdown(self) -> None:
        if self.status_server is not None:
            await self.status_server.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        runtime = self.runtime
        if runtime is None:
            await self.supervisor.stop(timeout_s=STOP_BUDGET_S / 2)
            return
        # 1. stop intake, 2. write what the station still holds, 3. let the uplinks deliver
        # it (briefly: whatever is left goes at the next start), 4. stop them, close the ledger
        await self.supervisor.stop(timeout_s=STOP_BUDGET_S / 4, names=runtime.intake_names)
        try:
            await asyncio.wait_for(runtime.finish_intake(), timeout=STOP_BUDGET_S / 4)
            await runtime.drain_uplinks(timeout_s=UPLINK_DRAIN_S)
        except TimeoutError:
            log.error("flushing the station took longer than %.1f s", STOP_BUDGET_S / 4)
        finally:
            await self.supervisor.stop(timeout_s=STOP_BUDGET_S / 8)
            try:
                await asyncio.wait_for(runtime.close(), timeout=STOP_BUDGET_S / 4)
            except TimeoutError:
                log.error("closing the ledger took longer than %.1f s", STOP_BUDGET_S / 4)


def run_service(config_path: Path) -> int:
    return asyncio.run(Service(config_path).run())
