"""Tariff changes from the operator (#13 item 1): a pushed entry is validated like the file,
kept in the state directory and read again at start, recorded with its SHA-256, applied from
its valid_from (a running session is split there), shown by the status view; the signed MQTT
``tariff`` command with bad input is refused with a reason and nothing changed."""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.billing.pushed import (
    TariffRefused,
    entry_sha256,
    load_pushed,
    pushed_path,
    validate_entry,
)
from agent.config.load import parse_config
from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import decode_body
from agent.service import status_socket
from agent.service.status_socket import StatusServer
from agent.service.tariffs import TariffDesk, config_with_pushed
from agent.service.views import connector_row, tariff_in_force
from agent.station.model import StationModel
from agent.uplink.mqtt.commands import CommandHandler
from tests.billing.test_billed import NoPublish
from tests.station.station_fixtures import AC, BASE, METERS, of
from tests.station.test_station_model import reading, run
from tests.uplink.conftest import STATION
from tests.uplink.test_mqtt_commands import Platform
from tests.uplink.test_mqtt_uplink import settings as mqtt_settings

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
T0 = 1_700_000_000.0  # 06:13:20 station time
TARIFF = """
[[tariffs]]
id = "std"
default = true
periods = [{ start = "00:00", type = "flat", elec_price = 0.6200, service_price = 0.8000 }]
"""


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, TZ).strftime("%Y-%m-%d %H:%M:%S")


def entry(valid_from: str, elec: Any = 1.0, **over: Any) -> dict[str, Any]:
    period = {"start": "00:00", "type": "flat", "elec_price": elec, "service_price": 0.8}
    return {"id": "std", "valid_from": valid_from, "periods": [period], **over}


def config_text(tmp_path: Path, station_id: str = "SZ-FT-0001") -> str:
    text = BASE.replace(
        "[gateway]\n", f'[gateway]\nstate_dir = "{tmp_path}"\nruntime_dir = "{tmp_path}"\n', 1
    )
    return (
        text.replace('station_id = "SZ-FT-0001"', f'station_id = "{station_id}"', 1)
        + METERS
        + TARIFF
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(entry("2099-01-01 00:00:00", elec=-0.1), "tariff.periods[0].elec_price: Expected `float` >= 0.0"),
     (entry("2099-01-01 00:00:00", elec=0.12345), "tariff.periods[0].elec_price: at most 4 decimals, found 0.12345"),
     (entry("2099-01-01 00:00:00", elec=11), "tariff.periods[0].elec_price: Expected `float` <= 10"),
     (entry("2099-01-01 00:00:00", id="other"), "tariff.id: 'other' is no tariff of the config"),
     (entry("2099-01-01 00:00:00", default=True), "tariff.default: the default tariff is chosen in the config file"),
     (entry("2001-01-01 00:00:00"), "tariff.valid_from: 2001-01-01 00:00:00 is in the past"),
     ({"id": "std", "periods": entry("x")["periods"]}, "tariff.valid_from: required"),
     (entry("2099-02-30 00:00:00"), "tariff.valid_from: not a date and time"),
     (entry("2099-01-01 00:00:00", colour="red"), "tariff: Object contains unknown field `colour`"),
     ({**entry("2099-01-01 00:00:00"), "periods": []}, "tariff.periods: Expected `array` of length >= 1"),
     ({**entry("2099-01-01 00:00:00"), "periods": [{"start": "01:00", "type": "flat", "elec_price": 1, "service_price": 1}]}, "tariff.periods[0].start: the first period starts at 00:00")],
)  # fmt: skip
def test_bad_entries_refused_with_the_key(tmp_path: Path, bad: dict[str, Any], reason: str) -> None:
    with pytest.raises(TariffRefused) as info:
        validate_entry(bad, parse_config(config_text(tmp_path)), time.time())
    assert any(reason in r for r in info.value.reasons), info.value.reasons


async def test_pushed_version_splits_a_running_session_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    config = config_with_pushed(parse_config(config_text(tmp_path)))
    model = StationModel(config)
    out = model.startup([], T0)
    energy = 100.0
    out += run(model, [reading(T0 + i, energy, 0.0) for i in range(5)])
    for i in range(200):  # charging at 32 A from T0 + 5
        energy += 230.0 * 32 / 3.6e6
        out += run(model, [reading(T0 + 5 + i, energy, 32.0)])
    ledger = await Ledger.open(
        tmp_path / "ledger.db", gateway_id="gw", key=GatewayKey.generate(), commit_interval_s=0.01
    )
    try:
        desk = TariffDesk(config, ledger, model, clock=lambda: T0 + 205)
        pushed = entry(local(T0 + 300))
        reply = await desk.tariff({"tariff": pushed, "command_id": "t-1"})
        assert reply["ok"] is True, reply
        (event,) = await ledger.find("event")
        body = decode_body("event", event.body)
        assert body.event == "tariff_pushed" and body.details["sha256"] == entry_sha256(
            load_pushed(str(tmp_path))[0]
        )
        again = await desk.tariff({"tariff": pushed})
        assert again["ok"] is False and "already has a version from" in again["error"]
    finally:
        await ledger.close()
    for i in range(200, 400):  # half the current after the push: the split must be read there
        energy += 230.0 * 16 / 3.6e6
        out += run(model, [reading(T0 + 5 + i, energy, 16.0)])
    out += run(model, [reading(T0 + 405 + i, energy, 0.0) for i in range(200)])
    (order,) = of(out, "charge_order", AC)
    details = order.body["charge_details"]
    assert [d["elec_price_yuan_per_kwh"] for d in details] == ["0.6200", "1.0000"]
    assert details[0]["end_ts"] == details[1]["start_ts"] == "2023-11-14T22:18:20.000Z"
    # 200 s at 7.36 kW, 96 s at 3.68 kW to the change: 0.507 kWh (0.51); 0.613 at the end (0.61);
    # details are the differences of the rounded cumulatives (a straight line from start to end
    # would have put 0.45 before the change)
    assert [d["energy_kwh"] for d in details] == ["0.51", "0.10"]
    assert order.body["energy_kwh"] == round(200 * 230.0 * 48 / 3.6e6, 3)
    restarted = config_with_pushed(parse_config(config_text(tmp_path)))
    assert [t.valid_from for t in restarted.tariffs] == [None, local(T0 + 300)]
    fresh = StationModel(restarted)
    fresh.startup([], T0)
    cm = fresh.connectors[AC]
    assert tariff_in_force(cm, T0) == "std flat 0.62+0.8"
    assert tariff_in_force(cm, T0 + 301) == f"std flat 1.0+0.8 (from {local(T0 + 300)})"
    assert connector_row(cm, T0)["tariff"] == "std flat 0.62+0.8"


def test_a_damaged_file_leaves_the_config_tariffs(tmp_path: Path) -> None:
    pushed_path(str(tmp_path)).write_text("{not json")
    config = config_with_pushed(parse_config(config_text(tmp_path)))
    assert [t.valid_from for t in config.tariffs] == [None]


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CommandHandler, Platform, Ledger]]:
    platform = Platform()
    path = tmp_path / "evgw.toml"
    path.write_text(config_text(tmp_path, STATION), "utf-8")
    monkeypatch.setenv("EVGW_CONFIG", str(path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    config = parse_config(path.read_text())
    ledger = await Ledger.open(
        tmp_path / "ledger.db", gateway_id="gw", key=GatewayKey.generate(), commit_interval_s=0.01
    )
    status_socket.register_handler(
        "tariff", TariffDesk(config, ledger, StationModel(config)).tariff
    )
    server = StatusServer(tmp_path / "status.sock", dict)
    await server.start()
    conf = mqtt_settings(1883, None, command_public_key_pem=platform.public_pem)
    try:
        yield CommandHandler(conf, ledger, NoPublish(), time.time), platform, ledger  # type: ignore[arg-type]
    finally:
        await server.close()
        await ledger.close()


async def send(handler: CommandHandler, payload: bytes) -> dict[str, Any]:
    reply = await handler.handle(f"{handler.settings.base_topic}/cmd/tariff", payload)
    assert reply is not None
    return json.loads(reply.payload)


async def test_tariff_command(
    served: tuple[CommandHandler, Platform, Ledger], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    handler, platform, ledger = served
    soon = local(time.time() + 3600)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    refused = [
        (platform.command("tariff", "t1", {"tariff": entry(soon)}, key=ec.generate_private_key(ec.SECP256R1())), "not signed by the platform's configured key"),
        (platform.command("tariff", "t2", {"tariff": entry(soon)}, ts=stale.strftime("%Y-%m-%dT%H:%M:%S.000Z")), "from the gateway clock"),
        (platform.command("tariff", "t3", {"tariff": entry(soon, elec=-1)}), "tariff.periods[0].elec_price: Expected `float` >= 0.0"),
        (platform.command("tariff", "t4", {"tariff": entry(soon, elec=0.62001)}), "at most 4 decimals, found 0.62001"),
        (platform.command("tariff", "t5", {"tariff": "std"}), "bad arguments for tariff"),
    ]  # fmt: skip
    for payload, reason in refused:
        reply = await send(handler, payload)
        assert reply["ok"] is False and reason in reply["error"], (reason, reply)
    assert not pushed_path(str(tmp_path)).exists()
    assert [r.body["event"] for r in await ledger.find("event")] == ["mqtt_command_refused"] * 1
    reply = await send(handler, platform.command("tariff", "t6", {"tariff": entry(soon)}))
    assert reply["ok"] is True and reply["result"]["valid_from"] == soon
    assert [t.valid_from for t in load_pushed(str(tmp_path))] == [soon]


PERIOD = st.fixed_dictionaries(
    {},
    optional={
        "start": st.sampled_from(["00:00", "08:00", "25:00", "x", ""]),
        "type": st.sampled_from(["flat", "peak", "nope"]),
        "elec_price": st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5)),
        "service_price": st.one_of(st.floats(), st.none()),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tariff=st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.sampled_from(["std", "other", "", "x" * 40]),
                "valid_from": st.sampled_from(
                    ["2099-01-01 00:00:00", "2001-01-01 00:00:00", "soon"]
                ),
                "periods": st.lists(PERIOD, max_size=3),
                "default": st.booleans(),
                "extra": st.integers(),
            },
        ),
        st.text(max_size=10),
        st.lists(st.integers(), max_size=2),
    )
)
async def test_tariff_args_fuzz(
    served: tuple[CommandHandler, Platform, Ledger], tmp_path: Path, tariff: Any
) -> None:
    """Any signed tariff args: a reply, never an exception; a refusal keeps nothing."""
    handler, platform, _ledger = served
    before = load_pushed(str(tmp_path))
    reply = await send(
        handler, platform.command("tariff", f"f-{time.monotonic_ns()}", {"tariff": tariff})
    )
    after = load_pushed(str(tmp_path))
    if reply["ok"]:
        assert len(after) == len(before) + 1 and after[-1].valid_from == tariff["valid_from"]
    else:
        assert reply["error"] and after == before


def test_status_shows_the_tariff_column(tmp_path: Path) -> None:
    from agent.commands.status import render

    model = StationModel(config_with_pushed(parse_config(config_text(tmp_path))))
    model.startup([], T0)
    text = render({"connectors": [connector_row(c, T0) for c in model.connectors.values()]})
    header = next(line for line in text.splitlines() if "connector" in line and "tariff" in line)
    assert header.split()[-1] == "tariff"
    assert text.count("std flat 0.62+0.8") == len(model.connectors)
