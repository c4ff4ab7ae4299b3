"""The drawing of ``evgw session plot``: one charging session on a time axis.

Four panels sharing the time since the session's first sample (seconds, or minutes for a
session over three): voltage (BMS demand, BMS measured, charger output), current (the same
three, as positive charging currents), SOC, and the highest and lowest battery temperatures;
alarms and the stop request are vertical lines across all panels, labelled with their
meaning. The points come either from a CAN
capture (every merged BCL/BCS/CCS sample) or from the ``bms_process`` records of a ledger.

matplotlib is the optional extra ``evgw[plot]``: never needed on the gateway itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.errors import UserError

WIDTH_IN, HEIGHT_IN, DPI = 11.0, 9.0, 100
PANELS: Final = (
    ("voltage (V)", ("demand", "measured", "charger output"), "voltage"),
    ("current (A)", ("demand", "measured", "charger output"), "current"),
    ("SOC (%)", ("SOC",), "soc"),
    ("battery temperature (°C)", ("highest", "lowest"), "temp"),
)


@dataclass(slots=True)
class SessionSeries:
    """A session's points (seconds since its first point) and its marked moments."""

    title: str
    t_s: list[float] = field(default_factory=list)
    lines: dict[str, list[float | None]] = field(default_factory=dict)
    marks: list[tuple[float, str]] = field(default_factory=list)
    """(seconds, label): alarms raised and cleared, the stop request."""

    def add(self, t_s: float, **values: float | None) -> None:
        self.t_s.append(t_s)
        for name, value in values.items():
            self.lines.setdefault(name, []).append(None if value is None else abs(value))


def _figure() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "drawing needs matplotlib, the optional extra: pip install 'evgw[plot]'", 2
        ) from None
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _merged(marks: list[tuple[float, str]], span_s: float) -> list[tuple[float, str]]:
    """Marks closer than 2 % of the span share one line (their labels joined)."""
    merged: list[tuple[float, str]] = []
    for t_s, text in sorted(marks):
        if merged and t_s - merged[-1][0] <= 0.02 * span_s:
            if text not in merged[-1][1]:
                merged[-1] = (merged[-1][0], f"{merged[-1][1]}; {text}")
            continue
        merged.append((t_s, text))
    return merged


def draw(series: SessionSeries, out: Path) -> None:
    """Write the session's plot to ``out`` (PNG, SVG or PDF by its suffix)."""
    if len(series.t_s) < 2:
        raise UserError(f"{series.title}: fewer than two samples, nothing to draw", 1)
    figure = _figure()
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    span_s = max(series.t_s[-1], *(t for t, _ in series.marks), 1.0)
    unit, scale = ("seconds", 1.0) if span_s < 180 else ("minutes", 60.0)
    times = [t / scale for t in series.t_s]
    marks = _merged(series.marks, span_s)
    for ax, (label, names, prefix) in zip(axes, PANELS, strict=True):
        for name in names:
            values = series.lines.get(f"{prefix}:{name}")
            if values and any(v is not None for v in values):
                ax.plot(times, [float("nan") if v is None else v for v in values], label=name)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
        for t_s, _text in marks:
            ax.axvline(t_s / scale, color="tab:red", linestyle="--", linewidth=1)
    for n, (t_s, _text) in enumerate(marks, 1):
        axes[0].annotate(
            str(n),
            (t_s / scale, 1.0),
            xycoords=("data", "axes fraction"),
            va="bottom",
            ha="center",
            fontsize="small",
            color="tab:red",
        )
    axes[-1].set_xlabel(f"{unit} since the first sample")
    figure.suptitle(series.title)
    footer = "\n".join(f"{n}: {text}"[:150] for n, (_t, text) in enumerate(marks[:6], 1))
    figure.text(0.01, 0.01, footer, fontsize="small", color="tab:red", va="bottom")
    figure.tight_layout(rect=(0.0, 0.03 + 0.022 * min(len(marks), 6), 1.0, 1.0))
    try:
        figure.savefig(out)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot write {out}: {exc}", 2) from None
