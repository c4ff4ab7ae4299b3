"""Downlink commands of the MQTT uplink: validated, signed by the platform, answered.

A command arrives on ``{prefix}/{station_id}/cmd/<name>`` as JSON::

    {"id": "c-42", "ts": "2026-01-01T10:00:00.000Z", "args": {...}, "sig": "<base64 DER>"}

``sig`` is an ECDSA P-256 / SHA-256 signature by the platform's key (configured as
``command_public_key_pem``) over the canonical JSON of
``{"cmd": <name>, "station_id": …, "id": …, "ts": …, "args": …}``. A command is refused with
an error reply when it is not JSON, unknown, unsigned or signed by another key, older than
``command_max_age_s`` (or that far in the future), a replay of an id already seen, or has bad
arguments. Replies go to ``{prefix}/{station_id}/reply/<name>``::

    {"v": 1, "id": "c-42", "cmd": "status", "ok": true, "error": null, "result": {...}}

Commands: ``status`` (uplink counters, cursor, backlog, checkpoint, and the station as
``evgw status`` shows it: connectors, sessions, alarms, meters, buses), ``bms_query``
(``session_id``: the battery-process records of a charging session, with the checkpoint
covering them), ``query`` (``kind``, ``from_seq``, ``to_seq``, ``from_ts``, ``to_ts``,
``limit``: records of one kind in a seq and time range, a page at a time), ``config.get``
(the running config and its SHA-256), ``resend`` (``from_seq``, ``limit``: publish records
again from a seq, without moving the cursor), ``diag`` (the ``evgw diag`` archive, one
bounded Base64 part per reply: the first call builds it, later calls name its ``archive``
hash and a ``part``; with ``upload_url`` the whole archive is PUT there instead,
:mod:`agent.uplink.mqtt.command_diag`), ``update`` (``url``, ``sha256``, ``sig``: download a
release for the root updater, :mod:`agent.uplink.mqtt.command_update`), ``billed``
(``session_id`` or ``start_charge_seq``, ``billed_kwh``, ``billed_yuan``: what the operator's
billing system charged for a session, compared by the running service with its metered order
and money, docs/BILLING.md), ``tariff`` (``tariff``: a new version of a configured tariff with its
``valid_from``, validated like the file, kept and applied by the running service),
``config.apply`` (``toml``, ``timeout_s``: a complete config the running service applies part
by part, with rollback, :mod:`agent.uplink.mqtt.command_config`).

Who may send which command, and how often: :mod:`agent.uplink.mqtt.command_roles`. Replies
carry ``key_id`` and ``sig``, the gateway key's signature over the canonical JSON of the
reply without ``sig``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from agent.errors import UserError
from agent.ledger import PublicKey
from agent.records.bodies import EventBody, body_to_dict
from agent.records.envelope import Record, StoredRecord, canonical_json, iso_ts, parse_iso_ts
from agent.uplink.base import UplinkStats
from agent.uplink.log_limit import LogLimiter
from agent.uplink.mqtt.command_config import apply_config
from agent.uplink.mqtt.command_context import ServiceContext, ask_service, run_evgw
from agent.uplink.mqtt.command_diag import upload
from agent.uplink.mqtt.command_roles import COMMAND_ROLE, RateLimits, check_role, signer_role
from agent.uplink.mqtt.command_roles import Refused as _Refused
from agent.uplink.mqtt.command_update import fetch
from agent.uplink.mqtt.replay_window import ReplayWindow

if TYPE_CHECKING:
    from agent.ledger import Ledger
    from agent.uplink.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

MAX_RECORDS_PER_COMMAND: Final = 100_000
_JSON = msgspec.json.Encoder()


MAX_COMMAND_ID: Final = 128
"""Command ids are short (UUIDs); a longer one is refused before it is remembered."""


class _Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    ts: str
    sig: str
    args: dict[str, Any] = {}


class _BmsQueryArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    session_id: str
    limit: int = 10_000


class _ResendArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_seq: int
    limit: int = 10_000


class _StatusArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _DiagArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    archive: str | None = None
    """The hash of an archive built by an earlier call; None builds a new one."""
    part: int = 0
    chunk_bytes: int = 65_536
    records: int = 20
    upload_url: str | None = None
    """PUT the whole archive there (HTTPS) instead of answering with a part."""


class _ConfigApplyArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    toml: str
    """A complete evgw.toml (never secrets)."""
    timeout_s: float | None = None
    """1..600; default ``gateway.apply_timeout_s``."""


class _QueryArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str
    from_seq: int = 1
    to_seq: int | None = None
    from_ts: str | None = None
    """Only records at or after this time (ISO 8601, UTC)."""
    to_ts: str | None = None
    limit: int = 100
    """How many records of the kind to scan for this page (the time range may keep fewer)."""


class _ConfigGetArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _UpdateArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    sha256: str
    sig: str
    """The artefact's detached signature (Base64), checked by the root updater."""


Amount = str | int | float
"""A decimal string (``"12.34"``, exact) or a JSON number; checked by the service."""


class _BilledArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    billed_kwh: Amount
    billed_yuan: Amount
    session_id: str | None = None
    start_charge_seq: str | None = None
    """The T/CEC StartChargeSeq of the order (instead of ``session_id``)."""


class _TariffArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tariff: dict[str, Any]
    """A ``[[tariffs]]`` entry (``id``, ``valid_from``, ``periods``), checked by the service."""


DIAG_CHUNK_RANGE: Final = (1024, 262_144)
DIAG_KEEP_S: Final = 600.0
"""How long a built archive stays available for its later parts."""
MAX_QUERY_PAGE: Final = 1000
REFUSAL_EVENT_EVERY_S: Final = 60.0
"""At most one ``mqtt_command_refused`` event per command name in this time."""


ARG_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "status": _StatusArgs,
    "bms_query": _BmsQueryArgs,
    "resend": _ResendArgs,
    "diag": _DiagArgs,
    "query": _QueryArgs,
    "config.get": _ConfigGetArgs,
    "update": _UpdateArgs,
    "config.apply": _ConfigApplyArgs,
    "billed": _BilledArgs,
    "tariff": _TariffArgs,
}
assert set(ARG_TYPES) == set(COMMAND_ROLE), "every command has a role"


class Publisher(Protocol):
    """What the handler needs from the uplink."""

    stats: UplinkStats

    async def publish_records(self, records: list[StoredRecord]) -> Any: ...


@dataclass(frozen=True, slots=True)
class CommandReply:
    topic: str
    payload: bytes


def command_payload(
    station_id: str, name: str, command_id: str, ts: str, args: dict[str, Any]
) -> bytes:
    """The bytes the platform signs for one command."""
    return canonical_json(
        {"cmd": name, "station_id": station_id, "id": command_id, "ts": ts, "args": args}
    )


class CommandHandler:
    def __init__(
        self, settings: MqttSettings, ledger: Ledger, uplink: Publisher, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self._ledger = ledger
        self._uplink = uplink
        self._clock = clock
        self._seen = ReplayWindow(
            settings.command_replay_file, 2 * settings.command_max_age_s, clock()
        )
        self._refusals = LogLimiter(log)
        admin: PublicKey | None = None
        if settings.command_public_key_pem:
            try:
                admin = PublicKey.from_text(
                    settings.command_public_key_pem, "command_public_key_pem"
                )
            except UserError as exc:
                raise ValueError(str(exc)) from None
        self.accepted = 0
        self.refused = 0
        self._diag: tuple[str, bytes, float] | None = None
        self._context = ServiceContext(settings.station_id, admin)
        self._rates = RateLimits()
        self._refusal_events: dict[str, tuple[float, int]] = {}

    async def handle(self, topic: str, payload: bytes) -> CommandReply | None:
        prefix = f"{self.settings.base_topic}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        reply_topic = f"{self.settings.base_topic}/reply/{name.replace('/', '_') or 'unknown'}"
        command_id: str | None = None
        try:
            try:
                command = msgspec.json.decode(payload, type=_Command)
            except msgspec.DecodeError as exc:
                raise _Refused(f"not a valid command message: {exc}") from None
            command_id = command.id
            if name not in ARG_TYPES:
                raise _Refused(f"unknown command {name!r}; known: {', '.join(ARG_TYPES)}")
            self._check_signature(name, command)
            self._check_fresh(command)
            self._rates.take(name, self._clock())
            try:
                args = msgspec.convert(command.args, ARG_TYPES[name])
            except msgspec.ValidationError as exc:
                raise _Refused(f"bad arguments for {name}: {exc}") from None
            result = await self._execute(name, args, command.id)
        except _Refused as exc:
            self.refused += 1
            self._refusals.log(
                logging.WARNING,
                f"refused:{name if name in ARG_TYPES else '?'}",
                "MQTT command %s (id %s) refused: %s",
                name[:64],
                command_id if command_id is None else command_id[:64],
                exc,
            )
            await self._refusal_event(name, command_id, str(exc))
            return self._reply(reply_topic, command_id, name, error=str(exc))
        self.accepted += 1
        log.info("MQTT command %s (id %s) done", name, command_id)
        return self._reply(reply_topic, command_id, name, result=result)

    async def _refusal_event(self, name: str, command_id: str | None, reason: str) -> None:
        """An ``event`` record for a refused command: the first of each command name in a
        minute, with the count of those refused since (a flood makes a few records)."""
        key = name if name in ARG_TYPES else "?"
        now = self._clock()
        last, suppressed = self._refusal_events.get(key, (float("-inf"), 0))
        if now - last < REFUSAL_EVENT_EVERY_S:
            self._refusal_events[key] = (last, suppressed + 1)
            return
        self._refusal_events[key] = (now, 0)
        details = {"command": name[:64], "id": (command_id or "")[:128], "reason": reason[:255]}
        body = EventBody(
            event="mqtt_command_refused",
            message=f"MQTT command {name[:64]} refused: {reason}"[:255],
            details={**details, "refused_since_last_event": suppressed},
        )
        await self._ledger.append(
            Record(
                kind="event",
                ts=iso_ts(now),
                station_id=self.settings.station_id,
                body=body_to_dict(body),
            )
        )

    def _reply(
        self,
        topic: str,
        command_id: str | None,
        name: str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> CommandReply:
        body = {
            "v": 1,
            "id": command_id,
            "cmd": name,
            "ok": error is None,
            "error": error,
            "result": result,
        }
        key = self._context.reply_key()
        if key is not None:
            body = msgspec.to_builtins({**body, "key_id": key.fingerprint})
            body["sig"] = base64.b64encode(key.sign(canonical_json(body))).decode("ascii")
        return CommandReply(topic, _JSON.encode(body))

    def _check_signature(self, name: str, command: _Command) -> None:
        keys = self._context.keys()
        if not keys:
            raise _Refused("commands are disabled: no platform public key is configured")
        try:
            signature = base64.b64decode(command.sig, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("sig is not Base64") from None
        data = command_payload(self.settings.station_id, name, command.id, command.ts, command.args)
        role = signer_role(keys, signature, data)
        if role is None:
            ids = ", ".join(f"{r} {k.fingerprint[:16]}" for r, k in keys.items())
            raise _Refused(f"not signed by the platform's configured key (key ids: {ids})")
        check_role(name, role)

    def _check_fresh(self, command: _Command) -> None:
        now = self._clock()
        try:
            issued = parse_iso_ts(command.ts)
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        max_age = self.settings.command_max_age_s
        if abs(now - issued) > max_age:
            raise _Refused(f"ts {command.ts} is more than {max_age:.0f} s from the gateway clock")
        if len(command.id) > MAX_COMMAND_ID:
            raise _Refused(f"command id longer than {MAX_COMMAND_ID} characters")
        if command.id in self._seen:
            raise _Refused(f"command id {command.id!r} was already used (replay)")
        self._seen.add(command.id, now)

    async def _diag_part(self, args: _DiagArgs) -> dict[str, Any]:
        low, high = DIAG_CHUNK_RANGE
        if not low <= args.chunk_bytes <= high:
            raise _Refused(f"chunk_bytes {args.chunk_bytes} outside {low}..{high}")
        if not 0 <= args.records <= 1000:
            raise _Refused(f"records {args.records} outside 0..1000")
        now = self._clock()
        if self._diag is not None and now - self._diag[2] > DIAG_KEEP_S:
            self._diag = None
        if args.archive is None:
            path = str(self._context.config()[1])
            data = await run_evgw(
                "diag", "--config", path, "--out", "-", "--records", str(args.records)
            )
            self._diag = (hashlib.sha256(data).hexdigest(), data, now)
        elif self._diag is None or self._diag[0] != args.archive:
            raise _Refused(f"no archive {args.archive[:64]!r} (expired?): ask for a new one")
        assert self._diag is not None
        digest, data, _ = self._diag
        if args.upload_url is not None:
            return await upload(args.upload_url, data, digest, self.settings.station_id)
        return _diag_reply(digest, data, args.part, args.chunk_bytes)

    async def _query(self, args: _QueryArgs) -> dict[str, Any]:
        ledger = self._ledger
        if not 1 <= args.limit <= MAX_QUERY_PAGE:
            raise _Refused(f"limit {args.limit} outside 1..{MAX_QUERY_PAGE}")
        high = ledger.last_seq if args.to_seq is None else min(args.to_seq, ledger.last_seq)
        if args.from_seq < 1 or args.from_seq > max(high, 1):
            raise _Refused(f"from_seq {args.from_seq} outside 1..{max(high, 1)}")
        try:
            early = parse_iso_ts(args.from_ts) if args.from_ts else float("-inf")
            late = parse_iso_ts(args.to_ts) if args.to_ts else float("inf")
        except ValueError as exc:
            raise _Refused(f"bad time range: {exc}") from None
        found = await ledger.read_after(args.from_seq - 1, args.limit, kinds=[args.kind])
        scanned = [r for r in found if r.seq <= high and r.kind == args.kind]
        records = [r for r in scanned if early <= parse_iso_ts(r.ts) <= late]
        more = len(found) == args.limit and scanned and scanned[-1].seq < high
        return {
            "kind": args.kind,
            "from_seq": args.from_seq,
            "to_seq": high,
            "count": len(records),
            "records": records,
            "next_from_seq": scanned[-1].seq + 1 if more else None,
            "checkpoint": await ledger.checkpoint(),
        }

    async def _service(self, verb: str, request: dict[str, Any]) -> Any:
        """A request the running service answers (``{"ok": …, "result"|"error": …}``)."""
        reply = await ask_service(self._context, verb, request)
        if reply.get("ok") is not True:
            raise _Refused(str(reply.get("error") or f"the service refused {verb}")[:500])
        return reply.get("result")

    async def _execute(self, name: str, args: msgspec.Struct, command_id: str) -> Any:
        ledger = self._ledger
        if isinstance(args, _BilledArgs | _TariffArgs):
            return await self._service(
                name, {**msgspec.structs.asdict(args), "command_id": command_id}
            )
        if isinstance(args, _StatusArgs):
            uplink = self.settings.uplink_name
            return {
                "uplink": self._uplink.stats.as_dict(),
                "cursor": await ledger.cursor(uplink),
                "backlog": await ledger.backlog(uplink),
                "last_seq": ledger.last_seq,
                "checkpoint": await ledger.checkpoint(),
                **await _station_status(self._context),
            }
        if isinstance(args, _QueryArgs):
            return await self._query(args)
        if isinstance(args, _ConfigGetArgs):
            _config, path = self._context.config()
            raw = path.read_bytes()
            return {
                "path": str(path),
                "sha256": hashlib.sha256(raw).hexdigest(),
                "toml": raw.decode("utf-8", "replace"),
            }
        if isinstance(args, _BmsQueryArgs):
            limit = _bounded(args.limit)
            records = await ledger.find("bms_process", session_id=args.session_id, limit=limit)
            return {
                "session_id": args.session_id,
                "count": len(records),
                "records": records,
                "checkpoint": await ledger.checkpoint(),
            }
        if isinstance(args, _DiagArgs):
            return await self._diag_part(args)
        if isinstance(args, _UpdateArgs):
            state_dir = self._context.config()[0].gateway.state_dir
            return await fetch(args.url, args.sha256, args.sig, state_dir)
        if isinstance(args, _ConfigApplyArgs):
            by = f"mqtt config.apply {command_id}"
            return await apply_config(self._context, args.toml, args.timeout_s, by)
        assert isinstance(args, _ResendArgs)
        if args.from_seq < 1 or args.from_seq > ledger.last_seq:
            raise _Refused(f"from_seq {args.from_seq} outside 1..{ledger.last_seq}")
        records = await ledger.read_after(args.from_seq - 1, _bounded(args.limit))
        if records:
            await self._uplink.publish_records(records)
        return {
            "from_seq": args.from_seq,
            "to_seq": records[-1].seq if records else None,
            "count": len(records),
        }


async def _station_status(context: ServiceContext) -> dict[str, Any]:
    """The station as ``evgw status --json`` shows it, or why it could not be asked."""
    try:
        path = str(context.config()[1])
        snapshot = json.loads(await run_evgw("status", "--json", "--config", path, timeout_s=30))
    except (_Refused, ValueError) as exc:
        return {"station": None, "station_error": str(exc)}
    keys = ("connectors", "station_alarms", "meters", "can_buses", "ledger", "release", "status")
    return {"station": {k: snapshot.get(k) for k in keys}}


def _diag_reply(digest: str, data: bytes, part: int, chunk: int) -> dict[str, Any]:
    parts = max(1, -(-len(data) // chunk))
    if not 0 <= part < parts:
        raise _Refused(f"part {part} outside 0..{parts - 1}")
    piece = data[part * chunk : (part + 1) * chunk]
    return {
        "archive": digest,
        "size": len(data),
        "parts": parts,
        "part": part,
        "chunk_bytes": chunk,
        "data": base64.b64encode(piece).decode("ascii"),
    }


def _bounded(limit: int) -> int:
    if not 1 <= limit <= MAX_RECORDS_PER_COMMAND:
        raise _Refused(f"limit {limit} outside 1..{MAX_RECORDS_PER_COMMAND}")
    return limit
