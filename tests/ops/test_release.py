"""Release artefacts: what `evgw update apply` refuses before installing anything."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agent.ledger import GatewayKey
from agent.ops.release import ReleaseError, pack, signature_path, verify

KEY = GatewayKey.generate()


def wheels(folder: Path, version: str = "1.2.3") -> Path:
    folder.mkdir()
    (folder / f"evgw-{version}-py3-none-any.whl").write_bytes(b"evgw wheel " * 100)
    (folder / "msgspec-0.20.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"dependency " * 100)
    return folder


def signed_tar(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    signature_path(path).write_text(base64.b64encode(KEY.sign(buffer.getvalue())).decode())
    return path


def manifest(version: str, hashes: dict[str, str]) -> bytes:
    return json.dumps({"format": 1, "name": "evgw", "version": version, "wheels": hashes}).encode()


def test_pack_then_verify(tmp_path: Path) -> None:
    artefact, version = pack(wheels(tmp_path / "w"), KEY, tmp_path / "dist")
    assert artefact.name == "evgw-1.2.3.tar" and version == "1.2.3"
    release = verify(artefact, KEY.public)
    assert release.version == "1.2.3" and len(release.wheels) == 2


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            {
                "manifest.json": manifest("1.0", {"evgw-1.0-py3-none-any.whl": "0" * 64}),
                "wheels/evgw-1.0-py3-none-any.whl": b"x",
            },
            "does not match its SHA-256",
        ),
        (
            {"manifest.json": manifest("1.0", {}), "wheels/../../etc/passwd.whl": b"x"},
            "unexpected member",
        ),
        (
            {
                "manifest.json": manifest(
                    "2.0", {"evgw-1.0-py3-none-any.whl": hashlib.sha256(b"x").hexdigest()}
                ),
                "wheels/evgw-1.0-py3-none-any.whl": b"x",
            },
            "no evgw wheel of version 2.0",
        ),
        ({"manifest.json": b"{not json"}, "is not JSON"),
        ({"wheels/evgw-1.0-py3-none-any.whl": b"x"}, "no manifest.json"),
        ({"manifest.json": manifest("1.0; rm -rf /", {})}, "bad version"),
    ],
)
def test_signed_but_wrong_artefacts_are_refused(
    tmp_path: Path, members: dict, expected: str
) -> None:
    artefact = signed_tar(tmp_path / "evgw-x.tar", members)
    with pytest.raises(ReleaseError) as info:
        verify(artefact, KEY.public)
    assert expected in str(info.value)


def test_signature_problems(tmp_path: Path) -> None:
    artefact, _ = pack(wheels(tmp_path / "w"), KEY, tmp_path / "dist")
    with pytest.raises(ReleaseError, match="bad signature"):
        verify(artefact, GatewayKey.generate().public)
    signature_path(artefact).write_text("not base64!!")
    with pytest.raises(ReleaseError, match="is not Base64"):
        verify(artefact, KEY.public)
    signature_path(artefact).unlink()
    with pytest.raises(ReleaseError, match="does not exist"):
        verify(artefact, KEY.public)


def test_pack_cli_bad_input(tmp_path: Path) -> None:
    evgw = [sys.executable, "-m", "agent.cli", "update", "pack"]
    absent = subprocess.run(
        [*evgw, str(tmp_path), "--key", str(tmp_path / "k")], capture_output=True, text=True
    )
    assert (
        absent.returncode == 2
        and "release key" in absent.stderr
        and "Traceback" not in absent.stderr
    )
    KEY.save(tmp_path / "k")
    empty = subprocess.run(
        [*evgw, str(tmp_path), "--key", str(tmp_path / "k")], capture_output=True, text=True
    )
    assert empty.returncode == 2 and "expected exactly one evgw-*.whl, found 0" in empty.stderr
