"""Who may run which downlink command, and how often.

Each platform key has a role (``[uplinks.mqtt] command_keys = {read = …, operate = …,
admin = …}``; the older single ``command_pubkey_file`` is the ``admin`` key). A role may run
its own commands and those of the roles below it: ``read`` asks (status, queries, the
config), ``operate`` acts without changing the configuration (resend, diagnostics),
``admin`` may do everything (software updates, tariff changes). The
billing system's ``billed`` figures are ``operate``. Every command has a rate limit per minute,
counted only for commands whose signature checked out, so a flood of forgeries cannot lock
the platform out.
"""

from __future__ import annotations

import collections
from typing import Final

from agent.ledger import PublicKey

ROLES: Final = ("read", "operate", "admin")
COMMAND_ROLE: Final[dict[str, str]] = {
    "status": "read",
    "bms_query": "read",
    "query": "read",
    "config.get": "read",
    "resend": "operate",
    "diag": "operate",
    "billed": "operate",
    "tariff": "admin",
    "update": "admin",
    "config.apply": "admin",
}
RATE_PER_MINUTE: Final[dict[str, int]] = {
    "status": 30,
    "bms_query": 30,
    "query": 60,
    "config.get": 10,
    "resend": 5,
    "diag": 30,
    "billed": 120,
    "tariff": 6,
    "update": 6,
    "config.apply": 6,
}
"""A diagnostics archive is asked for part by part, hence the higher ``diag`` limit; an
operator's billing system reports every order (``billed``)."""


class Refused(Exception):
    """A command that is not run; the message is the reply's ``error``."""


def signer_role(keys: dict[str, PublicKey], signature: bytes, data: bytes) -> str | None:
    """The highest role whose key made ``signature`` over ``data``."""
    for role in reversed(ROLES):
        key = keys.get(role)
        if key is not None and key.verify(signature, data):
            return role
    return None


def check_role(name: str, role: str) -> None:
    needed = COMMAND_ROLE[name]
    if ROLES.index(role) < ROLES.index(needed):
        raise Refused(f"{name} needs the {needed} role; this command is signed by the {role} key")


class RateLimits:
    """At most :data:`RATE_PER_MINUTE` accepted commands of each name in any 60 s."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def take(self, name: str, now: float) -> None:
        seen = self._seen[name]
        while seen and now - seen[0] >= self.window_s:
            seen.popleft()
        limit = RATE_PER_MINUTE[name]
        if len(seen) >= limit:
            raise Refused(f"rate limit: at most {limit} {name} commands a minute; try again later")
        seen.append(now)
