"""TOML text from a file a person wrote, read so that no input can raise past this module.

Every config-like file (evgw.toml, secrets.toml, a pushed config) goes through
:func:`parse_toml`: a wrong encoding, a syntax error, nesting deeper than any real config,
an integer longer than Python converts, or a file far larger than a config are each reported
as a :class:`ConfigError` naming the file and what is wrong.
"""

from __future__ import annotations

import tomllib
from typing import Any, Final

from agent.config.errors import ConfigError

MAX_TOML_BYTES: Final = 1_048_576
"""No station config comes near 1 MiB; anything larger is a wrong file."""


def parse_toml(raw: bytes | str, source: str) -> dict[str, Any]:
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_TOML_BYTES:
        raise ConfigError(
            source, [f"{len(data)} bytes: larger than any config ({MAX_TOML_BYTES} at most)"]
        )
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            source,
            [
                f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line "
                f"{line}); save the file as UTF-8"
            ],
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    except RecursionError:
        raise ConfigError(source, ["nested too deeply to be a config"]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(source, [f"unreadable value: {exc}"]) from None
