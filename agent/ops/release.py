"""Release artefacts: the evgw wheel and its locked dependency wheels, signed by a release key.

An artefact is an uncompressed tar (``evgw-<version>.tar``) holding ``manifest.json`` and
``wheels/*.whl``, with a detached signature beside it (``evgw-<version>.tar.sig``: Base64 of
an ECDSA P-256 / SHA-256 DER signature over the tar's bytes). The manifest names the version
and the SHA-256 of every wheel. The signature is checked before anything inside the tar is
read; then every wheel's hash, and that the evgw wheel is the version the manifest names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.errors import UserError
from agent.ledger import GatewayKey, PublicKey

MANIFEST: Final = "manifest.json"
FORMAT: Final = 1
MAX_ARTEFACT_BYTES: Final = 512 * 1024 * 1024
_WHEEL: Final = re.compile(r"^wheels/([A-Za-z0-9_.+-]+\.whl)$")
_EVGW_WHEEL: Final = re.compile(r"^evgw-([0-9][0-9A-Za-z.+!_]*)-")
_VERSION: Final = re.compile(r"^[0-9][0-9A-Za-z.+!_]{0,63}$")


class ReleaseError(UserError):
    """An artefact refused: bad signature, damaged, not what its manifest says."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    wheels: dict[str, bytes]
    """File name → content, every hash checked against the manifest."""


def signature_path(artefact: Path) -> Path:
    return artefact.with_name(artefact.name + ".sig")


def pack(wheel_dir: Path, key: GatewayKey, out_dir: Path) -> tuple[Path, str]:
    """Write ``evgw-<version>.tar`` and its ``.sig`` from the wheels in ``wheel_dir``."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    versions = [m[1] for w in wheels if (m := _EVGW_WHEEL.match(w.name))]
    if len(versions) != 1:
        raise UserError(f"{wheel_dir}: expected exactly one evgw-*.whl, found {len(versions)}", 2)
    version = versions[0]
    contents = {w.name: w.read_bytes() for w in wheels}
    manifest = {
        "format": FORMAT,
        "name": "evgw",
        "version": version,
        "wheels": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        for name, data in contents.items():
            _add(tar, f"wheels/{name}", data)
    data = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    artefact = out_dir / f"evgw-{version}.tar"
    artefact.write_bytes(data)
    signature_path(artefact).write_text(base64.b64encode(key.sign(data)).decode() + "\n")
    return artefact, version


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_ARTEFACT_BYTES:
            raise ReleaseError(f"{what} {path} is {size} bytes, more than any release")
        return path.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ReleaseError(f"cannot read {what} {path}: {exc.strerror}") from None


def verify(artefact: Path, release_key: PublicKey, signature: Path | None = None) -> Release:
    """The release in ``artefact`` once its signature and every hash check out."""
    data = _read_bounded(artefact, "artefact")
    sig_file = signature or signature_path(artefact)
    try:
        sig = base64.b64decode(_read_bounded(sig_file, "signature").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseError(f"signature {sig_file} is not Base64") from None
    if not release_key.verify(sig, data):
        raise ReleaseError(
            f"{artefact.name}: bad signature: not signed by the release key "
            f"(key id {release_key.fingerprint[:16]}), or the file was altered or truncated"
        )
    return _unpack(artefact, data)


def _unpack(artefact: Path, data: bytes) -> Release:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                if not member.isfile() or not (
                    member.name == MANIFEST or _WHEEL.match(member.name)
                ):
                    raise ReleaseError(f"{artefact.name}: unexpected member {member.name[:80]!r}")
                handle = tar.extractfile(member)
                files[member.name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseError(f"{artefact.name}: not a release archive ({exc})") from None
    manifest = _manifest(artefact, files.pop(MANIFEST, None))
    wheels = {name.removeprefix("wheels/"): content for name, content in files.items()}
    expected: dict[str, str] = manifest["wheels"]
    if set(wheels) != set(expected):
        raise ReleaseError(f"{artefact.name}: the wheels differ from the manifest's list")
    for name, content in wheels.items():
        if hashlib.sha256(content).hexdigest() != expected[name]:
            raise ReleaseError(f"{artefact.name}: {name} does not match its SHA-256")
    evgw = [m[1] for name in wheels if (m := _EVGW_WHEEL.match(name))]
    if evgw != [manifest["version"]]:
        raise ReleaseError(f"{artefact.name}: no evgw wheel of version {manifest['version']}")
    return Release(version=manifest["version"], wheels=wheels)


def _manifest(artefact: Path, raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise ReleaseError(f"{artefact.name}: no {MANIFEST}")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ReleaseError(f"{artefact.name}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ReleaseError(f"{artefact.name}: {MANIFEST} is not a format {FORMAT} manifest")
    version, wheels = manifest.get("version"), manifest.get("wheels")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ReleaseError(f"{artefact.name}: bad version {str(version)[:40]!r} in {MANIFEST}")
    if not isinstance(wheels, dict) or not all(isinstance(v, str) for v in wheels.values()):
        raise ReleaseError(f"{artefact.name}: {MANIFEST} has no wheel list")
    return manifest
