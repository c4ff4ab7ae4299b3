"""Every secret value a gateway holds, and text with each of them replaced by ``***``.

The diagnostics archive passes every file it contains through :class:`Redactor`, so a secret
cannot leave the gateway in it whatever part of the archive would have carried it (a config
comment, a log line, an error message).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from agent.config.errors import ConfigError
from agent.config.schema import Config
from agent.config.secrets import load_secrets, secrets_path
from agent.config.toml_input import MAX_TOML_BYTES, parse_toml

MASK: Final = "***"
MIN_SECRET_LEN: Final = 4
"""Shorter values (``1``, ``on``) are no secret and would mask ordinary text."""
_SECRET_KEY: Final = re.compile(
    r"^(\s*[\w.-]*(?:password|secret|token|passphrase)[\w.-]*\s*=\s*).*$", re.IGNORECASE | re.M
)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def secret_values(config: Config) -> set[str]:
    """Every value of the secrets file (read directly, even when the loader refuses it) and
    of the loaded secrets."""
    found: set[str] = set()
    path, _ = secrets_path(config)
    with contextlib.suppress(OSError, ConfigError):
        found |= set(_strings(parse_toml(Path(path).read_bytes()[: MAX_TOML_BYTES + 1], "")))
    with contextlib.suppress(ConfigError):
        found |= set(load_secrets(config).values())
    return {value for value in found if len(value) >= MIN_SECRET_LEN}


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first: a secret containing another is masked whole
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _SECRET_KEY.sub(lambda m: f'{m[1]}"{MASK}"', text)

    def data(self, raw: bytes) -> bytes:
        return self.text(raw.decode("utf-8", errors="replace")).encode("utf-8")
