"""OCMF records of charging orders, signed by the gateway (``shared/spec/meters.md`` §11.5).

None of the Chinese meters signs its readings, so the gateway is the signing component: it
puts the begin and end readings of the connector's meter in one OCMF payload, signs the exact
payload bytes with its key (ECDSA P-256 / SHA-256, DER, hex) and assembles
``OCMF|<payload>|<signature>``. That gives tamper evidence, not legal-metrology status.

The key is injected: any object with ``sign(bytes) -> DER bytes`` and ``public_der_hex``
(``agent.ledger.GatewayKey``). The pagination counter ``PG = T<n>`` must continue across
restarts: the service passes the last counter found in the ledger (:func:`pagination_of`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Protocol

import msgspec

SIGNATURE_ALGORITHM = "ECDSA-secp256r1-SHA256"
#: OBIS code of the total import register
IMPORT_OBIS = "01-00:01.08.00*FF"

_json = msgspec.json.Encoder()


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...

    @property
    def public_der_hex(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OcmfReading:
    ts: float
    energy_kwh: float
    reason: str
    """``TX``: B begin, E end, L local stop, R remote stop, A aborted by error, P power failure."""
    status: str = "G"
    """``ST`` meter status letter: G ok, T timeout …"""


def ocmf_time(ts: float, sync: str) -> str:
    """``YYYY-MM-DDThh:mm:ss,fff+0000 S`` (UTC, comma before milliseconds)."""
    ms = round(ts * 1000)
    sec, milli = divmod(ms, 1000)
    stamp = _dt.datetime.fromtimestamp(sec, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp},{milli:03d}+0000 {sync}"


def _text(value: str) -> str:
    """A JSON string with any ``|`` replaced (the section separator may not appear inside)."""
    return _json.encode(value.replace("|", "/")).decode()


def pagination_of(ocmf: str) -> int | None:
    """The ``PG`` counter of an OCMF string (``T17`` → 17), or None if it has none."""
    parts = ocmf.split("|")
    if len(parts) != 3:
        return None
    try:
        pg = msgspec.json.decode(parts[1]).get("PG", "")
    except (msgspec.DecodeError, AttributeError):
        return None
    if isinstance(pg, str) and pg[:1] == "T" and pg[1:].isdigit():
        return int(pg[1:])
    return None


class OcmfSigner:
    """Builds and signs one OCMF string per order; keeps the transaction counter."""

    def __init__(
        self,
        key: Signer,
        *,
        gateway_id: str,
        software_version: str,
        last_pagination: int = 0,
        time_sync: str = "U",
    ) -> None:
        self.key = key
        self.gateway_id = gateway_id
        self.software_version = software_version
        self.pagination = last_pagination
        self.time_sync = time_sync
        """``S`` when the service knows the clock is NTP-synchronised, else ``U``."""

    def sign_order(
        self,
        *,
        meter_serial: str,
        meter_model: str,
        connector_id: str,
        session_id: str,
        current_type: str,
        begin: OcmfReading,
        end: OcmfReading,
        tariff_text: str | None = None,
    ) -> str:
        self.pagination += 1
        readings = ",".join(self._reading(r, current_type) for r in (begin, end))
        tariff = "" if tariff_text is None else f',"TT":{_text(tariff_text)}'
        payload = (
            '{"FV":"1.4"'
            f',"GI":{_text("evgw gateway")},"GS":{_text(self.gateway_id)}'
            f',"GV":{_text(self.software_version)},"PG":"T{self.pagination}"'
            f',"MM":{_text(meter_model)},"MS":{_text(meter_serial)}'
            f',"IS":false,"IL":"NONE","IT":"LOCAL","ID":{_text(session_id)}{tariff}'
            f',"CT":"EVSEID","CI":{_text(connector_id)}'
            f',"RD":[{readings}]}}'
        )
        signature = self.key.sign(payload.encode())
        section = f'{{"SA":"{SIGNATURE_ALGORITHM}","SE":"hex","SD":"{signature.hex().upper()}"}}'
        return f"OCMF|{payload}|{section}"

    def _reading(self, r: OcmfReading, current_type: str) -> str:
        return (
            f'{{"TM":"{ocmf_time(r.ts, self.time_sync)}","TX":"{r.reason}"'
            f',"RV":{r.energy_kwh:.3f},"RI":"{IMPORT_OBIS}","RU":"kWh"'
            f',"RT":"{current_type}","EF":"","ST":"{r.status}"}}'
        )
