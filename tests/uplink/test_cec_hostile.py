"""The T/CEC client against a hostile front (sim/platform_hostile.py) before the real
receiver: replayed genuine answers, huge and dripping answers, nesting and number bombs.

Nothing counts as delivered that the receiver did not accept for that record; every bad
answer is refused, counted, retried — never a crash."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.ledger import GatewayKey, Ledger
from agent.records.envelope import Record
from agent.service.status_socket import query_status
from agent.uplink.cec.client import Unusable
from agent.uplink.cec.codec import CecCodecError, decode_business, parse_envelope
from agent.uplink.cec.token import TokenUnavailable
from agent.uplink.cec.uplink import CecUplink
from sim.platform import PlatformServer
from sim.platform_hostile import HostileFront
from tests.uplink.conftest import (
    OPERATOR_ID,
    OPERATOR_SECRET,
    SECRETS,
    STATION,
    FakeClock,
    order_record,
    platform_settings,
    status_record,
)
from tests.uplink.test_cec_uplink import make_settings, make_uplink

ORDER = "notification_charge_order_info"
STATUS = "notification_stationStatus"


@pytest.fixture
def echoing(tmp_path: Path, clock: FakeClock) -> Iterator[PlatformServer]:
    """A receiver that echoes TimeStamp/Seq inside its signed reply Data."""
    server = PlatformServer(platform_settings(tmp_path, echo_seq=True), clock).start()
    yield server
    server.stop()


def front_for(server: PlatformServer, **options: float) -> HostileFront:
    return HostileFront(server.base_url, **options).start()  # type: ignore[arg-type]


def on_connector(rec: Record, n: int) -> Record:
    return msgspec.structs.replace(rec, connector_id=f"C{n}")


async def until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def drain_through(uplink: CecUplink, front: HostileFront, attacks: int) -> None:
    """Drain while the front misbehaves until it served ``attacks`` answers, then heal it."""
    task = asyncio.create_task(uplink.drain_once())
    await until(lambda: len(front.served()) >= attacks)
    assert not task.done(), "the batch was acknowledged on answers the receiver never gave"
    front.set_mode("forward")
    await asyncio.wait_for(task, 20)


async def test_replayed_order_answers_advance_nothing(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    front = front_for(platform)
    try:
        uplink, _ = make_uplink(front, ledger, clock, lanes_in_parallel=8)  # type: ignore[arg-type]
        async with uplink:
            first = await ledger.append(order_record("SESSION-0"))
            assert await uplink.drain_once()
            assert front.captured(ORDER) is not None  # a genuine Ret 0 answer, Sig and all
            front.set_mode("replay", ORDER)
            others = [
                await ledger.append(on_connector(order_record(f"SESSION-{n}"), n))
                for n in range(1, 8)
            ]
            await drain_through(uplink, front, attacks=21)
            assert await ledger.cursor("cec") == others[-1].seq
        assert uplink.client.refused["binding"] >= 21
        replays = {s.interface for s in front.served("replay")}
        assert replays == {ORDER}
        rows = platform.receiver.accepted(ORDER)
        assert rows[0]["record_id"] == first.id
        assert sorted(r["record_id"] for r in rows) == sorted([first.id] + [o.id for o in others])
        assert all(r["copies"] == 1 for r in rows)  # refused answers were never forwarded
    finally:
        front.stop()


async def test_replayed_status_answers_refused_when_the_platform_echoes(
    echoing: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    front = front_for(echoing)
    try:
        uplink, _ = make_uplink(front, ledger, clock, lanes_in_parallel=8, reply_echoes_seq=True)  # type: ignore[arg-type]
        async with uplink:
            await ledger.append(status_record())
            assert await uplink.drain_once()
            front.set_mode("replay", STATUS)
            for n in range(2, 9):
                await ledger.append(status_record(connector=f"C{n}"))
            await drain_through(uplink, front, attacks=14)
        assert uplink.client.refused["binding"] >= 14
        assert "replayed" in (uplink.stats.last_error or "")
        rows = echoing.receiver.accepted(STATUS)
        assert len(rows) == 8 and all(r["copies"] == 1 for r in rows)
        assert uplink.stats.acked == 8
    finally:
        front.stop()


async def test_echo_required_but_missing_is_refused(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    uplink, _ = make_uplink(platform, ledger, clock, reply_echoes_seq=True)
    async with uplink:
        with pytest.raises(TokenUnavailable, match="echoes TimeStamp/Seq None/None"):
            await uplink.tokens.get()
    assert uplink.client.refused == {"binding": 1}


@pytest.mark.parametrize("mode", ["nest", "number"])
async def test_bombs_are_refused_and_retried(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock, mode: str
) -> None:
    front = front_for(platform)
    try:
        uplink, naps = make_uplink(front, ledger, clock)  # type: ignore[arg-type]
        rec = await ledger.append(status_record())
        async with uplink:
            await uplink.tokens.get()
            front.set_mode(mode)
            await drain_through(uplink, front, attacks=3)
        assert uplink.client.refused["envelope"] >= 3 and len(naps.delays) >= 3
        assert [r["record_id"] for r in platform.receiver.accepted()] == [rec.id]
    finally:
        front.stop()


def test_bombs_inside_data_are_codec_errors() -> None:
    for bomb in (b"[" * 100_000 + b"]" * 100_000, b'{"Status":' + b"9" * 5000 + b"}"):
        with pytest.raises(CecCodecError) as exc:
            decode_business(bomb)
        assert exc.value.problem == "json"
    with pytest.raises(CecCodecError, match="nested 50000 levels"):
        parse_envelope(b"[" * 50_000 + b"]" * 50_000)


async def test_huge_answers_are_aborted_while_streaming(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    front = front_for(platform)
    try:
        uplink, _ = make_uplink(front, ledger, clock, max_response_bytes=64 * 1024)  # type: ignore[arg-type]
        async with uplink:
            token = await uplink.tokens.get()
            for mode, needle in (("huge", "longer than 65536"), ("huge_declared", "declared")):
                front.set_mode(mode)
                with pytest.raises(Unusable, match=needle) as exc:
                    await uplink.client.post(STATUS, {}, token, None)
                assert exc.value.problem == "too_large"
        await until(lambda: len(front.served()) == 2)
        assert all(s.bytes_sent < 32 * 1024 * 1024 for s in front.served())  # not 400 MB
    finally:
        front.stop()


async def test_a_dripping_answer_never_outlives_the_deadline(
    platform: PlatformServer, ledger: Ledger, clock: FakeClock
) -> None:
    front = front_for(platform, drip_interval_s=0.05)  # fast enough for any read timeout
    try:
        uplink, _ = make_uplink(front, ledger, clock, timeout_s=0.6)  # type: ignore[arg-type]
        async with uplink:
            token = await uplink.tokens.get()
            front.set_mode("drip")
            started = time.monotonic()
            with pytest.raises(Unusable, match=r"within 0\.6 s") as exc:
                await uplink.client.post(STATUS, {}, token, None)
            elapsed = time.monotonic() - started
        assert exc.value.problem == "deadline" and 0.55 < elapsed < 1.0
        assert uplink.client.refused == {"deadline": 1}
    finally:
        front.stop()


# --------------------------------------------------------------------------- evgw run

EVGW = [sys.executable, "-m", "agent.cli"]
RSS_LIMIT_KB = 100 * 1024
DEADLINE_S = 1.5
RETRY_MAX_S = 1.0


def service_config(directory: Path, base_url: str, cec_lines: str) -> Path:
    """An evgw.toml (and its secrets and key) for one DC connector and the T/CEC uplink."""
    secrets = directory / "secrets.toml"
    secrets.write_text(
        f'[cec]\noperator_secret = "{OPERATOR_SECRET}"\ndata_secret = "{SECRETS.data_secret}"\n'
        f'data_iv = "{SECRETS.data_iv}"\nsig_secret = "{SECRETS.sig_secret}"\n'
    )
    secrets.chmod(0o600)
    GatewayKey.generate().save(directory / "gateway.key")
    config = directory / "evgw.toml"
    config.write_text(
        f"""
[gateway]
gateway_id = "gw-hostile"
operator_id = "{OPERATOR_ID}"
secrets_file = "{secrets}"
runtime_dir = "{directory}"
state_dir = "{directory}"

[station]
station_id = "{STATION}"
name = "hostile test station"
address = "深圳市福田区测试路1号"
service_tel = "0755-12345678"
construction = 4
lng = 114.0579
lat = 22.5431

[[equipment]]
equipment_id = "EQ1"
name = "DC charger 1"
equipment_type = 1
power_kw = 120.0
manufacturer_id = "MA5FXXX12"

  [[equipment.connectors]]
  connector_id = "C1"
  name = "Gun 1"
  connector_type = 4
  power_kw = 120.0
  voltage_upper_v = 750
  voltage_lower_v = 200
  current_a = 250

[[tariffs]]
id = "std"
default = true
periods = [{{ start = "00:00", type = "flat", elec_price = 0.62, service_price = 0.80 }}]

[uplinks.cec]
base_url = "{base_url}"
platform_operator_id = "MA5DA0053"
request_timeout_s = {DEADLINE_S}
retry_max_s = {RETRY_MAX_S}
{cec_lines}

[ledger]
path = "{directory}/ledger.db"
key_path = "{directory}/gateway.key"
"""
    )
    return config


async def prefill(directory: Path, records: list[Record]) -> list[str]:
    ledger = await Ledger.open(
        directory / "ledger.db",
        gateway_id="gw-hostile",
        key=GatewayKey.load(directory / "gateway.key"),
    )
    try:
        return [(await ledger.append(rec)).id for rec in records]
    finally:
        await ledger.close()


def start_service(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["RUNTIME_DIRECTORY"] = str(config.parent)
    with log.open("wb") as err:
        return subprocess.Popen(
            [*EVGW, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def cec_status(directory: Path) -> dict[str, Any]:
    return query_status(directory / "status.sock")["uplinks"]["cec"]  # type: ignore[no-any-return]


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


async def test_evgw_run_against_a_hostile_front(
    tmp_path: Path, echoing: PlatformServer, clock: FakeClock
) -> None:
    """The service under replay, a 400 MB answer, a 2 s drip and both bombs: peak RSS under
    100 MB, no attempt past its deadline, nothing acknowledged that the receiver lacks."""
    clock.advance(time.time() - clock.now)  # the service runs on the wall clock
    front = HostileFront(echoing.base_url).start()
    try:
        # a genuine answer to replay, captured through the front
        donor = tmp_path / "donor"
        donor.mkdir()
        config = service_config(tmp_path, front.base_url, "reply_echoes_seq = true")
        ids = await prefill(tmp_path, [on_connector(status_record(), n) for n in range(1, 5)])
        async with await Ledger.open(
            donor / "ledger.db", gateway_id="donor", key=GatewayKey.generate()
        ) as ledger:
            uplink = CecUplink(make_settings(front.base_url, reply_echoes_seq=True), ledger)
            await ledger.append(status_record(connector="C9"))
            async with uplink:
                assert await uplink.drain_once()
        front.set_mode("replay", STATUS)
        log = tmp_path / "evgw.log"
        proc = start_service(config, log)
        try:
            for mode, answers in (
                ("replay", 3), ("huge", 2), ("drip", 3), ("nest", 2), ("number", 2),
            ):  # fmt: skip
                front.set_mode(mode, STATUS if mode == "replay" else "")
                wait_for(lambda m=mode, n=answers: len(front.served(m)) >= n, 60, mode)
                assert proc.poll() is None, log.read_text()
            row = cec_status(tmp_path)
            delivered = {r["record_id"] for r in echoing.receiver.accepted()}
            assert not delivered & set(ids), "acknowledged on a replayed answer"
            refused = row["answers_refused"]
            assert refused["binding"] >= 3 and refused["too_large"] >= 2
            assert refused["deadline"] >= 3 and refused["envelope"] >= 4
            drips = [round(s.seconds, 2) for s in front.served("drip")]
            assert max(drips) < DEADLINE_S + 0.5, drips  # the gateway hung up at its deadline
            huge = front.served("huge")
            assert max(s.bytes_sent for s in huge) < 64 * 1024 * 1024  # not 400 MB
            front.set_mode("forward")
            wait_for(
                lambda: set(ids) <= {r["record_id"] for r in echoing.receiver.accepted()},
                30,
                "the records at the receiver",
            )
            peak = peak_rss_kb(proc.pid)
            assert peak < RSS_LIMIT_KB, f"peak RSS {peak} kB"
            assert wait_for(lambda: cec_status(tmp_path)["backlog"] == 0, 30, "an empty backlog")
        finally:
            proc.terminate()
            assert proc.wait(20) == 0
        text = log.read_text()
        assert "Traceback" not in text
        assert text.count("answer refused") < 10  # rate-limited: one line a minute per kind
        rows = echoing.receiver.accepted(STATUS)
        assert all(r["copies"] == 1 for r in rows if r["record_id"] in ids)
        print(f"peak RSS {peak} kB; refused answers {refused}; drip answers lasted {drips}")
    finally:
        front.stop()
