"""T/CEC 102 envelope codec, sans-I/O: seal and open requests and responses.

Data is AES-128-CBC with PKCS#7 padding under ``DataSecret``/``DataSecretIV`` and standard
Base64; ``Sig`` is HMAC-MD5 under ``SigSecret`` in uppercase hex over
``OperatorID + Data + TimeStamp + Seq`` (request) or ``str(Ret) + Msg + Data`` (response)
(``shared/spec/tcec102.md`` §3–§6). Nothing here reads a clock or a socket: timestamps and
sequence numbers are arguments, so the same code serves the client, the test receiver and
``evgw cec seal|open``.

Every failure of :func:`open_request` / :func:`open_response` raises :class:`CecCodecError`
whose ``problem`` says which step failed and whose ``ret`` is the ``Ret`` a receiver answers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.uplink.cec import safejson

REQUEST_MEMBERS: Final = ("OperatorID", "Data", "TimeStamp", "Seq", "Sig")
RESPONSE_MEMBERS: Final = ("Ret", "Msg", "Data", "Sig")
CHINA_TZ: Final = _dt.timezone(_dt.timedelta(hours=8), "CST")
RECORD_ID_HEADER: Final = "X-Evgw-Record-Id"
"""HTTP header carrying the ledger record id of a push, so a receiver can dedupe on it
(T/CEC status objects have no time stamp, so no business key identifies them)."""
_WHITESPACE: Final = str.maketrans("", "", "\r\n \t")


class CecCodecError(ValueError):
    """An envelope that cannot be opened.

    ``problem`` is one of ``envelope``, ``sig``, ``base64``, ``length``, ``padding``,
    ``utf8``, ``json``; ``ret`` is the T/CEC ``Ret`` a receiver answers (4001 for ``sig``,
    4003 otherwise).
    """

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.ret = 4001 if problem == "sig" else 4003


@dataclass(frozen=True, slots=True)
class CecSecrets:
    """The three secrets that protect one direction (spec §7). Each is 16 ASCII characters."""

    data_secret: str
    data_iv: str
    sig_secret: str

    def __post_init__(self) -> None:
        for name in ("data_secret", "data_iv"):
            value = getattr(self, name)
            if len(value.encode("utf-8")) != 16:
                raise ValueError(
                    f"{name} must be exactly 16 bytes (AES-128), got {len(value.encode())}: "
                    "check the secret the platform issued (16 ASCII characters)"
                )
        if not self.sig_secret:
            raise ValueError("sig_secret is empty: set the SigSecret the platform issued")

    def fingerprint(self) -> str:
        """First 8 hex characters of a SHA-256 over the set: safe to log, never the secrets."""
        joined = "\x00".join((self.data_secret, self.data_iv, self.sig_secret)).encode()
        return hashlib.sha256(joined).hexdigest()[:8]


# --- business JSON ------------------------------------------------------------------------

_JSON = msgspec.json.Encoder(decimal_format="number")


def encode_business(obj: Any) -> bytes:
    """Compact JSON, non-ASCII escaped as ``\\uXXXX`` (the most tolerant form, spec §5).

    ``Decimal`` values are written as numbers with their digits kept, so ``Decimal("12.50")``
    is sent as ``12.50``.
    """
    raw = _JSON.encode(obj)
    if raw.isascii():
        return raw
    return _ascii_escape(raw.decode("utf-8")).encode("ascii")


def _ascii_escape(text: str) -> str:
    # Non-ASCII characters only occur inside JSON strings, where \uXXXX is always valid.
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return "".join(out)


def decode_business(plaintext: bytes) -> Any:
    """Parse business JSON; numbers with a fraction become ``Decimal`` so digits survive.

    Depth and number bombs are refused (:mod:`agent.uplink.cec.safejson`), never a crash.
    """
    try:
        return safejson.loads(plaintext)
    except safejson.JsonRefused as exc:
        problem = "utf8" if str(exc).startswith("not UTF-8") else "json"
        raise CecCodecError(problem, f"decrypted Data is {exc}") from None


# --- AES and HMAC -------------------------------------------------------------------------


def _cipher(secrets: CecSecrets) -> Cipher[modes.CBC]:
    return Cipher(
        algorithms.AES(secrets.data_secret.encode("utf-8")),
        modes.CBC(secrets.data_iv.encode("utf-8")),
    )


def encrypt_data(plaintext: bytes, secrets: CecSecrets) -> str:
    """AES-128-CBC + PKCS#7 over the bytes as given, then one-line standard Base64."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = _cipher(secrets).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")


def decrypt_data(data: str, secrets: CecSecrets) -> bytes:
    """Inverse of :func:`encrypt_data`; CR/LF/spaces are ignored (Java line wrapping)."""
    compact = data.translate(_WHITESPACE)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CecCodecError(
            "base64", f"Data is not valid standard Base64 ({exc}); was it copied completely?"
        ) from None
    if not raw or len(raw) % 16:
        raise CecCodecError(
            "length",
            f"Data decodes to {len(raw)} bytes, not a non-zero multiple of 16: it is not "
            "AES-CBC ciphertext (truncated or not encrypted)",
        )
    dec = _cipher(secrets).decryptor()
    padded = dec.update(raw) + dec.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise CecCodecError(
            "padding",
            "bad PKCS#7 padding after decryption: the DataSecret or DataSecretIV is wrong "
            "(check the key-as-IV setting), or Data was altered",
        )
    return padded[:-pad]


def hmac_md5_hex(message: str, sig_secret: str) -> str:
    """HMAC-MD5 of the UTF-8 message as 32 uppercase hex characters."""
    mac = hmac.new(sig_secret.encode("utf-8"), message.encode("utf-8"), hashlib.md5)
    return mac.hexdigest().upper()


def request_sig(operator_id: str, data: str, timestamp: str, seq: str, sig_secret: str) -> str:
    return hmac_md5_hex(operator_id + data + timestamp + seq, sig_secret)


def response_sig(ret: int | str, msg: str, data: str, sig_secret: str) -> str:
    return hmac_md5_hex(f"{ret}{msg}{data}", sig_secret)


def _check_sig(got: str, expected: str, *, accept_lowercase: bool, what: str) -> None:
    candidate = got.upper() if accept_lowercase else got
    if not hmac.compare_digest(candidate.encode("ascii", "replace"), expected.encode("ascii")):
        hint = (
            " (the peer sent lowercase hex; enable the lowercase-Sig setting)"
            if got.upper() == expected
            else ": the SigSecret is wrong, or the envelope was altered"
        )
        raise CecCodecError("sig", f"{what} Sig mismatch: expected {expected}, got {got}{hint}")


# --- time stamps and Seq ------------------------------------------------------------------


def cec_timestamp(epoch_s: float) -> str:
    """``yyyyMMddHHmmss`` in China Standard Time (UTC+8), whatever the OS zone is."""
    return _dt.datetime.fromtimestamp(int(epoch_s), tz=CHINA_TZ).strftime("%Y%m%d%H%M%S")


class SeqExhausted(RuntimeError):
    """All 9999 sequence numbers of the current second are used: wait for the next second."""


class SeqGenerator:
    """``TimeStamp``/``Seq`` pairs: ``Seq`` counts from ``0001`` within each second (spec §9)."""

    def __init__(self) -> None:
        self._stamp = ""
        self._count = 0

    def next(self, epoch_s: float) -> tuple[str, str]:
        stamp = cec_timestamp(epoch_s)
        if stamp != self._stamp:
            self._stamp, self._count = stamp, 0
        if self._count >= 9999:
            raise SeqExhausted(f"Seq 9999 used up within {stamp}")
        self._count += 1
        return stamp, f"{self._count:04d}"


# --- envelopes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedRequest:
    operator_id: str
    timestamp: str
    seq: str
    plaintext: bytes


@dataclass(frozen=True, slots=True)
class OpenedResponse:
    ret: int
    msg: str
    plaintext: bytes | None
    """Decrypted ``Data``, or None when ``Data`` is empty (typical for errors)."""


def seal_request(
    plaintext: bytes, *, operator_id: str, timestamp: str, seq: str, secrets: CecSecrets
) -> dict[str, str]:
    """The request envelope for ``plaintext`` (bytes used exactly as given)."""
    data = encrypt_data(plaintext, secrets)
    return {
        "OperatorID": operator_id,
        "Data": data,
        "TimeStamp": timestamp,
        "Seq": seq,
        "Sig": request_sig(operator_id, data, timestamp, seq, secrets.sig_secret),
    }


def seal_response(
    ret: int, msg: str, plaintext: bytes | None, secrets: CecSecrets
) -> dict[str, Any]:
    """The response envelope; ``plaintext`` None gives ``Data ""``."""
    data = "" if plaintext is None else encrypt_data(plaintext, secrets)
    return {
        "Ret": ret,
        "Msg": msg,
        "Data": data,
        "Sig": response_sig(ret, msg, data, secrets.sig_secret),
    }


def envelope_bytes(envelope: Mapping[str, Any]) -> bytes:
    """Compact JSON of an envelope (member values are ASCII: Base64, digits, hex)."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def parse_envelope(body: bytes) -> dict[str, Any]:
    """Parse an envelope's JSON text; anything but a JSON object is an ``envelope`` error."""
    try:
        obj = safejson.loads(body)
    except safejson.JsonRefused as exc:
        raise CecCodecError("envelope", f"envelope is {exc}") from None
    if not isinstance(obj, dict):
        raise CecCodecError("envelope", f"envelope is a JSON {type(obj).__name__}, not an object")
    return obj


def open_request(
    envelope: Mapping[str, Any], secrets: CecSecrets, *, accept_lowercase_sig: bool = True
) -> OpenedRequest:
    """Check and decrypt a request envelope (five string members, Sig, then Data)."""
    for name in REQUEST_MEMBERS:
        value = envelope.get(name)
        if not isinstance(value, str) or not value:
            state = "missing" if value is None else f"not a non-empty string ({value!r})"
            raise CecCodecError("envelope", f"request member {name} is {state}")
    values = {name: envelope[name] for name in REQUEST_MEMBERS}
    expected = request_sig(
        values["OperatorID"], values["Data"], values["TimeStamp"], values["Seq"], secrets.sig_secret
    )
    _check_sig(values["Sig"], expected, accept_lowercase=accept_lowercase_sig, what="request")
    plaintext = decrypt_data(values["Data"], secrets)
    return OpenedRequest(values["OperatorID"], values["TimeStamp"], values["Seq"], plaintext)


def open_response(
    envelope: Mapping[str, Any],
    secrets: CecSecrets,
    *,
    accept_lowercase_sig: bool = True,
    verify_sig: bool = True,
) -> OpenedResponse:
    """Check and decrypt a response envelope.

    ``Ret`` may be a number or a numeric string; a missing/null ``Msg`` counts as ``""``.
    ``verify_sig=False`` is the per-peer switch for platforms known to sign responses oddly.
    """
    ret_value = envelope.get("Ret")
    if isinstance(ret_value, bool) or not isinstance(ret_value, int | str):
        raise CecCodecError(
            "envelope", f"response member Ret is missing or not a number ({ret_value!r})"
        )
    ret_text = str(ret_value)
    try:
        ret = int(ret_text)
    except ValueError:
        raise CecCodecError(
            "envelope", f"response member Ret is not an integer ({ret_value!r})"
        ) from None
    msg = envelope.get("Msg")
    msg = "" if msg is None else msg
    data = envelope.get("Data")
    data = "" if data is None else data
    sig = envelope.get("Sig")
    if not isinstance(msg, str) or not isinstance(data, str) or not isinstance(sig, str) or not sig:
        raise CecCodecError(
            "envelope", "response members Msg, Data must be strings and Sig a non-empty string"
        )
    if verify_sig:
        expected = response_sig(ret_text, msg, data, secrets.sig_secret)
        _check_sig(sig, expected, accept_lowercase=accept_lowercase_sig, what="response")
    plaintext = decrypt_data(data, secrets) if data else None
    return OpenedResponse(ret, msg, plaintext)


def open_envelope(
    envelope: Mapping[str, Any], secrets: CecSecrets, *, accept_lowercase_sig: bool = True
) -> OpenedRequest | OpenedResponse:
    """Open either form: an envelope with ``Ret`` is a response, otherwise a request."""
    if "Ret" in envelope:
        return open_response(envelope, secrets, accept_lowercase_sig=accept_lowercase_sig)
    return open_request(envelope, secrets, accept_lowercase_sig=accept_lowercase_sig)
