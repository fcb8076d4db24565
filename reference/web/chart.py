"""DMARC aggregate reports as a picture: one row per sending source, one column per day,
each cell a bar of the messages that passed (aligned SPF or DKIM) under those that failed.

Only the geometry is computed here; the template draws it as inline SVG, so the chart
needs no JavaScript and no image library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference.service import DmarcDay

__all__ = ["Bar", "Chart", "dmarc_chart"]

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
