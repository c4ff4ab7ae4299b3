"""Verify an exported ledger (JSON Lines, see :mod:`agent.ledger.export`) with nothing but
the public key(s) of the gateway.

The verifier recomputes every record's hash, follows the ``prev`` links, checks every
checkpoint signature against the trusted keys (following ``key_rotated`` announcements signed
by a trusted key), and names each problem with its ``seq``:

``edited``            a record's content does not match its hash (body or envelope changed)
``broken_link``       a record's ``prev`` is not the hash of the record before it
``missing``           records are absent from the chain
``reordered``         a record appears after a later one
``duplicate``         a record appears twice
``bad_signature``     a checkpoint's signature does not verify
``unknown_key``       a checkpoint is signed by a key that is not trusted
``checkpoint_mismatch`` a checkpoint signs a hash the record at its seq does not have
``undeclared_drop``   a dropped-record stub not covered by a ``retention_dropped`` event
``wrong_gateway``     a record id or checkpoint names another gateway
``wrong_epoch``       a record id names another chain epoch than the records around it
``damaged``           a record the export could not read, or whose content fails its hash
``malformed``         a line that is not a record, stub, checkpoint or damage note
``unsigned_tail``     records after the last valid checkpoint (no signature vouches for them)

Seqs a ``ledger_recovered`` or ``records_lost`` event declares lost are not problems: they are
listed in :attr:`Report.declared`, with their kinds, as are rows the ledger quarantined
(:attr:`Report.quarantined`). A record id names its chain epoch
(:func:`agent.ledger.chain.record_id`); the epoch changes only at a ``ledger_recovered``
event, whose ``prev`` must be the hash of the record before it.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from agent.ledger.chain import (
    Checkpoint,
    checkpoint_signature_ok,
    parse_record_id,
    recompute_hash,
    rotation_payload,
)
from agent.ledger.keys import PublicKey

GENESIS_HEX: Final = "0" * 64
LOSS_EVENTS: Final = ("ledger_recovered", "records_lost")
DROP_EVENTS: Final = ("retention_dropped", "buffer_dropped", "records_lost")
_RECENT: Final = 100_000
_MAX_PROBLEMS: Final = 1000
_DECODER = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    what: str
    message: str
    line: int

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else f"line {self.line}"
        return f"{where}: {self.what}: {self.message} (line {self.line})"


@dataclass(slots=True)
class Report:
    records: int = 0
    stubs_dropped: int = 0
    stubs_omitted: int = 0
    checkpoints_ok: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    signed_upto: int = 0
    keys_followed: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    """Seq ranges declared lost by an event, with their kinds."""
    quarantined: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problems_truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq if p.seq is not None else -1, p.line))


def _is_hex64(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


class Verifier:
    """Feed export lines in order with :meth:`feed`, then call :meth:`finish`."""

    def __init__(
        self,
        trusted: Sequence[PublicKey],
        *,
        after: tuple[int, str] | None = None,
        allow_unsigned_tail: bool = False,
    ) -> None:
        """``after=(seq, hash)`` continues a chain already verified up to ``seq``."""
        self._keys = {k.fingerprint: k for k in trusted}
        self._allow_unsigned = allow_unsigned_tail
        self._report = Report()
        self._gateway: str | None = None
        self._last: tuple[int, str] | None = after
        self._missing: list[list[int]] = []
        self._recent: dict[int, str] = {}
        self._recent_order: deque[int] = deque()
        self._declared: list[tuple[str, int, int]] = []
        self._lost: list[tuple[int, int, int, str]] = []
        """``(from_seq, to_seq, event seq, kinds)`` declared lost."""
        self._damaged: set[int] = set()
        self._epoch: int | None = None
        self._dropped: list[tuple[int, str, int]] = []
        self._line = 0
        self._continues = after is not None
        if after is not None:
            self._remember(*after)
            self._report.signed_upto = after[0]

    # -- input -------------------------------------------------------------------------------

    def feed(self, raw: bytes | str) -> None:
        self._line += 1
        text = raw.strip()
        if not text:
            return
        try:
            obj = _DECODER.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self._problem(None, "malformed", f"not JSON ({exc})")
            return
        if not isinstance(obj, dict):
            self._problem(None, "malformed", "not a JSON object")
        elif set(obj) == {"checkpoint"}:
            self._checkpoint(obj["checkpoint"])
        elif set(obj) == {"stub"}:
            self._stub(obj["stub"])
        elif set(obj) == {"damaged"}:
            self._damage(obj["damaged"])
        elif set(obj) == {"quarantined"}:
            self._quarantined(obj["quarantined"])
        else:
            self._record(obj)

    def _problem(self, seq: int | None, what: str, message: str) -> None:
        if len(self._report.problems) >= _MAX_PROBLEMS:
            self._report.problems_truncated = True
            return
        self._report.problems.append(Problem(seq, what, message, self._line))

    def _remember(self, seq: int, digest: str) -> None:
        self._recent[seq] = digest
        self._recent_order.append(seq)
        if len(self._recent_order) > _RECENT:
            self._recent.pop(self._recent_order.popleft(), None)

    # -- records and stubs -------------------------------------------------------------------

    def _record(self, obj: dict[str, Any]) -> None:
        seq = obj.get("seq")
        if (
            not isinstance(seq, int)
            or not _is_hex64(obj.get("prev"))
            or not _is_hex64(obj.get("hash"))
        ):
            self._problem(
                seq if isinstance(seq, int) else None,
                "malformed",
                "record without an integer seq and hex prev/hash",
            )
            return
        self._report.records += 1
        body = obj.get("body") if isinstance(obj.get("body"), dict) else {}
        event = body.get("event") if obj.get("kind") == "event" else None
        self._check_id(seq, obj.get("id"), body if event == "ledger_recovered" else None)
        try:
            content_ok = recompute_hash(obj) == obj["hash"]
        except (TypeError, ValueError, msgspec.EncodeError):
            content_ok = False
        if not content_ok:
            self._problem(
                seq,
                "edited",
                "the record's content does not match its hash (body or envelope was edited)",
            )
        lost = _ranges(body.get("lost"), body) if content_ok and event in LOSS_EVENTS else []
        self._place(seq, obj["prev"], obj["hash"], lost)
        if content_ok and event == "key_rotated":
            self._follow_rotation(seq, body)
        if content_ok and event in DROP_EVENTS:
            for item in body.get("dropped") or []:
                if isinstance(item, dict) and _ints(item, "from_seq", "to_seq"):
                    self._declared.append((str(item.get("kind")), item["from_seq"], item["to_seq"]))
        for low, high, kinds in lost:
            self._lost.append((low, high, seq, kinds))

    def _check_id(self, seq: int, record_id: object, recovered: dict[str, Any] | None) -> None:
        parsed = parse_record_id(record_id)
        if parsed is None or parsed[2] != seq:
            self._problem(seq, "wrong_gateway", f"id {record_id!r} is not a record id for {seq}")
            return
        gateway, epoch, _seq = parsed
        if self._gateway is None:
            self._gateway = gateway
        if gateway != self._gateway:
            self._problem(seq, "wrong_gateway", f"id {record_id!r} names another gateway")
        new_epoch = recovered.get("epoch") if recovered is not None else None
        if isinstance(new_epoch, int) and new_epoch == epoch and (self._epoch or 0) < epoch:
            self._epoch = epoch  # a recovery starts this epoch
        elif self._epoch is None:
            self._epoch = epoch
        elif epoch != self._epoch:
            self._problem(
                seq,
                "wrong_epoch",
                f"id {record_id!r} is in epoch {epoch}, the chain is in epoch {self._epoch} "
                "(an epoch changes only at a ledger_recovered event)",
            )

    def _stub(self, stub: Any) -> None:
        if not (
            isinstance(stub, dict)
            and isinstance(stub.get("seq"), int)
            and _is_hex64(stub.get("prev"))
            and _is_hex64(stub.get("hash"))
        ):
            self._problem(None, "malformed", "stub without an integer seq and hex prev/hash")
            return
        seq = stub["seq"]
        if stub.get("reason") == "dropped":
            self._report.stubs_dropped += 1
            self._dropped.append((seq, str(stub.get("kind")), self._line))
        else:
            self._report.stubs_omitted += 1
        self._place(seq, stub["prev"], stub["hash"], None)

    def _damage(self, note: Any) -> None:
        """A row the export could not read (a range), or whose content fails its hash."""
        if not isinstance(note, dict) or not _ints(note, "from_seq", "to_seq"):
            self._problem(None, "malformed", "damage note without from_seq/to_seq")
            return
        low, high = note["from_seq"], note["to_seq"]
        what = f"{note.get('kind')} record" if note.get("kind") else "record"
        span = f"{what} {low}" if low == high else f"records {low}..{high}"
        self._problem(low, "damaged", f"{span} in the ledger: {note.get('reason')}")
        if high - low < 1_000_000:
            self._damaged.update(range(low, high + 1))
        if low == high and _is_hex64(note.get("prev")) and _is_hex64(note.get("hash")):
            self._place(low, note["prev"], note["hash"], [])

    def _quarantined(self, note: Any) -> None:
        if not isinstance(note, dict):
            self._problem(None, "malformed", "quarantine note is not an object")
            return
        where = f" at seq {note['seq']}" if isinstance(note.get("seq"), int) else ""
        self._report.quarantined.append(
            f"{note.get('what')}{where} set aside by the ledger: {note.get('reason')}"
        )

    def _place(self, seq: int, prev: str, digest: str, lost: list[tuple[int, int, str]]) -> None:
        if self._last is None:
            if seq == 1 and prev != GENESIS_HEX:
                self._problem(seq, "broken_link", "the first record's prev is not 64 zeros")
            self._advance(seq, digest)
            return
        last_seq, last_hash = self._last
        expected = last_seq + 1
        if seq == expected:
            if prev != last_hash:
                self._problem(
                    seq,
                    "broken_link",
                    f"prev is not the hash of record {last_seq} (record {last_seq} was "
                    "altered and re-hashed, or this record was replaced)",
                )
            self._advance(seq, digest)
        elif seq > expected:
            self._missing.append([expected, seq - 1])
            if any(a <= expected and seq - 1 <= b for a, b, _k in lost) and prev != last_hash:
                self._problem(
                    seq,
                    "broken_link",
                    f"the event declaring records {expected}..{seq - 1} lost does not follow "
                    f"record {last_seq} (its prev is not that record's hash)",
                )
            self._advance(seq, digest)
        else:
            for rng in self._missing:
                if rng[0] <= seq <= rng[1]:
                    self._problem(seq, "reordered", f"record {seq} appears after record {last_seq}")
                    self._split_missing(rng, seq)
                    return
            same = self._recent.get(seq) == digest
            self._problem(
                seq,
                "duplicate",
                f"record {seq} appears again"
                + (" (same content)" if same else " with different content"),
            )

    def _split_missing(self, rng: list[int], seq: int) -> None:
        self._missing.remove(rng)
        if rng[0] < seq:
            self._missing.append([rng[0], seq - 1])
        if seq < rng[1]:
            self._missing.append([seq + 1, rng[1]])

    def _advance(self, seq: int, digest: str) -> None:
        if self._report.first_seq is None:
            self._report.first_seq = seq
        self._last = (seq, digest)
        self._report.last_seq = seq
        self._remember(seq, digest)

    def _follow_rotation(self, seq: int, body: dict[str, Any]) -> None:
        old = self._keys.get(str(body.get("old_key_id")))
        if old is None:
            return  # announced by a key we do not trust: the new key stays unknown
        try:
            new = PublicKey.from_der(bytes.fromhex(str(body.get("new_public_der_hex"))))
            signature = base64.b64decode(str(body.get("announcement_sig")), validate=True)
        except (ValueError, binascii.Error):
            self._problem(seq, "bad_signature", "key rotation announcement is malformed")
            return
        if new.fingerprint != body.get("new_key_id"):
            self._problem(seq, "bad_signature", "announced key id does not match the key")
            return
        payload = rotation_payload(self._gateway or "", old.fingerprint, new)
        if not old.verify(signature, payload):
            self._problem(seq, "bad_signature", "key rotation announcement signature is bad")
            return
        self._keys[new.fingerprint] = new
        self._report.keys_followed.append(new.fingerprint)

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint(self, raw: Any) -> None:
        try:
            cp = msgspec.convert(raw, Checkpoint)
        except msgspec.ValidationError as exc:
            self._problem(None, "malformed", f"checkpoint: {exc}")
            return
        if self._gateway is not None and cp.gateway_id != self._gateway:
            self._problem(
                cp.seq,
                "wrong_gateway",
                f"checkpoint is for gateway {cp.gateway_id!r}, not {self._gateway!r}",
            )
            return
        key = self._keys.get(cp.key_id)
        if key is None:
            self._problem(
                cp.seq,
                "unknown_key",
                f"checkpoint is signed by key {cp.key_id[:16]}…, which is neither given with "
                "--pubkey nor announced by a trusted key",
            )
            return
        if not checkpoint_signature_ok(cp, key):
            self._problem(cp.seq, "bad_signature", "checkpoint signature does not verify")
            return
        digest = self._recent.get(cp.seq)
        if digest is None:
            self._problem(
                cp.seq, "checkpoint_mismatch", "checkpoint signs a record not in the file"
            )
            return
        if digest != cp.hash:
            self._problem(
                cp.seq,
                "checkpoint_mismatch",
                "the signed hash differs from the record's hash (altered after signing)",
            )
            return
        self._report.checkpoints_ok += 1
        self._report.signed_upto = max(self._report.signed_upto, cp.seq)

    # -- the end -----------------------------------------------------------------------------

    def finish(self) -> Report:
        report = self._report
        for low, high, event_seq, kinds in sorted(self._lost):
            span = f"seq {low}" if low == high else f"seq {low}..{high}"
            report.declared.append(f"{span} declared lost by the event at seq {event_seq}{kinds}")
        for low, high in self._undeclared_missing():
            span = f"record {low} is" if low == high else f"records {low}..{high} are"
            self._problem(low, "missing", f"{span} missing from the chain")
        for seq, kind, line in self._dropped:
            if not any(k == kind and a <= seq <= b for k, a, b in self._declared):
                self._line = line
                self._problem(
                    seq,
                    "undeclared_drop",
                    f"{kind} record is dropped but no retention_dropped event declares it",
                )
        if report.last_seq is None:
            if not self._continues:
                self._problem(None, "malformed", "no records in the file")
        elif report.last_seq > report.signed_upto and not self._allow_unsigned:
            low = max(report.signed_upto + 1, report.first_seq or 1)
            self._problem(
                low,
                "unsigned_tail",
                f"records {low}..{report.last_seq} are not covered by a valid signed checkpoint",
            )
        return report

    def _undeclared_missing(self) -> list[tuple[int, int]]:
        """Missing ranges, less what loss events declare and what damage notes named."""
        covers = sorted((a, b) for a, b, _e, _k in self._lost)
        left: list[tuple[int, int]] = []
        for low, high in self._missing:
            pieces = [(low, high)]
            for a, b in covers:
                pieces = [p for x, y in pieces for p in _cut(x, y, a, b)]
            left += pieces
        return [
            (a, b)
            for a, b in left
            if not (b - a < 1_000_000 and all(s in self._damaged for s in range(a, b + 1)))
        ]


def _cut(low: int, high: int, a: int, b: int) -> list[tuple[int, int]]:
    """``low..high`` without ``a..b``."""
    if b < low or a > high:
        return [(low, high)]
    return [r for r in ((low, a - 1), (b + 1, high)) if r[0] <= r[1]]


def _ints(obj: dict[str, Any], *names: str) -> bool:
    return all(isinstance(obj.get(n), int) and not isinstance(obj.get(n), bool) for n in names)


def _ranges(items: Any, body: dict[str, Any]) -> list[tuple[int, int, str]]:
    """The seq ranges a loss event declares, each with its kinds as text."""
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and _ints(item, "from_seq", "to_seq"):
            kinds = item.get("kinds") if isinstance(item.get("kinds"), dict) else {}
            parts = [f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: str(kv[0]))]
            if isinstance(item.get("unknown_kind"), int) and item["unknown_kind"]:
                parts.append(f"unknown kind {item['unknown_kind']}")
            found.append(
                (item["from_seq"], item["to_seq"], f" ({', '.join(parts)})" if parts else "")
            )
    if not found and _ints(body, "lost_from_seq", "lost_to_seq"):
        found.append((body["lost_from_seq"], body["lost_to_seq"], ""))
    return found


def verify_lines(
    lines: Iterable[bytes | str],
    trusted: Sequence[PublicKey],
    *,
    after: tuple[int, str] | None = None,
    allow_unsigned_tail: bool = False,
) -> Report:
    verifier = Verifier(trusted, after=after, allow_unsigned_tail=allow_unsigned_tail)
    for line in lines:
        verifier.feed(line)
    return verifier.finish()
