"""T/CEC 102 envelope codec: round trips, tampering, every error path of open, and the CLI."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from agent.cli import main
from agent.uplink.cec.codec import (
    CecCodecError,
    CecSecrets,
    SeqExhausted,
    SeqGenerator,
    cec_timestamp,
    decode_business,
    decrypt_data,
    encode_business,
    encrypt_data,
    open_envelope,
    open_request,
    open_response,
    request_sig,
    response_sig,
    seal_request,
    seal_response,
)

SECRETS = CecSecrets(
    data_secret="a2164ada0026ccf7", data_iv="82c91325e74bef0f", sig_secret="9af2e7b2d7562ad5"
)
KEY_AS_IV = CecSecrets(
    data_secret="1234567890abcdef", data_iv="1234567890abcdef", sig_secret="SIGSECRET0000001"
)
OPERATOR = "MA01H3BQ2"


def test_round_trip_ascii_and_chinese() -> None:
    for secrets in (SECRETS, KEY_AS_IV):
        for text in ('{"OperatorID":"MA01H3BQ2"}', '{"StationName":"深圳福田站"}'):
            plain = text.encode("utf-8")
            assert decrypt_data(encrypt_data(plain, secrets), secrets) == plain


def test_exact_block_multiple_gets_a_full_padding_block() -> None:
    plain = b"0123456789abcdef" * 2
    raw = base64.b64decode(encrypt_data(plain, SECRETS))
    assert len(raw) == 48
    assert decrypt_data(encrypt_data(plain, SECRETS), SECRETS) == plain


def test_matches_openssl() -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    plain = '{"Total":1,"名":"站"}'.encode()
    out = (
        subprocess.run(
            [
                openssl,
                "enc",
                "-aes-128-cbc",
                "-K",
                SECRETS.data_secret.encode().hex(),
                "-iv",
                SECRETS.data_iv.encode().hex(),
                "-base64",
                "-A",
            ],
            input=plain,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    assert encrypt_data(plain, SECRETS) == out


def test_wrapped_base64_still_decrypts_and_sig_uses_original() -> None:
    env = seal_request(
        b'{"A":"' + b"x" * 100 + b'"}',
        operator_id=OPERATOR,
        timestamp="20240101120000",
        seq="0001",
        secrets=SECRETS,
    )
    data = env["Data"]
    wrapped = "\r\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    assert decrypt_data(wrapped, SECRETS).startswith(b'{"A"')
    env2 = dict(
        env,
        Data=wrapped,
        Sig=request_sig(OPERATOR, wrapped, "20240101120000", "0001", SECRETS.sig_secret),
    )
    assert open_request(env2, SECRETS).plaintext == decrypt_data(data, SECRETS)


def test_request_round_trip_and_sig_case() -> None:
    env = seal_request(
        b'{"X":1}', operator_id=OPERATOR, timestamp="20240101120000", seq="0007", secrets=SECRETS
    )
    assert set(env) == {"OperatorID", "Data", "TimeStamp", "Seq", "Sig"}
    assert env["Sig"] == env["Sig"].upper() and len(env["Sig"]) == 32
    opened = open_request(env, SECRETS)
    assert (opened.operator_id, opened.timestamp, opened.seq, opened.plaintext) == (
        OPERATOR,
        "20240101120000",
        "0007",
        b'{"X":1}',
    )
    lower = dict(env, Sig=env["Sig"].lower())
    assert open_request(lower, SECRETS).plaintext == b'{"X":1}'
    with pytest.raises(CecCodecError, match="lowercase hex") as err:
        open_request(lower, SECRETS, accept_lowercase_sig=False)
    assert err.value.ret == 4001


def test_response_round_trip_forms() -> None:
    env = seal_response(0, "", b'{"Status":0}', SECRETS)
    assert open_response(env, SECRETS).plaintext == b'{"Status":0}'
    empty = seal_response(4002, "Token错误", None, SECRETS)
    assert empty["Data"] == "" and empty["Sig"] == response_sig(
        4002, "Token错误", "", SECRETS.sig_secret
    )
    opened = open_envelope(json.loads(json.dumps(empty)), SECRETS)
    assert (opened.ret, opened.msg, opened.plaintext) == (4002, "Token错误", None)
    as_string = dict(env, Ret="0")
    assert open_response(as_string, SECRETS).ret == 0
    null_msg = {
        "Ret": 0,
        "Msg": None,
        "Data": "",
        "Sig": response_sig(0, "", "", SECRETS.sig_secret),
    }
    assert open_response(null_msg, SECRETS).msg == ""


@pytest.mark.parametrize(
    ("mutate", "problem", "text"),
    [
        (lambda e: e.pop("Seq"), "envelope", "Seq is missing"),
        (
            lambda e: e.update(TimeStamp=20240101120000),
            "envelope",
            "TimeStamp is not a non-empty string",
        ),
        (lambda e: e.update(Data=e["Data"][:-4] + "AAAA"), "sig", "expected"),
        (lambda e: e.update(OperatorID="MA01H3BQ3"), "sig", "SigSecret is wrong"),
    ],
)
def test_tampering_is_caught(mutate, problem: str, text: str) -> None:  # type: ignore[no-untyped-def]
    env = seal_request(
        b'{"X":1}', operator_id=OPERATOR, timestamp="20240101120000", seq="0001", secrets=SECRETS
    )
    mutate(env)
    with pytest.raises(CecCodecError, match=text) as err:
        open_request(env, SECRETS)
    assert err.value.problem == problem


def _resigned(data: str) -> dict[str, str]:
    return {
        "OperatorID": OPERATOR,
        "Data": data,
        "TimeStamp": "20240101120000",
        "Seq": "0001",
        "Sig": request_sig(OPERATOR, data, "20240101120000", "0001", SECRETS.sig_secret),
    }


def test_every_data_error_path() -> None:
    cases = {
        "base64": "not*base64!",
        "length": base64.b64encode(b"short").decode(),
        "padding": encrypt_data(
            b'{"X":1}', CecSecrets("bbbbbbbbbbbbbbbb", SECRETS.data_iv, SECRETS.sig_secret)
        ),
    }
    for problem, data in cases.items():
        with pytest.raises(CecCodecError) as err:
            open_request(_resigned(data), SECRETS)
        assert err.value.problem == problem and err.value.ret == 4003
    with pytest.raises(CecCodecError, match="not UTF-8") as err:
        decode_business(decrypt_data(encrypt_data(b"\xff\xfe", SECRETS), SECRETS))
    assert err.value.problem == "utf8"
    with pytest.raises(CecCodecError) as err:
        decode_business(b"{not json")
    assert err.value.problem == "json"
    with pytest.raises(CecCodecError, match="Ret is missing"):
        open_response({"Msg": "", "Data": "", "Sig": "00"}, SECRETS)


def test_business_json_keeps_decimals_and_escapes() -> None:
    raw = encode_business({"TotalPower": Decimal("12.50"), "Name": "站", "N": 3})
    assert raw == b'{"TotalPower":12.50,"Name":"\\u7ad9","N":3}'
    assert decode_business(raw) == {"TotalPower": Decimal("12.50"), "Name": "站", "N": 3}
    assert encode_business({"E": "😀"}) == b'{"E":"\\ud83d\\ude00"}'


def test_secrets_and_seq() -> None:
    with pytest.raises(ValueError, match="data_secret must be exactly 16 bytes"):
        CecSecrets("short", "1234567890abcdef", "x")
    assert cec_timestamp(0) == "19700101080000"
    gen = SeqGenerator()
    assert gen.next(10.2) == ("19700101080010", "0001")
    assert gen.next(10.9) == ("19700101080010", "0002")
    assert gen.next(11.0) == ("19700101080011", "0001")
    for _ in range(9998):
        gen.next(11.5)
    with pytest.raises(SeqExhausted):
        gen.next(11.6)


# --- evgw cec seal|open --------------------------------------------------------------------


def run_cli(
    argv: list[str],
    stdin: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, str]:
    class _In:
        buffer = __import__("io").BytesIO(stdin)

    monkeypatch.setattr(sys, "stdin", _In)
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


FLAGS = [
    "--data-secret",
    SECRETS.data_secret,
    "--data-iv",
    SECRETS.data_iv,
    "--sig-secret",
    SECRETS.sig_secret,
]


def test_cli_seal_then_open(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = b'{ "OperatorID" : "MA01H3BQ2",  "OperatorSecret":"x"}'  # odd spacing kept as given
    rc, out, _ = run_cli(
        [
            "cec",
            "seal",
            "--operator-id",
            OPERATOR,
            "--timestamp",
            "20240101120000",
            "--seq",
            "0003",
            *FLAGS,
        ],
        plain,
        capsys,
        monkeypatch,
    )
    assert rc == 0
    env = json.loads(out)
    assert env == seal_request(
        plain, operator_id=OPERATOR, timestamp="20240101120000", seq="0003", secrets=SECRETS
    )
    rc, out, err = run_cli(["cec", "open", *FLAGS], out.encode(), capsys, monkeypatch)
    assert rc == 0 and out.encode() == plain + b"\n"
    assert "Sig OK" in err and "Seq 0003" in err


def test_cli_open_says_what_is_wrong(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = seal_request(
        b"{}", operator_id=OPERATOR, timestamp="20240101120000", seq="0001", secrets=SECRETS
    )
    bad = json.dumps(dict(env, Sig="0" * 32)).encode()
    rc, _, err = run_cli(["cec", "open", *FLAGS], bad, capsys, monkeypatch)
    assert rc == 1
    assert f"expected {env['Sig']}, got {'0' * 32}" in err and "Ret 4001" in err
    rc, _, err = run_cli(["cec", "open", *FLAGS], b"{oops", capsys, monkeypatch)
    assert rc == 1 and "envelope is not JSON" in err
    wrong_key = ["--data-secret", "bbbbbbbbbbbbbbbb", *FLAGS[2:]]
    rc, _, err = run_cli(["cec", "open", *wrong_key], json.dumps(env).encode(), capsys, monkeypatch)
    assert rc == 1 and "bad PKCS#7 padding" in err
    resp = json.dumps(seal_response(4002, "Token错误", None, SECRETS)).encode()
    rc, _, err = run_cli(["cec", "open", *FLAGS], resp, capsys, monkeypatch)
    assert rc == 0 and "Ret 4002" in err and "Data is empty" in err


def test_cli_secrets_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(
        f'[cec]\ndata_secret = "{SECRETS.data_secret}"\ndata_iv = "{SECRETS.data_iv}"\n'
        f'sig_secret = "{SECRETS.sig_secret}"\n'
    )
    path.chmod(0o644)
    rc, _, err = run_cli(
        ["cec", "seal", "--operator-id", OPERATOR, "--secrets", str(path)],
        b"{}",
        capsys,
        monkeypatch,
    )
    assert rc == 1 and f"chmod 600 {path}" in err
    path.chmod(0o600)
    rc, out, _ = run_cli(
        ["cec", "seal", "--operator-id", OPERATOR, "--secrets", str(path)],
        b"{}",
        capsys,
        monkeypatch,
    )
    assert rc == 0 and open_request(json.loads(out), SECRETS).plaintext == b"{}"
    rc, _, err = run_cli(["cec", "seal", "--operator-id", OPERATOR], b"{}", capsys, monkeypatch)
    assert rc == 2 and "missing data_secret" in err
    with pytest.raises(SystemExit) as exit_:
        main(["cec", "seal", "--bogus"])
    assert exit_.value.code == 2
