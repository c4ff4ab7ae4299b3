"""The test platform's client side: it calls the gateway's ``query_*`` interfaces.

:class:`PlatformQueries` plays the city platform asking a gateway that serves queries
(``serve_listen``): it fetches a token with the inbound secret set and sends sealed requests;
:meth:`PlatformQueries.post` also sends raw bodies, for the bad-input tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.uplink.cec.codec import (
    CecSecrets,
    SeqGenerator,
    decode_business,
    encode_business,
    envelope_bytes,
    open_response,
    parse_envelope,
    seal_request,
)


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    status: int
    """The HTTP status."""
    ret: int | None = None
    msg: str = ""
    reply: Any = None


@dataclass(slots=True)
class PlatformQueries:
    base_url: str
    operator_id: str
    """The platform's own OperatorID (the caller's, in every envelope)."""
    operator_secret: str
    secrets: CecSecrets
    verify: Any = True
    token: str | None = None
    _seq: SeqGenerator = field(default_factory=SeqGenerator)

    def sealed(self, data: Any, *, stamp_seq: tuple[str, str] | None = None) -> bytes:
        stamp, seq = stamp_seq or self._seq.next(time.time())
        envelope = seal_request(
            encode_business(data),
            operator_id=self.operator_id,
            timestamp=stamp,
            seq=seq,
            secrets=self.secrets,
        )
        return envelope_bytes(envelope)

    def post(self, interface: str, body: bytes, token: str | None = None) -> QueryAnswer:
        headers = {"Content-Type": "application/json;charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = self.base_url.rstrip("/") + "/" + interface
        response = httpx.post(url, content=body, headers=headers, timeout=10, verify=self.verify)
        if response.status_code != 200:
            return QueryAnswer(response.status_code)
        opened = open_response(parse_envelope(response.content), self.secrets)
        reply = decode_business(opened.plaintext) if opened.plaintext else None
        return QueryAnswer(200, opened.ret, opened.msg, reply)

    def fetch_token(self) -> QueryAnswer:
        answer = self.post(
            "query_token",
            self.sealed({"OperatorID": self.operator_id, "OperatorSecret": self.operator_secret}),
        )
        if answer.ret == 0 and isinstance(answer.reply, dict):
            self.token = answer.reply.get("AccessToken")
        return answer

    def query(self, interface: str, data: Any) -> QueryAnswer:
        """A sealed query with the current token (fetched first if there is none)."""
        if self.token is None:
            self.fetch_token()
        return self.post(interface, self.sealed(data), self.token)
