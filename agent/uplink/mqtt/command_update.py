"""The MQTT ``update`` command: fetch a release artefact for the root updater.

The service itself cannot install software (it runs unprivileged on a read-only system), so
``update`` only downloads: the artefact from ``url`` (HTTPS; plain HTTP only from this
machine), bounded in size, checked against the ``sha256`` the platform signed into the
command, and its detached signature (``sig``, Base64, as ``evgw update pack`` writes it), into
``<state_dir>/updates/``. There ``evgw-update.path`` (systemd) starts ``evgw update
apply-pending`` as root, which verifies the signature against the release key and applies it
with the usual rollback. A truncated download or a different hash is refused and nothing is
queued.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import urllib.parse
from pathlib import Path
from typing import Final

import httpx

from agent.uplink.mqtt.command_roles import Refused

MAX_DOWNLOAD_BYTES: Final = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT_S: Final = 600.0
_NAME: Final = re.compile(r"^evgw-[0-9][0-9A-Za-z.+!_]{0,63}\.tar$")


def updates_dir(state_dir: str) -> Path:
    return Path(state_dir) / "updates"


def https_or_loopback(url: str) -> None:
    """Refuse a URL that is not https:// (plain http:// only to this machine)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    try:
        loopback = parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Refused("url must be https:// (plain http only from this machine)")


def _allowed(url: str) -> str:
    name = Path(urllib.parse.urlsplit(url).path).name
    if not _NAME.match(name):
        raise Refused(f"url must end in evgw-VERSION.tar, not {name[:80]!r}")
    https_or_loopback(url)
    return name


async def _download(url: str, partial: Path) -> tuple[int, str]:
    """Stream ``url`` into ``partial`` (fsynced): its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    async with (
        httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_S) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise Refused(f"download failed: HTTP {response.status_code}")
        with partial.open("wb") as out:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise Refused(f"download larger than {MAX_DOWNLOAD_BYTES} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    return size, digest.hexdigest()


async def fetch(url: str, sha256: str, sig: str, state_dir: str) -> dict[str, object]:
    """Download, check the hash, queue the artefact and its signature; what was queued."""
    name = _allowed(url)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise Refused("sha256 must be 64 lowercase hex digits")
    folder = updates_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.part"
    try:
        size, got = await _download(url, partial)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise Refused(f"download failed (truncated or unreachable): {exc}") from None
    except Refused:
        partial.unlink(missing_ok=True)
        raise
    if got != sha256:
        partial.unlink(missing_ok=True)
        raise Refused(f"the download's SHA-256 {got} differs from {sha256}")
    (folder / f"{name}.sig").write_text(sig.strip() + "\n")
    os.replace(partial, folder / name)  # the .tar last: the path unit starts on it
    return {"queued": name, "size": size, "sha256": sha256}
