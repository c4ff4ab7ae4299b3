"""Parking that ends, under chaos (#15 "Done when"): the receiver answers 4003 for a while
(the operator's access is still under review), then drops connections, then refuses one
record with 4004, while the station charges and the gateway is SIGKILLed twice.

At the end every record the T/CEC uplink takes is at the receiver exactly once after dedupe,
in per-connector order — except the one 4004 record, which `evgw uplink parked` lists and
which arrives after `evgw uplink resend --seq N`. The platform was parked (probes every
2 s here) and alarm 27 was raised and cleared."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from tests.e2e.helpers import (
    Rig,
    build_rig,
    cec_accepted,
    cec_expected_ids,
    delivered_everywhere,
    export_and_verify,
    per_lane_order_violations,
    run_cli,
    wait_until,
)
from tests.e2e.test_chaos import NOTIFICATIONS, Chaos, session_plans

STATUS = "notification_stationStatus"


def lane(record: dict[str, object]) -> str:
    return str(record["connector_id"] or record["equipment_id"] or "station")


def parked_seqs(rig: Rig) -> list[int]:
    out = run_cli("uplink", "parked", "--uplink", "cec", "--config", str(rig.config), "--json")
    assert out.returncode == 0, out.stderr
    (cec,) = json.loads(out.stdout)["uplinks"]
    return [row["seq"] for row in cec["parked"]]


def test_4003_then_drops_then_one_4004_with_two_kills(tmp_path: Path) -> None:
    rig = build_rig(tmp_path / "rig", 2)
    try:
        text = rig.config.read_text()
        rig.config.write_text(
            text.replace("retry_max_s = 2\n", "retry_max_s = 2\nprobe_interval_s = 2\n"
                         "link_alarm_after_s = 10\n", 1)
        )  # fmt: skip
        receiver = rig.platform.receiver
        for interface in (*NOTIFICATIONS, "check_charge_orders"):
            receiver.inject("ret", 4003, count=1_000_000, interface=interface)
        chaos = Chaos(rig, random.Random(15))
        rig.agent.start()
        rig.agent.wait_ready(rig.connectors)
        rig.station.play({cid: session_plans(n, 3) for n, cid in enumerate(rig.connectors, 1)})
        chaos.t0 = time.time()
        chaos.note("receiver answers 4003 (access under review)")
        chaos.sleep_until(4.0)
        chaos.kill_and_restart()  # the second run meets 4003 for over link_alarm_after_s
        chaos.sleep_until(20.0)
        receiver.clear_faults()
        for interface in NOTIFICATIONS:
            receiver.inject("drop", count=1_000_000, interface=interface)
        chaos.note("receiver drops connections")
        chaos.sleep_until(24.0)
        receiver.clear_faults()
        receiver.inject("ret", 4004, count=1, interface=STATUS)
        chaos.note("receiver healthy but for one 4004")
        chaos.sleep_until(28.0)
        chaos.kill_and_restart()
        rig.station.wait(timeout_s=240)
        wait_until(lambda: delivered_everywhere(rig), 120, "both uplinks caught up")
        (refused,) = wait_until(lambda: parked_seqs(rig), 30, "the parked record")
        chaos.note(f"seq {refused} parked")
        resent = run_cli(
            "uplink", "resend", "--uplink", "cec", "--seq", str(refused), "--config", str(rig.config)
        )  # fmt: skip
        assert resent.returncode == 0 and "1 records queued" in resent.stdout, resent.stderr
        wait_until(lambda: parked_seqs(rig) == [], 30, "the record released")
        assert rig.agent.terminate() == 0
        records = export_and_verify(rig)
        by_id = {r["id"]: r for r in records}
        refused_id = next(r["id"] for r in records if r["seq"] == refused)
        wait_until(
            lambda: refused_id in {a["record_id"] for a in cec_accepted(rig)}, 30, "the resend"
        )
        accepted = cec_accepted(rig)
        assert {a["record_id"] for a in accepted} == cec_expected_ids(records)
        in_order = [by_id[a["record_id"]] for a in accepted if a["record_id"] != refused_id]
        assert per_lane_order_violations(in_order, lane) == []
        assert by_id[refused_id]["kind"] == "connector_status"
        rets = [r["ret"] for r in receiver.requests()]
        assert rets.count(4003) >= 2 and rets.count(4004) == 1
        events = [r["body"]["event"] for r in records if r["kind"] == "event"]
        for name in ("uplink_peer_parked", "uplink_peer_resumed", "uplink_record_parked"):
            assert name in events, name
        link = [
            r["body"]["status"] for r in records if r["kind"] == "alarm" and r["body"]["code"] == 27
        ]
        assert "raised" in link and link[-1] == "cleared", link
        print("\n".join(chaos.journal))
    finally:
        rig.close()
