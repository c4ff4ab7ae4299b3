"""``evgw check`` for the T/CEC uplink: one ``query_token`` with the configured secrets."""

from __future__ import annotations

import time

from agent.commission.results import CheckResult, fail, ok
from agent.uplink.cec.uplink import CecSettings, CecUplink


def _cec_hint(message: str) -> str:
    if "4001" in message or "sig" in message.lower():
        return (
            "the Sig does not match: sig_secret in secrets.toml differs from the platform's "
            "(evgw cec open shows expected and got)"
        )
    if "4003" in message or "4004" in message:
        return "check operator_id, operator_secret and data_secret/data_iv (iv_equals_key quirk?)"
    if "4002" in message:
        return "the platform rejects the token: check the clock and the operator secret"
    return "cannot reach the platform: base_url, DNS, firewall, TLS (ca_file, client cert)"


async def check_platform(settings: CecSettings) -> list[CheckResult]:
    """Ask the platform for a token with the configured secrets, as the uplink does."""
    uplink = CecUplink(settings, ledger=None)  # type: ignore[arg-type]
    name = "T/CEC platform"
    try:
        async with uplink:
            await uplink.tokens.get()
        token = uplink.tokens.token
        lifetime = f", token valid {token.expires_at - time.time():.0f} s" if token else ""
        return [ok(name, f"query_token at {settings.base_url} accepted{lifetime}")]
    except Exception as exc:
        message = str(exc)
        return [fail(name, f"query_token at {settings.base_url}: {message}", _cec_hint(message))]
