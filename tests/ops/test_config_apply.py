"""`evgw config apply` against one running `evgw run` (two DC chargers on slcan ptys, their
meters on the Modbus TCP simulator, mosquitto and the T/CEC receiver): only the parts a change
concerns are rebuilt, a config that breaks a working meter is rolled back within the apply
timeout, an invalid one is refused with every problem, the file is replaced atomically with
the replaced ones kept. The tests run in order on the one gateway, each from the config the
previous one left."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.load import parse_config
from agent.config.resources import read_resource
from agent.ops.config_diff import diff, plan
from agent.service.apply import ApplyRequest, Staged, decode_request
from agent.service.status_socket import ask, query_status
from sim.charging import VehicleProfile
from sim.station import SessionPlan
from tests.e2e.helpers import (
    STATION_ID,
    TOPIC_PREFIX,
    Rig,
    build_rig,
    ledger_records,
    run_cli,
    wait_until,
)
from tests.ops.platform import CommandClient, PlatformKey

pytestmark = pytest.mark.xdist_group("config-apply")
"""One worker, in file order: the tests share one running gateway and build on its config."""
APPLY_TIMEOUT_S = 4
ADMIN, READ_ONLY = PlatformKey(), PlatformKey()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = build_rig(tmp_path_factory.mktemp("apply"), 2)
    text = rig.config.read_text()
    # the second meter on a line of its own (same simulator, another host name)
    second = text.index('host = "127.0.0.1"', text.index('meter_id = "dc-02"'))
    text = text[:second] + 'host = "localhost"' + text[second + len('host = "127.0.0.1"') :]
    text = text.replace(
        'log_level = "info"\n',
        f'log_level = "info"\napply_timeout_s = {APPLY_TIMEOUT_S}\nconfigs_kept = 2\n',
    )
    admin = ADMIN.save_public(rig.directory / "admin.pub")  # signs the MQTT config.apply
    text = text.replace("[uplinks.mqtt]\n", f'[uplinks.mqtt]\ncommand_pubkey_file = "{admin}"\n')
    rig.config.write_text(text)
    rig.agent.start()
    try:
        rig.agent.wait_ready(rig.connectors)
        # a session charging on each connector throughout: the buses carry frames all along
        vehicle = VehicleProfile(soc_start_pct=20.0, soc_target_pct=95.0, capacity_ah=2000.0)
        rig.station.play({cid: [SessionPlan(vehicle, charge_s=900.0)] for cid in rig.connectors})
        wait_until(lambda: all_working(status(rig)), 30, "buses, meters and uplinks working")
        wait_until(lambda: charging(status(rig)), 30, "a session charging on each connector")
        yield rig
    finally:
        print(rig.agent.all_logs())
        rig.close()


def status(rig: Rig) -> dict[str, Any]:
    """What `evgw status --json` shows (asked in-process: the CLI is what apply tests)."""
    return query_status(rig.directory / "status.sock")


def sessions(snapshot: dict[str, Any]) -> list[str | None]:
    return [row["session"] for row in snapshot["connectors"]]


def charging(snapshot: dict[str, Any]) -> bool:
    return all(row["status"] == "charging" for row in snapshot["connectors"])


def all_working(snapshot: dict[str, Any]) -> bool:
    return (
        all(b["state"] == "open" for b in snapshot["can_buses"].values())
        and all(m["online"] for m in snapshot["meters"].values())
        and all(u["connected"] for u in snapshot["uplinks"].values())
        and len(snapshot["meters"]) == 2
    )


def apply(rig: Rig, text: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    new = rig.directory / "new.toml"
    new.write_text(text)
    done = run_cli("config", "apply", str(new), "--config", str(rig.config), "--json", *extra)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout else {}, done.stderr


def bus_opens(rig: Rig, connector: str = r"\S+") -> int:
    return len(re.findall(rf"CAN bus of {connector} open", rig.agent.log_text()))


def events(rig: Rig, name: str) -> list[dict[str, Any]]:
    return [
        r["body"]
        for r in ledger_records(rig.ledger_path)
        if r["kind"] == "event" and r["body"]["event"] == name
    ]


def meter_block(text: str, meter_id: str) -> tuple[int, int]:
    start = text.index(f'meter_id = "{meter_id}"')
    return start, text.index("\n\n", start)


def interval_change(rig: Rig, meter_id: str, wanted: float) -> tuple[float, float]:
    """The meter's poll interval now (whatever an earlier test of the module left: xdist runs
    them in any order) and a different one to apply."""
    text = rig.config.read_text()
    start, end = meter_block(text, meter_id)
    found = re.search(r"(?m)^poll_interval_s = (\S+)$", text[start:end])
    assert found is not None
    current = float(found.group(1))
    return current, wanted if wanted != current else wanted + 1.0


def set_in_meter(text: str, meter_id: str, key: str, value: str) -> str:
    start, end = meter_block(text, meter_id)
    block = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text[start:end])
    return text[:start] + block + text[end:]


def test_meter_interval_rebuilds_its_line_alone(rig: Rig) -> None:
    before = status(rig)
    opened = bus_opens(rig)
    old_text = rig.config.read_text()
    old_inode = rig.config.stat().st_ino
    current, new = interval_change(rig, "dc-01", 2.0)
    text = set_in_meter(old_text, "dc-01", "poll_interval_s", str(new))
    code, reply, err = apply(rig, text)
    assert code == 0, (reply, err)
    assert reply["outcome"] == "applied"
    assert reply["changes"] == [f"meters.dc-01.poll_interval_s: {current} → {new}"]
    line = f"127.0.0.1:{rig.station.modbus_port}"
    assert reply["parts"] == [f"meter line {line}"]
    after = status(rig)
    # the buses kept their listeners: the frame counters went on, no bus was opened again
    for cid in rig.connectors:
        assert after["can_buses"][cid]["frames"] > before["can_buses"][cid]["frames"] > 0
    assert bus_opens(rig) == opened
    assert sessions(after) == sessions(before)  # the charging sessions went on
    # the other line kept its poller and its connection; the changed one runs again
    other = f"localhost:{rig.station.modbus_port}"
    assert after["meter_lines"][other] == before["meter_lines"][other]
    assert after["meter_lines"][line]["meters"] == ["dc-01"]
    assert after["meters"]["dc-01"]["online"] and after["meters"]["dc-02"]["online"]
    for name in ("can-E2EDC0101", "can-E2EDC0102", "uplink-mqtt", "uplink-cec"):
        assert after["tasks"][name] == before["tasks"][name]
    # the file: replaced by a rename (new inode), the old one kept, nothing else left behind
    assert rig.config.read_text() == text and rig.config.stat().st_ino != old_inode
    kept = rig.config.with_name("evgw.toml.1")
    assert reply["kept"] == kept.name and kept.read_text() == old_text
    assert not list(rig.directory.glob(".evgw.toml.apply-*"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert after["config"]["sha256"] == digest == reply["sha256"]
    (event,) = [e for e in events(rig, "config_applied") if e["details"]["sha256"] == digest]
    assert event["details"]["parts"] == reply["parts"]
    assert event["details"]["previous_sha256"] == hashlib.sha256(old_text.encode()).hexdigest()


def test_changed_uplink_reconnects_alone(rig: Rig) -> None:
    before = status(rig)
    connects = rig.agent.log_text().count("MQTT connected")
    running = rig.config.read_text()
    kept = rig.config.with_name("evgw.toml.1")
    previous = kept.read_text() if kept.exists() else None
    keepalive = "keepalive_s = 31\n" if "keepalive_s = 30\n" in running else "keepalive_s = 30\n"
    text = re.sub(r"(?m)^keepalive_s = .*\n", "", running).replace(
        "[uplinks.mqtt]\n", f"[uplinks.mqtt]\n{keepalive}", 1
    )
    code, reply, err = apply(rig, text)
    assert code == 0, (reply, err)
    assert reply["parts"] == ["uplink mqtt"]
    after = status(rig)
    assert after["uplinks"]["mqtt"]["connected"]
    assert rig.agent.log_text().count("MQTT connected") == connects + 1
    # the T/CEC uplink is the same object (its counters went on), the buses and lines too
    assert after["uplinks"]["cec"]["sent"] >= before["uplinks"]["cec"]["sent"] > 0
    assert after["meter_lines"] == before["meter_lines"]
    for cid in rig.connectors:
        assert after["can_buses"][cid]["frames"] > before["can_buses"][cid]["frames"]
    # configs_kept = 2: the replaced file is .1, the one it replaced moved on to .2
    assert kept.read_text() == running
    if previous is not None:
        assert rig.config.with_name("evgw.toml.2").read_text() == previous


def test_changed_bus_reopens_alone(rig: Rig) -> None:
    before = status(rig)
    opens = {cid: bus_opens(rig, cid) for cid in rig.connectors}
    first, second = rig.connectors
    text = rig.config.read_text().replace(
        f'connector_id = "{second}"\ninterface = "slcan"\n',
        f'connector_id = "{second}"\ninterface = "slcan"\nbitrate = 500000\n',
    )
    code, reply, err = apply(rig, text)
    assert code == 0, (reply, err)
    assert reply["parts"] == [f"CAN bus of {second}"]
    after = status(rig)
    assert bus_opens(rig, second) == opens[second] + 1 and bus_opens(rig, first) == opens[first]
    assert after["can_buses"][first]["frames"] > before["can_buses"][first]["frames"]
    assert after["tasks"][f"can-{second}"]["state"] == "running"
    assert after["meter_lines"] == before["meter_lines"]
    # the session on the other bus went on; the one on the rebuilt bus was closed when its
    # listener stopped (an interrupted order) and the next frames opened a new one
    assert sessions(after)[0] == sessions(before)[0]
    (order,) = [
        r["body"]
        for r in ledger_records(rig.ledger_path)
        if r["kind"] == "charge_order" and r["body"]["session_id"] == sessions(before)[1]
    ]
    assert order["interrupted"] is True and order["end_reason"] == "lost"
    wait_until(lambda: charging(status(rig)), 20, "the new session charging on the rebuilt bus")


def test_station_identity_reaches_the_model_and_every_uplink(rig: Rig) -> None:
    before = status(rig)
    connects = rig.agent.log_text().count("MQTT connected")
    text = rig.config.read_text().replace('name = "evgw e2e station"', 'name = "evgw station 2"')
    code, reply, err = apply(rig, text)
    assert code == 0, (reply, err)
    assert reply["parts"] == ["station model", "uplink mqtt", "uplink cec"]
    assert rig.agent.log_text().count("MQTT connected") == connects + 1
    names = [
        r["body"]["station"]["name"]
        for r in ledger_records(rig.ledger_path)
        if r["kind"] == "identity"
    ]
    assert names[-1] == "evgw station 2"
    after = status(rig)
    assert after["meter_lines"] == before["meter_lines"] and sessions(after) == sessions(before)


def test_parts_come_and_go(rig: Rig) -> None:
    running = rig.config.read_text()
    start, end = meter_block(running, "dc-02")
    start = running.rindex("[[meters]]", 0, start)
    without = running[:start] + running[end + 2 :]
    without = without.replace("[uplinks.cec]\nenabled = true", "[uplinks.cec]\nenabled = false")
    code, reply, err = apply(rig, without)
    assert code == 0, (reply, err)
    other = f"localhost:{rig.station.modbus_port}"
    assert reply["parts"] == [f"meter line {other}", "uplink cec"]
    gone = status(rig)
    assert "dc-02" not in gone["meters"] and other not in gone["meter_lines"]
    assert "cec" not in gone["uplinks"]
    assert f"meters-{other}" not in gone["tasks"] and "uplink-cec" not in gone["tasks"]
    code, reply, err = apply(rig, running)
    assert code == 0, (reply, err)
    assert reply["parts"] == [f"meter line {other}", "uplink cec"]
    # new parts are not waited for (they did not work before): they start at once
    back = wait_until(lambda: all_working(status(rig)) and status(rig), 10, "dc-02 and cec back")
    assert back["tasks"][f"meters-{other}"]["state"] == "running"


def test_breaking_a_working_meter_rolls_back(rig: Rig) -> None:
    running = rig.config.read_text()
    history = sorted(p.name for p in rig.directory.glob("evgw.toml.*"))
    text = set_in_meter(running, "dc-02", "unit_id", "77")  # no meter answers there
    started = time.monotonic()
    code, reply, err = apply(rig, text)
    # the wait, the way back, and two CLI processes started on a loaded machine (xdist)
    assert time.monotonic() - started < APPLY_TIMEOUT_S + 10
    assert code == 1, (reply, err)
    assert reply["outcome"] == "rolled_back"
    assert "meter dc-02" in reply["reason"] and f"{APPLY_TIMEOUT_S} s" in reply["reason"]
    assert reply["parts"] == [f"meter line localhost:{rig.station.modbus_port}"]
    assert rig.config.read_text() == running  # the file untouched, the history too
    assert sorted(p.name for p in rig.directory.glob("evgw.toml.*")) == history
    digest = hashlib.sha256(text.encode()).hexdigest()
    (event,) = [e for e in events(rig, "config_rolled_back") if e["details"]["sha256"] == digest]
    assert event["details"]["reason"] == reply["reason"]
    wait_until(lambda: all_working(status(rig)), 15, "the restored meter working again")
    assert status(rig)["config"]["sha256"] == hashlib.sha256(running.encode()).hexdigest()


def test_invalid_or_restart_only_configs_are_refused(rig: Rig) -> None:
    running = rig.config.read_text()
    before = status(rig)
    broken = running.replace("[station]\n", "[station]\ncolour = 1\n")
    broken = set_in_meter(broken, "dc-01", "poll_interval_s", "0")
    code, reply, _err = apply(rig, broken)
    assert code == 1 and reply["outcome"] == "refused"
    problems = "\n".join(reply["problems"])
    for expected in ("station.colour: unknown key", "meters[0].poll_interval_s: expected"):
        assert expected in problems, problems
    code, reply, _err = apply(rig, running.replace("[station]", "[station", 1))
    assert code == 1 and "TOML syntax error" in reply["problems"][0]
    crossed = set_in_meter(running, "dc-01", "connector_id", '"nowhere"')
    crossed = crossed.replace(
        'connector_id = "E2EDC0102"\ninterface', 'connector_id = "E2EDC0101"\ninterface'
    )
    code, reply, _err = apply(rig, crossed)
    problems = "\n".join(reply["problems"])
    assert (
        code == 1 and "no connector 'nowhere'" in problems and "more than one CAN bus" in problems
    )
    secret = "hunter2-never-logged"
    leaking = running.replace("[uplinks.mqtt]\n", f'[uplinks.mqtt]\npassword = "{secret}"\n')
    code, reply, _err = apply(rig, leaking)
    assert code == 1 and reply["problems"] == [
        "uplinks.mqtt.password: unknown key (a secret? secrets belong in secrets.toml, never in "
        "evgw.toml)"
    ]
    assert secret not in json.dumps(reply) and secret not in json.dumps(
        events(rig, "config_refused")
    )
    assert secret not in rig.agent.log_text()
    done = run_cli("config", "apply", str(rig.directory / "new.toml"), "--config", str(rig.config))
    assert done.returncode == 1 and done.stdout.startswith("refused, nothing changed:")
    restart = running.replace("checkpoint_interval_s = 5", "checkpoint_interval_s = 6")
    code, reply, _err = apply(rig, restart)
    assert code == 1 and "ledger.checkpoint_interval_s: only a restart" in reply["problems"][0]
    assert rig.config.read_text() == running
    assert status(rig)["meter_lines"] == before["meter_lines"]
    assert len(events(rig, "config_refused")) == 6
    code, reply, _err = apply(rig, running)
    assert code == 0 and reply["outcome"] == "unchanged"


def test_usage_errors_and_no_service(rig: Rig, tmp_path: Path) -> None:
    missing = run_cli("config", "apply", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    binary = tmp_path / "bad.toml"
    binary.write_bytes(b"\xff\xfe")
    assert run_cli("config", "apply", str(binary)).returncode == 2
    late = run_cli("config", "apply", str(rig.config), "--timeout", "0")
    assert late.returncode == 2 and "outside 1..600" in late.stderr
    nobody = run_cli("config", "apply", str(rig.config), "--socket", str(tmp_path / "status.sock"))
    assert nobody.returncode == 1 and "is the service running?" in nobody.stderr
    assert "Traceback" not in nobody.stderr


def test_hostile_config_requests_are_answered(rig: Rig) -> None:
    sock = rig.directory / "status.sock"
    for request in ({}, {"op": "drop"}, {"op": "apply", "toml": 5}, {"op": "apply", "toml": ""}):
        reply = ask(sock, "config", request)
        assert reply["ok"] is False and reply["outcome"] == "refused", reply
    huge = ask(sock, "config", {"op": "apply", "toml": "#" * 40_000})
    assert huge["ok"] is False and "32768" in json.dumps(huge)
    assert all_working(status(rig))


def test_signed_mqtt_config_apply_through_the_broker(rig: Rig) -> None:
    old, new = interval_change(rig, "dc-01", 1.5)
    text = set_in_meter(rig.config.read_text(), "dc-01", "poll_interval_s", str(new))
    client = CommandClient(rig.broker.port, f"{TOPIC_PREFIX}/{STATION_ID}")
    try:
        args = {"toml": text, "timeout_s": 5}
        wrong = READ_ONLY.command(STATION_ID, "config.apply", "c-0", args)
        refused = client.ask("config.apply", wrong, "c-0")
        signed = ADMIN.command(STATION_ID, "config.apply", "c-1", args)
        reply = client.ask("config.apply", signed, "c-1")
    finally:
        client.close()
    assert refused["ok"] is False and "not signed by the platform" in refused["error"], refused
    assert reply["ok"] is True, reply
    answer = reply["result"]
    assert answer["outcome"] == "applied" and answer["requested_by"] == "mqtt config.apply c-1"
    assert answer["changes"] == [f"meters.dc-01.poll_interval_s: {old} → {new}"]


def test_sighup_switches_only_the_changed_parts_too(rig: Rig) -> None:
    opens = bus_opens(rig)
    connects = rig.agent.log_text().count("MQTT connected")
    _current, new = interval_change(rig, "dc-01", 3.0)
    text = set_in_meter(rig.config.read_text(), "dc-01", "poll_interval_s", str(new))
    rig.config.write_text(text)
    secrets = rig.directory / "secrets.toml"
    secrets.write_text(secrets.read_text() + '\n[mqtt]\nusername = "evgw-e2e"\n')
    rig.agent.proc.send_signal(signal.SIGHUP)
    rig.agent.wait_logged("configuration reloaded from")
    line = f"127.0.0.1:{rig.station.modbus_port}"
    (event,) = events(rig, "config_reloaded")
    assert event["details"]["parts"] == [f"meter line {line}", "uplink mqtt"]
    assert event["details"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    wait_until(lambda: all_working(status(rig)), 10, "everything working after the reload")
    assert bus_opens(rig) == opens  # the buses kept listening
    assert rig.agent.log_text().count("MQTT connected") == connects + 1  # the new secrets


REQUEST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["op", "toml", "timeout_s", "requested_by", "x"]) | st.text(max_size=8),
        REQUEST_VALUES,
        max_size=5,
    )
)
def test_request_decoding_never_raises_anything_else(request: dict[str, Any]) -> None:
    try:
        decoded = decode_request(request)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(decoded, ApplyRequest) and decoded.op == "apply"
        assert isinstance(decoded.toml, str) and len(decoded.toml) <= 32_768


# --- the plan and the file, without a service --------------------------------------------

EXAMPLE = read_resource("evgw.example.toml")


def planned(new_text: str) -> tuple[list[str], dict[str, None]]:
    old, new = parse_config(EXAMPLE), parse_config(new_text)
    steps = plan(old, new, diff(old, new))
    return steps.parts(), steps.restart


@pytest.mark.parametrize(
    ("old", "new", "parts"),
    [
        (
            'host = "192.0.2.10"',
            'host = "192.0.2.11"',
            ["meter line 192.0.2.10:502", "meter line 192.0.2.11:502"],
        ),
        ('log_level = "info"', 'log_level = "debug"', ["service setting gateway.log_level"]),
        (
            "apply_timeout_s = 60",
            "apply_timeout_s = 30",
            ["service setting gateway.apply_timeout_s"],
        ),
        (
            'name = "Futian Example Station"',
            'name = "Futian 2"',
            ["station model", "uplink mqtt", "uplink cec"],
        ),
        ("bms_timeout_s = 5", "bms_timeout_s = 7", ["station model"]),
    ],
)
def test_plan_names_the_parts(old: str, new: str, parts: list[str]) -> None:
    assert EXAMPLE.count(old) == 1, old
    got, restart = planned(EXAMPLE.replace(old, new))
    assert got == parts and not restart


def test_plan_profiles_touch_every_line_and_restart_keys_are_named() -> None:
    old, new = (
        parse_config(EXAMPLE),
        parse_config(EXAMPLE.replace("[gateway]", "[meter_profiles]\ndirs = []\n\n[gateway]", 1)),
    )
    steps = plan(old, new, diff(old, new))
    assert steps.parts() == [
        "meter line /dev/ttyUSB0",
        "meter line /dev/ttyUSB1",
        "meter line 192.0.2.10:502",
    ]
    _parts, restart = planned(
        EXAMPLE.replace('state_dir = "/var/lib/evgw"', 'state_dir = "/srv/evgw"')
    )
    assert list(restart) == ["gateway.state_dir"]


def test_plan_of_site_inputs_is_their_modules_line_and_the_station() -> None:
    module = (
        '\n[[input_modules]]\nmodule_id = "di1"\nprofile = "generic-di8"\nport = "/dev/ttyUSB1"\n'
        "unit_id = 9\n"
    )
    door = '\n[[inputs]]\ninput_id = "door"\nmodule = "di1"\nchannel = 2\nrole = "door"\n'
    old = parse_config(EXAMPLE + module + door)
    new = parse_config(EXAMPLE + module + door.replace("channel = 2", "channel = 3"))
    assert plan(old, new, diff(old, new)).parts() == ["station model", "meter line /dev/ttyUSB1"]
    moved = parse_config(EXAMPLE + module.replace("ttyUSB1", "ttyUSB2") + door)
    assert plan(old, moved, diff(old, moved)).parts() == [
        "meter line /dev/ttyUSB1",
        "meter line /dev/ttyUSB2",
    ]


def test_file_replaced_with_the_last_n_kept(tmp_path: Path) -> None:
    path = tmp_path / "evgw.toml"
    path.write_text("v0")
    (tmp_path / ".evgw.toml.apply-1").write_text("left by a crash")
    for n in range(1, 5):
        staged = Staged.write(path, f"v{n}".encode())
        assert path.read_text() == f"v{n - 1}"  # untouched until the commit
        assert staged.commit(keep=2) == "evgw.toml.1"
    assert path.read_text() == "v4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evgw.toml", "evgw.toml.1", "evgw.toml.2"]
    assert (tmp_path / "evgw.toml.1").read_text() == "v3" and (
        tmp_path / "evgw.toml.2"
    ).read_text() == "v2"
    Staged.write(path, b"v5").discard()
    assert Staged.write(path, b"v6").commit(keep=0) is None
    assert path.read_text() == "v6" and (tmp_path / "evgw.toml.1").read_text() == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evgw.toml", "evgw.toml.1", "evgw.toml.2"]
