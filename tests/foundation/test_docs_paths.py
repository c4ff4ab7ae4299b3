"""Every path docs/ARCHITECTURE.md names exists (a path written relative to its folder, as
`load.py` under `config/`, counts when some file of the repository ends with it)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO

PATH = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*(?:/|\.py|\.md|\.toml|\.sh))`")


def test_every_path_in_the_architecture_exists() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    known = set(listed) | {f"{p.rsplit('/', 1)[0]}/" for p in listed if "/" in p}
    known |= {"/".join(p.split("/")[:i]) + "/" for p in listed for i in range(1, p.count("/") + 1)}
    named = set(PATH.findall(text))
    assert len(named) > 30  # the layout, the recipes and the module notes
    missing = sorted(
        n
        for n in named
        if not any(k == n or k.endswith("/" + n) for k in known)
        and n != "secrets.toml"  # the file on a station, not in the repository
        and not n.startswith("../")  # ../shared, beside the repository
    )
    assert missing == []
