"""Files shipped with evgw: ``config/`` of the source tree, which the wheel carries as
``agent/resources/`` (in a checkout, ``agent/resources`` is a symlink to ``../config``)."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent / "resources"


def read_resource(name: str) -> str:
    """The text of ``config/<name>`` (e.g. ``evgw.example.toml``)."""
    return (RESOURCES_DIR / name).read_text("utf-8")
