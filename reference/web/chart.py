"""The panel's charts: DMARC aggregate reports as a picture (one row per sending source, one
column per day, each cell a bar of the messages that passed, aligned SPF or DKIM, under
those that failed), and bars side by side per group (the queue's lanes, usage per day).

Only the geometry is computed here; the templates draw it as inline SVG, so the charts
need no JavaScript and no image library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reference.service import DmarcDay

__all__ = ["Bar", "BarChart", "Chart", "Series", "bar_chart", "dmarc_chart"]

LABEL_WIDTH = 150  # room for an IPv6 address would be more: long labels are cut
COLUMN = 44
ROW = 56
BAR = 26
TOP = 28  # the day labels above the columns
LEGEND = 30
MIN_WIDTH = 480  # the legend's width


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    kind: str  # "pass" or "fail"
    title: str


@dataclass
class Chart:
    width: int
    height: int
    days: list[tuple[int, str]] = field(default_factory=list)  # (x, label)
    sources: list[tuple[int, str]] = field(default_factory=list)  # (y, label)
    bars: list[Bar] = field(default_factory=list)
    passed: int = 0
    failed: int = 0


def dmarc_chart(cells: list[DmarcDay]) -> Chart:
    """The layout for ``cells``; bar heights share one scale (the busiest cell fills its row)."""
    days = sorted({c.day for c in cells})
    sources = sorted({c.source for c in cells})
    chart = Chart(
        width=max(LABEL_WIDTH + COLUMN * max(len(days), 1) + 10, MIN_WIDTH),
        height=TOP + ROW * max(len(sources), 1) + LEGEND,
    )
    chart.days = [(LABEL_WIDTH + i * COLUMN + COLUMN // 2, d[5:]) for i, d in enumerate(days)]
    chart.sources = [(TOP + i * ROW + ROW // 2, s[:22]) for i, s in enumerate(sources)]
    most = max((c.passed + c.failed for c in cells), default=1) or 1
    usable = ROW - 10
    for c in cells:
        x = LABEL_WIDTH + days.index(c.day) * COLUMN + (COLUMN - BAR) // 2
        bottom = TOP + (sources.index(c.source) + 1) * ROW - 4
        pass_h = round(usable * c.passed / most)
        fail_h = round(usable * c.failed / most)
        if c.passed:
            chart.bars.append(
                Bar(
                    x,
                    bottom - pass_h,
                    BAR,
                    max(pass_h, 1),
                    "pass",
                    f"{c.source} {c.day}: {c.passed}",
                )
            )
        if c.failed:
            chart.bars.append(
                Bar(
                    x,
                    bottom - pass_h - max(fail_h, 1),
                    BAR,
                    max(fail_h, 1),
                    "fail",
                    f"{c.source} {c.day}: {c.failed}",
                )
            )
        chart.passed += c.passed
        chart.failed += c.failed
    return chart


# Bars side by side: the plot's height, the value above each bar, a label and a note below.
PLOT = 150
VALUE_ROOM = 18
LABELS_ROOM = 40
GAP = 16
LEFT = 10
NOTE_WIDTH = 150
LABEL_ROOM = 44  # a day's label (MM-DD) and room around it


@dataclass(frozen=True)
class Series:
    """One kind of bar: its CSS class and its legend."""

    kind: str
    label: str


@dataclass
class BarChart:
    width: int
    height: int
    baseline: int  # the y of the axis the bars stand on
    top: int = VALUE_ROOM  # the y a bar of the largest value reaches
    most: int = 0  # that value, marked where bars have no figure above them (0: not)
    bars: list[Bar] = field(default_factory=list)
    values: list[tuple[int, int, str]] = field(default_factory=list)  # (x, y, text) above bars
    labels: list[tuple[int, str, str]] = field(default_factory=list)  # (x, label, note)
    legend: list[tuple[int, Series]] = field(default_factory=list)  # (x, series)


def bar_chart(
    groups: Sequence[tuple[str, Sequence[int]]],
    series: Sequence[Series],
    notes: Sequence[str] = (),
) -> BarChart:
    """One bar per series in each group (a group's values in the order of ``series``), on
    one scale (the largest value fills the plot); its value above it, the group's label and
    note (if any) below. Many groups (a month of days) get narrow bars, with a label on
    every few of them only."""
    many = len(groups) > 12
    bar, gap = (10, 6) if many else (22, GAP)
    inner = bar * max(len(series), 1)
    step = inner + gap
    if any(notes):
        step = max(step, NOTE_WIDTH)  # a note is wider than a day's label
    pad = (step - inner - gap) // 2  # the bars in the middle of a wide group
    every = -(-LABEL_ROOM // step)  # labels this far apart do not overlap
    baseline = VALUE_ROOM + PLOT
    chart = BarChart(
        width=max(LEFT + step * max(len(groups), 1) + 10, MIN_WIDTH),
        height=baseline + LABELS_ROOM + LEGEND,
        baseline=baseline,
    )
    most = max((v for _, values in groups for v in values), default=0) or 1
    if many:  # no figure above each bar: the scale's top is marked instead
        chart.most = most
    for i, (label, values) in enumerate(groups):
        x0 = LEFT + i * step + pad
        note = notes[i] if i < len(notes) else ""
        if (len(groups) - 1 - i) % every == 0:  # counted from the last: it has one
            chart.labels.append((x0 + inner // 2, label, note))
        for j, (s, value) in enumerate(zip(series, values, strict=True)):
            height = max(round(PLOT * value / most), 1) if value else 0
            x = x0 + j * bar
            if height:
                chart.bars.append(
                    Bar(
                        x, baseline - height, bar - 2, height, s.kind, f"{label} {s.label}: {value}"
                    )
                )
            if not many:  # narrow bars have no room for their figure: the title has it
                chart.values.append((x + (bar - 2) // 2, baseline - height - 4, str(value)))
    chart.legend = [(LEFT + i * 160, s) for i, s in enumerate(series)]
    return chart
