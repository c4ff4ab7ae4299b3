"""The MQTT ``diag`` command's upload of the archive to a support URL, against a real HTTP
server on loopback (plain HTTP is allowed only there, as for ``update``)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.uplink.mqtt.command_diag import upload
from agent.uplink.mqtt.command_roles import Refused
from agent.uplink.mqtt.command_update import https_or_loopback
from tests.conftest import free_port
from tests.ops.conftest import Receiver


async def test_the_archive_arrives_whole_with_its_hash(receiver: Receiver) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB
    digest = hashlib.sha256(data).hexdigest()
    done = await upload(receiver.url(), data, digest, "ST1")
    assert done == {
        "uploaded": f"http://127.0.0.1:{receiver.port}/up/diag.tar.gz",  # no query: no token
        "status": 200,
        "size": len(data),
        "sha256": digest,
    }
    ((path, headers, body),) = receiver.got
    assert body == data and path.endswith("?X-Signature=secret-token")
    assert headers["X-Evgw-Sha256"] == digest and headers["X-Evgw-Station"] == "ST1"


async def test_a_refusal_is_named_and_the_token_never_repeated(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 403, b"AccessDenied: the URL expired\nmore"
    with pytest.raises(Refused) as refused:
        await upload(receiver.url(), b"x", "0" * 64, "ST1")
    assert "HTTP 403: AccessDenied: the URL expired" in str(refused.value)
    assert "secret-token" not in str(refused.value)


async def test_unreachable_and_forbidden_urls_are_refused() -> None:
    with pytest.raises(Refused, match="failed"):
        await upload(f"http://127.0.0.1:{free_port()}/x", b"x", "0" * 64, "ST1")
    for url in ("http://support.example.com/x", "ftp://127.0.0.1/x", "https:///x", "nonsense"):
        with pytest.raises(Refused, match="https://"):
            await upload(url, b"x", "0" * 64, "ST1")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_url_text_is_allowed_or_refused_never_raised(url: str) -> None:
    with contextlib.suppress(Refused):
        https_or_loopback(url)
