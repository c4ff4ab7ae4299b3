"""Small builders for GB/T 27930 test frames."""

from __future__ import annotations

import re
from pathlib import Path

from drivers.gbt27930.frames import BMS_ADDR, CHARGER_ADDR, make_id
from drivers.gbt27930.messages import SPECS_BY_NAME

BMS, CHARGER = BMS_ADDR, CHARGER_ADDR


def msg_id(name: str) -> int:
    """The 29-bit id of a single-frame message from its usual sender."""
    spec = SPECS_BY_NAME[name]
    sa, da = (CHARGER, BMS) if spec.sender == "charger" else (BMS, CHARGER)
    return make_id(spec.pf, sa, da, spec.priority)


def rts(size: int, packets: int, pgn: int, max_per_cts: int = 0xFF) -> bytes:
    return bytes([0x10, size & 0xFF, size >> 8, packets, max_per_cts]) + pgn.to_bytes(3, "little")


def cts(granted: int, nxt: int, pgn: int) -> bytes:
    return bytes([0x11, granted, nxt, 0xFF, 0xFF]) + pgn.to_bytes(3, "little")


def eoma(size: int, packets: int, pgn: int) -> bytes:
    return bytes([0x13, size & 0xFF, size >> 8, packets, 0xFF]) + pgn.to_bytes(3, "little")


def abort(pgn: int, reason: int = 0xFF) -> bytes:
    return bytes([0xFF, reason, 0xFF, 0xFF, 0xFF]) + pgn.to_bytes(3, "little")


def bam(size: int, packets: int, pgn: int) -> bytes:
    return bytes([0x20, size & 0xFF, size >> 8, packets, 0xFF]) + pgn.to_bytes(3, "little")


def dt_packets(payload: bytes) -> list[bytes]:
    """TP.DT frames for a payload, last one padded with 0xFF."""
    out = []
    for i in range(0, len(payload), 7):
        chunk = payload[i : i + 7]
        out.append(bytes([i // 7 + 1]) + chunk + b"\xff" * (7 - len(chunk)))
    return out


TP_CM_BMS = make_id(0xEC, BMS, CHARGER, 7)  # 0x1CEC56F4
TP_CM_CHARGER = make_id(0xEC, CHARGER, BMS, 7)  # 0x1CECF456
TP_DT_BMS = make_id(0xEB, BMS, CHARGER, 7)  # 0x1CEB56F4


def transfer_frames(
    ts: float, pgn: int, payload: bytes, *, spacing_s: float = 0.01
) -> list[tuple[float, int, bytes]]:
    """A complete RTS/CTS/DT…/EndOfMsgAck exchange from the BMS."""
    n = (len(payload) + 6) // 7
    frames = [
        (ts, TP_CM_BMS, rts(len(payload), n, pgn)),
        (ts + 0.001, TP_CM_CHARGER, cts(n, 1, pgn)),
    ]
    t = ts + 0.001
    for p in dt_packets(payload):
        t += spacing_s
        frames.append((t, TP_DT_BMS, p))
    frames.append((t + 0.001, TP_CM_CHARGER, eoma(len(payload), n, pgn)))
    return frames


def constant_timestamp_copy(capture: Path, target: Path, ts: str = "1703560121.000000") -> Path:
    """A copy of a candump log with every frame stamped ``ts``, as exporters that write one
    timestamp for a whole file do."""
    text = capture.read_text(encoding="ascii")
    target.write_text(re.sub(r"^\(\d+\.\d+\)", f"({ts})", text, flags=re.MULTILINE))
    return target
