"""Fixtures of the uplink tests: a real ledger, the T/CEC receiver, a test PKI, record makers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.ledger import GatewayKey, Ledger
from agent.records.bodies import (
    AlarmBody,
    BmsProcessBody,
    ChargeOrderBody,
    ConnectorInfoBody,
    ConnectorStatusBody,
    EquipmentInfoBody,
    EventBody,
    IdentityBody,
    MeterSampleBody,
    StationInfoBody,
    body_to_dict,
)
from agent.records.envelope import Record, iso_ts
from agent.uplink.cec.codec import CecSecrets
from sim.platform import PlatformServer, PlatformSettings

OPERATOR_ID = "MA01H3BQ2"
OPERATOR_SECRET = "opsecret00000001"
SECRETS = CecSecrets("a2164ada0026ccf7", "82c91325e74bef0f", "9af2e7b2d7562ad5")
STATION = "ST0001"
T0 = 1_735_700_000.0  # 2025-01-01 10:53:20 CST


class FakeClock:
    """Wall clock the tests move by hand (shared by client and receiver)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def gateway_key() -> GatewayKey:
    return GatewayKey.generate()


@pytest.fixture
async def ledger(tmp_path: Path, gateway_key: GatewayKey) -> AsyncIterator[Ledger]:
    led = await Ledger.open(
        tmp_path / "ledger.sqlite",
        gateway_id="gw-test",
        key=gateway_key,
        commit_interval_s=0.01,
    )
    yield led
    await led.close()


def platform_settings(tmp_path: Path, **overrides: object) -> PlatformSettings:
    values: dict[str, object] = {
        "operators": {OPERATOR_ID: OPERATOR_SECRET},
        "secrets": SECRETS,
        "db_path": tmp_path / "platform.sqlite",
    }
    values.update(overrides)
    return PlatformSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def platform(tmp_path: Path, clock: FakeClock) -> Iterator[PlatformServer]:
    server = PlatformServer(platform_settings(tmp_path), clock).start()
    yield server
    server.stop()


# --- records -------------------------------------------------------------------------------


def ts(offset_s: float = 0.0) -> str:
    return iso_ts(T0 + offset_s)


def bms_body(session: str = "SESSION-1", soc: int = 50) -> BmsProcessBody:
    return BmsProcessBody(
        session_id=session, demand_voltage_v=400.0, demand_current_a=100.0,
        measured_voltage_v=398.46, measured_current_a=-99.04, soc_pct=soc,
        max_cell_voltage_v=3.456, max_cell_voltage_no=17, min_cell_voltage_v=None,
        max_temp_c=31, max_temp_probe_no=2, min_temp_c=25, min_temp_probe_no=5,
        charger_output_voltage_v=399.0, charger_output_current_a=99.5,
        max_allowed_charge_current_a=250.0, max_allowed_cell_voltage_v=3.65,
        max_allowed_temp_c=55, bms_protocol_version="V1.1", rated_capacity_ah=150.4,
        vin="LSVAU2180N2183294", elapsed_minutes=12, session_start_ts=ts(),
    )  # fmt: skip


def record(kind: str, body: object, connector: str | None = "C1", offset_s: float = 0.0) -> Record:
    return Record(
        kind=kind,
        ts=ts(offset_s),
        station_id=STATION,
        equipment_id="EQ1" if connector else None,
        connector_id=connector,
        body=body_to_dict(body),  # type: ignore[arg-type]
    )


def status_record(
    status: int = 3, connector: str = "C1", offset_s: float = 0.0, energy: float = 1.5
) -> Record:
    body = ConnectorStatusBody(
        status=status, phase="charging" if status == 3 else None, voltage_v=398.6, current_a=99.5,
        power_kw=39.7, energy_kwh=1234.5, soc_pct=55, session_id="SESSION-1" if status == 3 else None,
        session_start_ts=ts() if status == 3 else None, charge_energy_kwh=energy,
    )  # fmt: skip
    return record("connector_status", body, connector, offset_s)


def order_record(session: str = "SESSION-1", end_offset_s: float = 3600.0) -> Record:
    body = ChargeOrderBody(
        session_id=session, start_ts=ts(), end_ts=ts(end_offset_s), meter_energy_start_kwh=1000.0,
        meter_energy_end_kwh=1030.125, energy_kwh=30.125, soc_start_pct=20, soc_end_pct=80,
        duration_s=int(end_offset_s), stop_reason=2, stop_bits={"bst_soc_reached": 1},
        total_money_yuan=Decimal("45.50"), elec_money_yuan=Decimal("30.00"),
        service_money_yuan=Decimal("15.50"),
    )  # fmt: skip
    return record("charge_order", body, "C1", end_offset_s)


def alarm_record(code: int = 101, status: str = "raised", with_bms: bool = True) -> Record:
    body = AlarmBody(
        code=code, type=2 if 100 < code < 200 else 1, level=3, status=status,  # type: ignore[arg-type]
        message="BMS communication timeout", bms=bms_body() if with_bms else None,
    )  # fmt: skip
    return record("alarm", body)


def identity_record() -> Record:
    station = StationInfoBody(
        name="福田测试站", operator_id=OPERATOR_ID, equipment_owner_id=OPERATOR_ID, area_code="440304",
        address="深圳市福田区测试路1号", service_tel="0755-12345678", lng=114.0579, lat=22.5431,
        construction=4, park_nums=4,
    )  # fmt: skip
    connector = ConnectorInfoBody(
        connector_id="C1", name="Gun 1", connector_type=4, voltage_upper_v=750, voltage_lower_v=200,
        rated_voltage_v=750, current_a=250, power_kw=120.0,
    )  # fmt: skip
    equipment = EquipmentInfoBody(
        equipment_id="EQ1", name="DC charger 1", manufacturer_id="MA5FXXX12", equipment_type=1,
        power_kw=120.0, connectors=(connector,),
    )  # fmt: skip
    return record(
        "identity", IdentityBody(station=station, equipments=(equipment,)), connector=None
    )


def event_record(code: int | None = 7001) -> Record:
    body = EventBody(
        event="distribution_fault",
        message="feeder breaker open",
        tcec_event_type=6 if code else None,
        tcec_event_code=code,
    )
    return record("event", body, connector=None)


def meter_record() -> Record:
    return record("meter_sample", MeterSampleBody(meter_id="M1", power_kw=40.0, energy_kwh=1234.5))


# --- a test PKI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing here: trusting it must fail the handshake."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def _leaf(
    name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )  # fmt: skip
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("evgw test CA")
    other, _ = _ca("some other CA")
    server, server_key = _leaf("localhost", ca, ca_key, server=True)
    client, client_key = _leaf("gateway-ST0001", ca, ca_key, server=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "other-ca.pem").write_bytes(other.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=directory / "client.pem",
        client_key=_write_key(client_key, directory / "client.key"),
        other_ca=directory / "other-ca.pem",
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
