"""`evgw ledger verify` on hostile JSON Lines: never a traceback, always exit 1 with a message.

Lines are drawn from three sources: arbitrary JSON (deep nesting, huge numbers, odd
strings), real export lines with one field replaced by anything, and raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.ledger import GatewayKey, Ledger
from agent.ledger.export import export_lines, open_for_reading
from tests.ledger.helpers import record

KEY = GatewayKey.generate()
WORK = Path(tempfile.mkdtemp(prefix="evgw-fuzz-"))
PUB = WORK / "gw.pub"
PUB.write_text(KEY.public_pem)


async def _export() -> list[bytes]:
    ledger = await Ledger.open(WORK / "l.db", gateway_id="GW1", key=KEY, integrity_delay_s=None)
    for n in range(6):
        await ledger.append(record(("meter_sample", "charge_order", "event")[n % 3], n=n))
    await ledger.close()
    conn = open_for_reading(WORK / "l.db")
    try:
        return list(export_lines(conn))
    finally:
        conn.close()


GOOD = asyncio.run(_export())
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = json.loads(draw(st.sampled_from(GOOD)))
    target = obj
    inner = next(iter(obj.values())) if len(obj) == 1 else None
    if isinstance(inner, dict):
        target = inner
    field = draw(st.sampled_from(sorted(target)))
    target[field] = draw(anything)
    return json.dumps(obj).encode()


def deep(depth: int) -> bytes:
    return b'{"seq":1,"body":' + b"[" * depth + b"]" * depth + b"}"


lines = st.lists(
    mutated()
    | anything.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=60)
    | st.sampled_from(GOOD)
    | st.sampled_from([deep(5000), b'{"seq":' + b"9" * 5000 + b"}", b"\xff\xfe{", b"{" * 100]),
    min_size=1,
    max_size=12,
)


def verify(data: bytes) -> tuple[int, str]:
    path = WORK / "in.jsonl"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["ledger", "verify", str(path), "--pubkey", str(PUB)])
    return rc, out.getvalue() + err.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_hostile_lines_are_named_never_a_traceback(chosen: list[bytes]) -> None:
    data = b"\n".join(x.replace(b"\n", b" ") for x in chosen) + b"\n"
    rc, text = verify(data)
    assert "Traceback" not in text
    if data.strip() == b"\n".join(GOOD).strip():
        assert rc == 0, text
    else:
        assert rc in (0, 1), text
        assert text.startswith(("OK:", "FAILED:", "evgw:")), text


def test_the_clean_export_still_verifies() -> None:
    rc, text = verify(b"\n".join(GOOD) + b"\n")
    assert rc == 0 and text.startswith("OK: 6 records"), text
