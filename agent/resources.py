"""Files shipped with evgw (``config/`` in a source tree, ``agent.resources`` when installed)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_SOURCE_CONFIG = Path(__file__).resolve().parent.parent / "config"


def read_resource(name: str) -> str:
    """The text of ``config/<name>`` (e.g. ``evgw.example.toml``)."""
    source = _SOURCE_CONFIG / name
    if source.is_file():
        return source.read_text("utf-8")
    return resources.files("agent.resources").joinpath(name).read_text("utf-8")
