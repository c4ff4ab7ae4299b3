"""What the downlink commands need from the gateway beyond the uplink's own settings: the
config file the service runs (``$EVGW_CONFIG``, which the unit sets; the default path
otherwise), the role keys it names, the gateway key that signs the replies, and ``evgw``
sub-commands that ask the running service (``status --json``, ``diag``) as a technician
would.

The config is read once, on first use, and must be the one the uplink was built from (same
station); otherwise the commands that need it are refused with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from agent.errors import UserError
from agent.ledger import GatewayKey, PublicKey
from agent.uplink.mqtt.command_roles import Refused

if TYPE_CHECKING:
    from agent.config.schema import Config

EVGW_TIMEOUT_S: Final = 120.0
SERVICE_SOCKET: Final = "status.sock"
"""The running service's status socket (``agent.service.status_socket``), in its runtime
directory: requests that act on the station model or the service's ledger go there."""
SERVICE_TIMEOUT_S: Final = 30.0


class ServiceContext:
    def __init__(self, station_id: str, admin_key: PublicKey | None) -> None:
        self.station_id = station_id
        self._admin = admin_key
        self._loaded: tuple[Config, Path] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, PublicKey] | None = None
        self._reply_key: GatewayKey | None = None
        self.key_problems: list[str] = []

    def config(self) -> tuple[Config, Path]:
        """The service's config and its path, read again when the file changed (a config
        apply replaces it): the role keys and the reply key follow it."""
        from agent.config.errors import ConfigError  # the config imports the uplinks
        from agent.config.load import default_config_path, load_config

        path = default_config_path()
        stamp = _stamp(path)
        if self._loaded is None or stamp != self._stamp:
            self._keys, self._reply_key, self.key_problems = None, None, []
            try:
                config = load_config(path)
            except ConfigError as exc:
                raise Refused(
                    f"cannot read the service's config {path}: {exc.problems[0]}"
                ) from None
            if config.station.station_id != self.station_id:
                raise Refused(
                    f"{path} is not the config of station {self.station_id} (EVGW_CONFIG)"
                )
            self._loaded, self._stamp = (config, path), stamp
        return self._loaded

    def keys(self) -> dict[str, PublicKey]:
        """Role → platform key; problems with a key file are kept in :attr:`key_problems`."""
        with contextlib.suppress(Refused):  # a changed file drops the keys read from the old
            self.config()
        if self._keys is not None:
            return self._keys
        keys: dict[str, PublicKey] = {}
        if self._admin is not None:
            keys["admin"] = self._admin
        try:
            section = self.config()[0].uplinks.mqtt
            role_files = dict(section.command_keys) if section is not None else {}
        except Refused as exc:
            role_files = {}
            self.key_problems.append(str(exc))
        for role, file in role_files.items():
            try:
                keys[role] = PublicKey.from_file(Path(file))
            except UserError as exc:
                self.key_problems.append(f"uplinks.mqtt.command_keys.{role}: {exc}")
        self._keys = keys
        return keys

    def reply_key(self) -> GatewayKey | None:
        """The gateway key (replies are signed by it), or None when it cannot be read."""
        if self._reply_key is None:
            try:
                self._reply_key = GatewayKey.load(Path(self.config()[0].ledger.key_path))
            except (Refused, UserError):
                return None
        return self._reply_key


async def ask_service(
    context: ServiceContext, verb: str, request: dict[str, object]
) -> dict[str, object]:
    """``<verb> <request>`` to the running service over its status socket: the handler it
    registered for ``verb`` answers with a JSON object (:class:`Refused` when it cannot be
    asked)."""
    config, _path = context.config()
    runtime_dir = os.environ.get("RUNTIME_DIRECTORY") or config.gateway.runtime_dir
    path = Path(runtime_dir) / SERVICE_SOCKET
    line = verb.encode("ascii") + b" " + msgspec.json.encode(request) + b"\n"
    try:
        async with asyncio.timeout(SERVICE_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(line)
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise Refused(f"the running service cannot be asked at {path}: {exc}") from None
    try:
        reply = msgspec.json.decode(answer)
    except msgspec.DecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise Refused(f"the running service answered no object to {verb!r}")
    return reply


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a replaced or edited file from the one read (inode, mtime, size)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


async def evgw_child(args: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    """``evgw ARGS`` in a child process: its exit code, stdout and stderr; :class:`Refused`
    when it does not finish within ``timeout_s`` (it is killed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Refused(f"evgw {args[0]} did not finish within {timeout_s:.0f} s") from None
    return int(proc.returncode or 0), out, err


def first_line(err: bytes, code: int) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else str(code)


async def run_evgw(*args: str, timeout_s: float = EVGW_TIMEOUT_S) -> bytes:
    """``evgw ARGS`` in a child process; its stdout, or :class:`Refused` with its error."""
    code, out, err = await evgw_child(list(args), timeout_s)
    if code != 0:
        raise Refused(f"evgw {args[0]} failed: {first_line(err, code)}")
    return out
