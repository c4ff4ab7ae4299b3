"""The MQTT ``diag`` command's upload: the ``evgw diag`` archive sent to a support URL.

Besides publishing the archive in bounded parts on the reply topic, ``diag`` with
``upload_url`` PUTs the whole archive to that URL — typically a pre-signed upload URL of the
operator's object store — over HTTPS (plain HTTP only to this machine, as for ``update``),
with its SHA-256 and the station in headers so the receiver can check it. The reply names the
host, the HTTP status, the size and the hash, never the URL's query (a pre-signed URL's
credentials).
"""

from __future__ import annotations

import urllib.parse
from typing import Final

import httpx

from agent.uplink.mqtt.command_roles import Refused
from agent.uplink.mqtt.command_update import https_or_loopback

UPLOAD_TIMEOUT_S: Final = 300.0
MAX_ANSWER_BYTES: Final = 64 * 1024
"""What is read of the receiver's answer (only its first line goes into a refusal)."""


async def upload(url: str, data: bytes, sha256: str, station_id: str) -> dict[str, object]:
    """PUT ``data`` to ``url``; what was sent, or :class:`Refused` with the reason."""
    https_or_loopback(url)
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}{parts.path}"
    headers = {
        "Content-Type": "application/gzip",
        "X-Evgw-Sha256": sha256,
        "X-Evgw-Station": station_id,
    }
    try:
        async with (
            httpx.AsyncClient(timeout=UPLOAD_TIMEOUT_S) as client,
            client.stream("PUT", url, content=data, headers=headers) as response,
        ):
            answer = b""
            async for chunk in response.aiter_bytes():
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES:
                    break
    except httpx.HTTPError as exc:
        raise Refused(f"upload to {where} failed: {exc or type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        first = answer.decode("utf-8", "replace").strip().splitlines()[:1]
        detail = f": {first[0][:200]}" if first else ""
        raise Refused(f"upload to {where} refused: HTTP {response.status_code}{detail}")
    return {"uploaded": where, "status": response.status_code, "size": len(data), "sha256": sha256}
