"""The ``table`` format of ``evgw can decode``: one line per run of a cyclic message, the
session digest and the frame counts as aligned tables.

GB/T 27930 repeats most messages every 10–500 ms, so a session is thousands of near-identical
lines. Consecutive copies of one message from one side whose non-numeric fields stay the same
become one line with the count, the time they span and each numeric field's range; a change
of state (a bit, a phase flag) or a pause of more than :data:`GAP_S` starts a new line.
Status bits that are ``NORMAL`` are counted rather than listed, lines are wrapped under 160
characters, and currents are shown as positive charging currents, as ``evgw replay`` writes
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from drivers.gbt27930.pipeline import Decoded
from drivers.gbt27930.report import direction, to_fields

GAP_S: Final = 2.0
"""A longer silence between two copies of a message starts a new line."""
MAX_LINE: Final = 159
INDENT: Final = " " * 28
NONE: Final = "—"
QUIET: Final = "NORMAL"
"""Status bits in this state are counted, not listed (``--format jsonl`` lists them)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:.6g}"


def shown_fields(d: Decoded) -> dict[str, Any]:
    """The fields worth a column: no raw bytes, no absent values, currents positive."""
    out: dict[str, Any] = {}
    for k, v in to_fields(d.message).items():
        if k == "raw" or v is None:
            continue
        if "current" in k and _is_number(v):
            v = abs(v)
        if isinstance(v, list) and len(v) > 6:
            v = f"[{len(v)} values]"
        out[k] = v
    return out


@dataclass(slots=True)
class Run:
    """Consecutive copies of one message from one side with the same state."""

    first: Decoded
    state: tuple[tuple[str, str], ...]
    fields: dict[str, Any]
    last_ts: float
    count: int = 1
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, d: Decoded, values: dict[str, Any]) -> None:
        self.count += 1
        self.last_ts = d.ts
        for k, v in values.items():
            if _is_number(v):
                low, high = self.ranges.get(k, (v, v))
                self.ranges[k] = (min(low, v), max(high, v))

    def text(self, t0: float) -> str:
        parts = []
        quiet = 0
        for k, v in self.fields.items():
            if v == QUIET:
                quiet += 1
            elif k in self.ranges and self.ranges[k][0] != self.ranges[k][1]:
                low, high = self.ranges[k]
                parts.append(f"{k}={_num(low)}…{_num(high)}")
            else:
                parts.append(f"{k}={_num(v) if _is_number(v) else v}")
        if quiet:
            bits = f"{quiet} bit" + ("s" if quiet > 1 else "")
            parts.append(f"(other {bits} {QUIET})" if parts else f"({bits}, all {QUIET})")
        span = self.last_ts - self.first.ts
        count = f"×{self.count} over {span:.1f} s  " if span >= 0.05 else f"×{self.count}  "
        count = count if self.count > 1 else ""
        head = f"{self.first.ts - t0:10.3f}  {direction(self.first.sa)}  {self.first.name:<7} "
        return (head + count + " ".join(parts)).rstrip()


def _state(values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(v)) for k, v in values.items() if not _is_number(v))


def collapse(messages: list[Decoded]) -> list[Run]:
    """The runs of ``messages``, in the order each began."""
    runs: list[Run] = []
    open_runs: dict[tuple[str, int], Run] = {}
    for d in messages:
        values = shown_fields(d)
        state = _state(values)
        key = (d.name, d.sa)
        run = open_runs.get(key)
        if run is not None and run.state == state and d.ts - run.last_ts <= GAP_S:
            run.add(d, values)
            continue
        ranges = {k: (v, v) for k, v in values.items() if _is_number(v)}
        run = Run(d, state, values, d.ts, ranges=ranges)
        open_runs[key] = run
        runs.append(run)
    return runs


def wrap(line: str) -> list[str]:
    """``line`` cut at spaces into lines of at most :data:`MAX_LINE` characters."""
    lines: list[str] = []
    while len(line) > MAX_LINE:
        cut = line.rfind(" ", len(INDENT) + 1, MAX_LINE)
        cut = cut if cut > len(INDENT) else MAX_LINE
        lines.append(line[:cut].rstrip())
        line = INDENT + line[cut:].lstrip()
    return [*lines, line]


def _cell(v: Any) -> str:
    if v is None or v == [] or v == {}:
        return NONE
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
    return str(v)


def digest_header(s: dict[str, Any]) -> str:
    """The first line of a session's digest: id, protocol, how it ended, how long."""
    duration = s["duration_s"]
    length = "duration unknown (timestamps constant)" if duration is None else f"{duration:.1f} s"
    return (
        f"session {_cell(s['session_id'])}: protocol {_cell(s['protocol_version'])}, "
        f"end {_cell(s['end_reason'])}, {length}"
    )


def digest_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """One session (a ``session_record``) as label/value rows."""
    v = s["vehicle"] or {}
    stop = s["stop_reason"] or {}
    vehicle = (
        f"VIN {_cell(v.get('vin'))}, {_cell(v.get('battery_type'))}, "
        f"{_cell(v.get('rated_capacity_ah'))} Ah, {_cell(v.get('rated_voltage_v'))} V"
    )
    current = s["current_a"]
    peak = None if current is None else max(abs(current["min"]), abs(current["max"]))
    stopped = (
        f"{_cell(stop.get('initiator'))} (BST {_cell(stop.get('bst'))}, "
        f"CST {_cell(stop.get('cst'))})"
    )
    return [
        ("vehicle", vehicle),
        ("SOC", f"{_cell(s['soc_start_pct'])} → {_cell(s['soc_end_pct'])} %"),
        ("energy", f"{_cell(s['energy_kwh'])} kWh in {_cell(s['charge_minutes'])} min"),
        ("current", NONE if peak is None else f"charging current up to {peak:.1f} A"),
        ("stop", stopped),
        ("errors", _cell([f"{e['side']} {_cell(e['timeouts'])}" for e in s["errors"]])),
        ("timeouts", _cell([f"{t['phase']} after {t['silent_s']:.1f} s" for t in s["timeouts"]])),
        ("flags", _cell(s["flags"])),
    ]


def write_rows(rows: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        for line in wrap(f"  {label:<{width}}  {value}"):
            out.write(line + "\n")


def message_line(d: Decoded, t0: float) -> list[str]:
    """One message on its own (the live view of ``evgw can sniff``), wrapped."""
    values = shown_fields(d)
    return wrap(Run(d, _state(values), values, d.ts).text(t0))


def write_table(messages: list[Decoded], t0: float, out: TextIO) -> None:
    for run in collapse(messages):
        for line in wrap(run.text(t0)):
            out.write(line + "\n")


def write_counts(record: dict[str, Any], bad_lines: int, out: TextIO) -> None:
    """The frame counts and anomalies of a ``pipeline_record`` as rows."""
    frames = record["frames"]
    rows = [("frames", ", ".join(f"{k} {v}" for k, v in frames.items()))]
    for kind, counts in record["anomalies"].items():
        rows.append((f"{kind} anomalies", _cell(counts)))
    if record["foreign_ids"]:
        rows.append(("foreign ids", _cell(record["foreign_ids"])))
    if bad_lines:
        rows.append(("unreadable log lines skipped", str(bad_lines)))
    write_rows(rows, out)
