"""The end-of-run report of ``evgw demo``: what the ledger holds and whether it verifies.

Built from the ledger file after the service closed it: records by kind, per-uplink cursor
and backlog, the whole chain exported and verified against the gateway's public key, each
charging order with its energy audit (meter vs charger vs the CCS integral) and its meter
flags, and the site alarms (meter seals, site inputs, the grid) with their messages.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from agent.ledger import GatewayKey
from agent.ledger.export import export_lines, open_for_reading
from agent.ledger.stats import ledger_stats
from agent.ledger.verify import verify_lines
from agent.station.codes import (
    ALARM_CODES,
    AUDIT_TYPE,
    BILLED_ENERGY_MISMATCH,
    BILLED_MISSING,
    BILLED_MONEY_MISMATCH,
    SEAL_TYPE,
    SITE_TYPE,
    STOP_BMS,
    STOP_CHARGER_FAULT,
    STOP_DISCONNECTED,
    STOP_PLATFORM,
    STOP_USER,
)

NONE = "—"
STOP_MEANINGS: dict[int, str] = {
    STOP_USER: "stopped by the user",
    STOP_PLATFORM: "stopped by the platform",
    STOP_BMS: "stopped by the vehicle (BMS)",
    STOP_CHARGER_FAULT: "charger fault",
    STOP_DISCONNECTED: "connector disconnected or gateway stopped",
}
"""T/CEC StopReason codes in words (docs/STATION.md)."""

BILLING_CODES = (BILLED_ENERGY_MISMATCH, BILLED_MONEY_MISMATCH, BILLED_MISSING)
"""The billing audit's alarms: shown on each order's ``billed`` line, not in its audit."""


def alarm_text(code: int | str) -> str:
    """An alarm code with its meaning beside it: ``2 emergency stop``."""
    known = ALARM_CODES.get(int(code)) if str(code).isdigit() else None
    return f"{code} {known.meaning}" if known else f"{code} (unknown code)"


def stop_text(code: int | None) -> str:
    if code is None:
        return NONE
    return f"{code} {STOP_MEANINGS.get(code, '(unknown code)')}"


def shown(value: object, unit: str = "") -> str:
    """A value for the report: an em dash when absent, never ``None``."""
    if value is None:
        return NONE
    return f"{value}{unit}"


ORDER_FIELDS = (
    "connector_id",
    "session_id",
    "vin",
    "energy_kwh",
    "charger_energy_kwh",
    "ccs_energy_kwh",
    "stop_reason",
    "soc_start_pct",
    "soc_end_pct",
)
SITE_CAUSES = ("seal.", "input.", "grid.")
"""The causes of the site alarms (agent.station.site)."""


def is_site_alarm(body: dict[str, Any]) -> bool:
    causes = body.get("causes") or ()
    return body.get("type") in (SEAL_TYPE, SITE_TYPE) or any(
        str(c).startswith(SITE_CAUSES) for c in causes
    )


def money_text(order: dict[str, Any]) -> str:
    """``12.34 yuan (elec 4.56 + service 7.78, 2 periods, tariff std)`` or ``no tariff``."""
    if not order.get("tariff_id"):
        return "no tariff"
    periods = len(order.get("charge_details") or ())
    total, elec, service = (
        Decimal(str(order[f"{k}_money_yuan"])) for k in ("total", "elec", "service")
    )
    return (
        f"{total:.2f} yuan (elec {elec:.2f} + service {service:.2f}, {periods} "
        f"period{'' if periods == 1 else 's'}, tariff {order['tariff_id']})"
    )


def billed_text(details: dict[str, Any] | None) -> str:
    """The operator's figure against the metered order, as the billing audit recorded it."""
    if details is None:
        return "no billed figure yet"
    codes = [code for code, ok in (("9008", "energy_agrees"), ("9009", "money_agrees"))
             if not details[ok]]  # fmt: skip
    verdict = "agrees" if not codes else "differs: " + "; ".join(map(alarm_text, codes))
    return (
        f"metered {details['metered_kwh']} kWh / {details['own_yuan']} yuan, billed "
        f"{details['billed_kwh']} kWh / {details['billed_yuan']} yuan: {verdict}"
    )


def build_report(ledger_path: Path, key_path: Path) -> dict[str, Any]:
    key = GatewayKey.load(key_path)
    conn = open_for_reading(ledger_path)
    try:
        stats = ledger_stats(conn, ledger_path)
        lines = list(export_lines(conn))
    finally:
        conn.close()
    verification = verify_lines(lines, [key.public])
    kinds: Counter[str] = Counter()
    orders: list[dict[str, Any]] = []
    alarms: Counter[str] = Counter()
    site_alarms: list[dict[str, Any]] = []
    last_order: dict[str, dict[str, Any]] = {}
    billed: dict[str, dict[str, Any]] = {}
    for line in lines:
        item = msgspec.json.decode(line)
        if "kind" not in item:
            continue
        kinds[item["kind"]] += 1
        body = item["body"]
        connector = item.get("connector_id")
        if item["kind"] == "event" and body.get("event") == "billed_checked":
            billed[body["session_id"]] = body["details"]  # the latest figure counts
        if item["kind"] == "charge_order":
            order = {"connector_id": connector, **body, "audit_codes": []}
            orders.append(order)
            last_order[connector] = order
        elif item["kind"] == "alarm" and body.get("status") == "raised":
            alarms[str(body.get("code"))] += 1
            if is_site_alarm(body):
                site_alarms.append(
                    {"code": body["code"], "connector_id": connector, "message": body["message"]}
                )
            # the station model writes an order's audit alarms right after the order
            if (
                body.get("type") == AUDIT_TYPE
                and body.get("code") not in BILLING_CODES  # those come with the billed line
                and connector in last_order
            ):
                last_order[connector]["audit_codes"].append(body["code"])
    return {
        "records_by_kind": dict(sorted(kinds.items())),
        "records": sum(kinds.values()),
        "ledger": {k: v for k, v in stats.items() if k != "kinds"},
        "chain_verified": verification.ok,
        "chain_problems": [str(p) for p in verification.problems[:10]],
        "signed_upto_seq": verification.signed_upto,
        "alarms_raised_by_code": dict(sorted(alarms.items())),
        "site_alarms": site_alarms,
        "orders": [
            {
                **{k: order.get(k) for k in ORDER_FIELDS},
                "audit": "mismatch: " + "; ".join(map(alarm_text, order["audit_codes"]))
                if order["audit_codes"]
                else "ok",
                "money": money_text(order),
                "billed": billed_text(billed.get(order["session_id"])),
                "ocmf_signed": bool(order.get("ocmf")),
                "meter_flags": sorted(
                    k
                    for k, v in (order.get("stop_bits") or {}).items()
                    if k.startswith("meter.") and v
                ),
            }
            for order in orders
        ],
    }


def render_report(report: dict[str, Any]) -> str:
    lines = [
        "evgw demo report",
        f"  records: {report['records']} "
        + "("
        + ", ".join(f"{k} {v}" for k, v in report["records_by_kind"].items())
        + ")",
        f"  chain: {'verified' if report['chain_verified'] else 'BROKEN'}, signed up to seq "
        f"{report['signed_upto_seq']}",
    ]
    lines += [f"    {p}" for p in report["chain_problems"]]
    for u in report["ledger"].get("uplinks", []):
        lines.append(
            f"  uplink {u['uplink']}: delivered up to seq {u['cursor']}, backlog {u['backlog']}, "
            f"parked {u['parked']}"
        )
    if report["alarms_raised_by_code"]:
        lines.append("  alarms raised:")
        lines += [
            f"    {alarm_text(code)} ×{n}" for code, n in report["alarms_raised_by_code"].items()
        ]
    if report.get("site_alarms"):
        lines.append("  meter seals and site inputs:")
        lines += [
            f"    {a['code']} on {a['connector_id'] or 'the station'}: {a['message']}"
            for a in report["site_alarms"]
        ]
    platforms = report.get("platforms", {})
    if platforms.get("cec_platform_accepted"):
        got = platforms["cec_platform_accepted"]
        lines.append(
            "  T/CEC receiver accepted: "
            + ", ".join(f"{k} {v}" for k, v in sorted(got.items()))
            + f" (duplicates after dedupe: {platforms.get('cec_platform_duplicates', 0)})"
        )
    if platforms.get("mqtt_broker"):
        lines.append(f"  MQTT: {platforms['mqtt_broker']}")
    if platforms.get("operator_billed"):
        lines.append(
            f"  operator sent a billed figure for {platforms['operator_billed']} orders over MQTT"
        )
    for note in platforms.get("cec_audit_notes", []):
        lines.append(f"  T/CEC receiver got the billing audit: {note}")
    lines.append(f"  orders: {len(report['orders'])}")
    for o in report["orders"]:
        lines.append(
            f"    {o['connector_id']} {o['session_id']}: {shown(o['energy_kwh'], ' kWh')} "
            f"metered, charger {shown(o['charger_energy_kwh'], ' kWh')}, CCS "
            f"{shown(o['ccs_energy_kwh'], ' kWh')}, SOC {shown(o['soc_start_pct'])}→"
            f"{shown(o['soc_end_pct'], ' %')}, audit {o['audit']}"
            f"{', OCMF signed' if o['ocmf_signed'] else ''}"
        )
        lines.append(f"      stop reason {stop_text(o['stop_reason'])}")
        if "money" in o:
            lines.append(f"      money {o['money']}")
        if "billed" in o:
            lines.append(f"      billed: {o['billed']}")
        if o.get("meter_flags"):
            lines.append(f"      flagged: {', '.join(o['meter_flags'])}")
    return "\n".join(lines)
