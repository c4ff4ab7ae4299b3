"""The gateway signing key: ECDSA P-256 with SHA-256 (DESIGN §5).

The private key lives in one PEM file (PKCS#8, unencrypted) that only the service user may
read; :meth:`GatewayKey.load` refuses a file that group or others can read. The key id used in
checkpoints is the fingerprint: hex SHA-256 of the DER ``SubjectPublicKeyInfo``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import UserError

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _public_der(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class PublicKey:
    """A verifying key: what anyone who checks the ledger holds."""

    __slots__ = ("_key", "der", "fingerprint")

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"expected a P-256 (secp256r1) key, got {key.curve.name}")
        self._key = key
        self.der = _public_der(key)
        self.fingerprint = hashlib.sha256(self.der).hexdigest()

    @classmethod
    def from_der(cls, der: bytes) -> PublicKey:
        key = serialization.load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("not an elliptic-curve public key")
        return cls(key)

    @classmethod
    def parse(cls, der: object) -> PublicKey | None:
        """The P-256 key in ``der``, or None when it is not one (a damaged ``keys`` row)."""
        if not isinstance(der, bytes):
            return None
        try:
            return cls.from_der(der)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return None

    @classmethod
    def from_text(cls, text: str, source: str) -> PublicKey:
        """Parse a PEM public key (or a PEM private key, or hex DER as OCMF uses)."""
        stripped = text.strip()
        try:
            if "PRIVATE KEY" in stripped:
                private = serialization.load_pem_private_key(stripped.encode(), password=None)
                if not isinstance(private, ec.EllipticCurvePrivateKey):
                    raise ValueError("not an elliptic-curve key")
                return cls(private.public_key())
            if stripped.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(stripped.encode())
                if not isinstance(key, ec.EllipticCurvePublicKey):
                    raise ValueError("not an elliptic-curve public key")
                return cls(key)
            return cls.from_der(bytes.fromhex(stripped))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UserError(
                f"{source}: not a P-256 public key in PEM or hex DER form ({exc}); "
                "get it with `evgw keys show`",
                2,
            ) from exc

    @classmethod
    def from_file(cls, path: Path) -> PublicKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read public key file {path}: {exc}", 2) from exc
        return cls.from_text(text, str(path))

    @property
    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def der_hex(self) -> str:
        """Upper-case hex of the DER public key, the form OCMF verifiers take."""
        return self.der.hex().upper()

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


class GatewayKey:
    """The private signing key of one gateway."""

    __slots__ = ("_private", "public")

    def __init__(self, private: ec.EllipticCurvePrivateKey) -> None:
        self._private = private
        self.public = PublicKey(private.public_key())

    @classmethod
    def generate(cls) -> GatewayKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: Path) -> GatewayKey:
        """Load a key file; refuse one that group or others can read."""
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise UserError(
                f"gateway key {path} does not exist; "
                f"create it with `evgw keys generate --key {path}`"
            ) from exc
        except OSError as exc:
            raise UserError(f"cannot read gateway key {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError(
                f"gateway key {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); a signing key must be readable only by the "
                f"service user. Fix it with: chmod 600 {path}"
            )
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UserError(
                f"gateway key {path} is not an unencrypted PEM private key ({exc}); "
                f"generate a new one with `evgw keys generate --key {path}`"
            ) from exc
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise UserError(f"gateway key {path} is not an ECDSA P-256 key")
        return cls(private)

    def save(
        self, path: Path, *, owner_uid: int | None = None, owner_gid: int | None = None
    ) -> None:
        """Write the key with mode 0600 atomically; never overwrite an existing file."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if owner_uid is not None:
                os.fchown(fd, owner_uid, -1 if owner_gid is None else owner_gid)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise UserError(f"{path} already exists; refusing to overwrite a key") from exc
        finally:
            tmp.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature, DER encoded."""
        return self._private.sign(data, _ECDSA_SHA256)

    @property
    def public_pem(self) -> str:
        return self.public.pem

    @property
    def public_der_hex(self) -> str:
        return self.public.der_hex

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint
