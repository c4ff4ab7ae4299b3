"""Plain-data (JSON-ready) views of decoded traffic and session summaries, and the readable
session digest, used by ``evgw can decode`` and by anyone who wants the same shapes (tests,
tools)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any, TextIO

from drivers.gbt27930.events import SessionSummary, Stat
from drivers.gbt27930.frames import BMS_ADDR, CHARGER_ADDR
from drivers.gbt27930.messages import BRM, Message, active_codes
from drivers.gbt27930.pipeline import Decoded, Pipeline


def _jsonable(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


def to_fields(msg: Message) -> dict[str, Any]:
    """The message as plain JSON-ready data: enumerations by name, bytes as hex."""
    skip = ("raw", "flags")
    out = {f: _jsonable(getattr(msg, f)) for f in msg.__struct_fields__ if f not in skip}
    if msg.flags:
        out["flags"] = list(msg.flags)
    out["raw"] = msg.raw.hex()
    return out


def message_record(d: Decoded) -> dict[str, Any]:
    """One decoded message as the ``jsonl`` format writes it."""
    return {
        "ts": d.ts,
        "name": d.name,
        "pgn": d.pgn,
        "src": d.sa,
        "dst": d.da,
        "fields": to_fields(d.message),
    }


def _stat(s: Stat | None) -> dict[str, float] | None:
    return None if s is None else {"min": s.min, "max": s.max, "last": s.last}


def _fields(msg: Message | None) -> dict[str, Any] | None:
    return None if msg is None else to_fields(msg)


def _vehicle(brm: BRM | None) -> dict[str, Any] | None:
    if brm is None:
        return None
    return {
        "vin": brm.vin,
        "battery_type_code": brm.battery_type_code,
        "battery_type": None if brm.battery_type is None else brm.battery_type.name,
        "rated_capacity_ah": brm.rated_capacity_ah,
        "rated_voltage_v": brm.rated_total_voltage_v,
        "manufacturer": brm.battery_manufacturer,
        "manufacturer_raw": None
        if brm.battery_manufacturer_raw is None
        else brm.battery_manufacturer_raw.hex(),
        "charge_count": brm.pack_charge_count,
        "production_year": brm.production_year,
        "bms_protocol_version": brm.bms_protocol_version,
        "flags": list(brm.flags),
    }


def _charger(s: SessionSummary) -> dict[str, Any]:
    charger: dict[str, Any] = {
        "charger_number": s.charger_number,
        "region_code": s.charger_region_code,
        "protocol_version": s.charger_protocol_version,
    }
    if s.cml is not None:
        cml = to_fields(s.cml)
        cml.pop("raw", None)
        charger.update(cml)
    return charger


def _stop(s: SessionSummary) -> dict[str, Any] | None:
    if s.stop_initiator is None:
        return None
    return {
        "initiator": s.stop_initiator,
        "bst": None if s.bst is None else list(active_codes(s.bst)),
        "cst": None if s.cst is None else list(active_codes(s.cst)),
        "initiator_conflict": "initiator_conflict" in s.flags,
    }


def session_record(s: SessionSummary) -> dict[str, Any]:
    """One session of the ``summary`` format."""
    limits = _fields(s.bcp)
    if limits is not None:
        limits.pop("raw", None)
    return {
        "session_id": s.session_id,
        "connector_id": s.connector_id,
        "protocol_version": s.protocol_version,
        "generation": s.generation,
        "start_ts": s.start_ts,
        "end_ts": s.end_ts,
        # one timestamp for the whole session: no duration can be measured
        "duration_s": None if s.timestamps_constant else round(s.end_ts - s.start_ts, 6),
        "timestamps_constant": s.timestamps_constant,
        "end_reason": s.end_reason,
        "phases": [{"phase": p.phase.value, "ts": p.ts, "reason": p.reason} for p in s.phases],
        "vehicle": _vehicle(s.brm),
        "limits": limits,
        "charger": _charger(s),
        "bms_ready_ts": s.bms_ready_ts,
        "charging_started_ts": s.charging_started_ts,
        "soc_start_pct": s.soc_start_pct,
        "soc_end_pct": s.soc_end_pct,
        "voltage_v": _stat(s.voltage_v),
        "current_a": _stat(s.current_a),
        "bms_voltage_v": _stat(s.bms_voltage_v),
        "bms_current_a": _stat(s.bms_current_a),
        "cell_voltage_v": _stat(s.cell_voltage_v),
        "temperature_c": _stat(s.temperature_c),
        "stop_ts": s.stop_ts,
        "stop_reason": _stop(s),
        "energy_kwh": None if s.csd is None else s.csd.output_energy_kwh,
        "charge_minutes": None if s.csd is None else s.csd.cumulative_charge_time_min,
        "bsd": _fields(s.bsd),
        "errors": [
            {"ts": e.ts, "side": e.side, "timeouts": list(e.timeouts), "other": e.other}
            for e in s.errors
        ],
        "timeouts": [
            {
                "ts": t.ts,
                "last_frame_ts": t.last_frame_ts,
                "phase": t.phase.value,
                "silent_s": t.silent_s,
            }
            for t in s.timeouts
        ],
        "pauses": [{"by": p.by, "start_ts": p.start_ts, "end_ts": p.end_ts} for p in s.pauses],
        "reconnect_attempts": s.reconnect_attempts,
        "untrusted_values": s.untrusted_values,
        "flags": list(s.flags),
        "message_counts": dict(sorted(s.message_counts.items())),
    }


def write_digest(s: dict[str, Any], out: TextIO) -> None:
    """A few readable lines about one session (a :func:`session_record`)."""
    v = s["vehicle"] or {}
    stop = s["stop_reason"] or {}
    duration = s["duration_s"]
    length = "duration unknown (timestamps constant)" if duration is None else f"{duration:.1f} s"
    out.write(
        f"session {s['session_id']}: protocol {s['protocol_version']}, "
        f"end {s['end_reason']}, {length}\n"
        f"  vehicle: VIN {v.get('vin')}, {v.get('battery_type')}, "
        f"{v.get('rated_capacity_ah')} Ah, {v.get('rated_voltage_v')} V\n"
        f"  SOC {s['soc_start_pct']} → {s['soc_end_pct']} %, energy {s['energy_kwh']} kWh, "
        f"{s['charge_minutes']} min\n"
        f"  stop: {stop.get('initiator')} (BST {stop.get('bst')}, CST {stop.get('cst')})\n"
    )
    if s["errors"] or s["timeouts"]:
        out.write(f"  errors: {s['errors']}  timeouts: {s['timeouts']}\n")
    if s["flags"]:
        out.write(f"  flags: {', '.join(s['flags'])}\n")


def pipeline_record(p: Pipeline) -> dict[str, Any]:
    """Frame counts, foreign frames and anomalies by kind."""
    c = p.counts
    return {
        "frames": {
            "total": c.total,
            "gbt": c.gbt,
            "tp_cm": c.tp_cm,
            "tp_dt": c.tp_dt,
            "foreign": c.foreign,
            "ignored": c.ignored,
        },
        "foreign_ids": dict(sorted(c.foreign_ids.items())),
        "ignored_kinds": dict(sorted(c.ignored_kinds.items())),
        "messages": dict(sorted(c.messages.items())),
        "anomalies": {k: dict(sorted(v.items())) for k, v in p.anomalies().items()},
        "transfers_completed": p.reassembler.completed,
    }


def direction(sa: int) -> str:
    if sa == CHARGER_ADDR:
        return "C→B"
    if sa == BMS_ADDR:
        return "B→C"
    return f"{sa:02X}"
