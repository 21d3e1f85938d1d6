"""Charts drawn on the server as SVG (no script, no inline style: the CSP holds): lines and
bars with labelled axes. A chart is data for ``chart.html``; numbers are exact decimals
scaled to pixels only here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TypeAlias

from perkamo.program.json_walk import JsonObject

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 36  # margins for the axes' labels
# A point's x: a day, a time (a datetime is a date) or a label.
X: TypeAlias = date | str


@dataclass
class Series:
    name: str
    points: Sequence[tuple[X, Decimal]]  # (x, y)


@dataclass
class Chart:
    """What ``chart.html`` draws: polylines or bars, ticks on both axes, a legend."""

    title: str
    kind: str  # "line" | "bars"
    width: int = WIDTH
    height: int = HEIGHT
    lines: list[JsonObject] = field(default_factory=list)
    bars: list[JsonObject] = field(default_factory=list)
    x_ticks: list[JsonObject] = field(default_factory=list)
    y_ticks: list[JsonObject] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    empty: bool = False
    plot: dict[str, int] = field(default_factory=dict)


def _nice_top(value: Decimal) -> Decimal:
    """The axis' top: 1, 2 or 5 times a power of ten, at or above ``value``."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)  # pragma: no cover - the loop always returns


def _label(value: Decimal) -> str:
    value = value.normalize()
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:f}".rstrip("0").rstrip(".") if "." in f"{value:f}" else f"{value:f}"


def _x_text(x: X, fine: bool = False) -> str:
    if isinstance(x, datetime):
        return x.strftime("%H:%M:%S" if fine else "%m-%d %H:%M")
    if isinstance(x, date):
        return x.strftime("%m-%d")
    return str(x)


def _frame(chart: Chart, low: Decimal, high: Decimal) -> tuple[Decimal, Decimal]:
    low = min(low, Decimal(0))
    top = _nice_top(high) if high > 0 else Decimal(0)
    bottom = -_nice_top(-low) if low < 0 else Decimal(0)
    if top == bottom:
        top = Decimal(1)
    plot_h = chart.height - TOP - BOTTOM
    chart.plot = {"x0": LEFT, "x1": chart.width - RIGHT, "y0": TOP, "y1": chart.height - BOTTOM}
    for n in range(5):
        value = bottom + (top - bottom) * n / 4
        y = chart.height - BOTTOM - float((value - bottom) / (top - bottom)) * plot_h
        chart.y_ticks.append({"y": round(y, 1), "text": _label(value)})
    return bottom, top


def line_chart(title: str, series: list[Series], x_label: str = "", y_label: str = "") -> Chart:
    """Lines over a shared x axis (dates or times, in order; or labels)."""
    chart = Chart(title, "line", x_label=x_label, y_label=y_label)
    xs = sorted({x for s in series for x, _ in s.points}, key=_order)
    values = [y for s in series for _, y in s.points]
    if not xs or not values:
        chart.empty = True
        return chart
    bottom, top = _frame(chart, min(values), max(values))
    plot_w = chart.width - LEFT - RIGHT
    plot_h = chart.height - TOP - BOTTOM
    position = {x: LEFT + (plot_w * i / max(len(xs) - 1, 1)) for i, x in enumerate(xs)}

    def y_of(value: Decimal) -> float:
        return chart.height - BOTTOM - float((value - bottom) / (top - bottom)) * plot_h

    for index, s in enumerate(series):
        points = [(round(position[x], 1), round(y_of(y), 1), x, y) for x, y in s.points]
        chart.lines.append(
            {
                "css": index % 4,
                "name": s.name,
                "path": " ".join(f"{px},{py}" for px, py, _, _ in points),
                "dots": [
                    {"x": px, "y": py, "title": f"{s.name} {_x_text(x)}: {_label(y)}"}
                    for px, py, x, y in points[-60:]
                ],
            }
        )
        chart.legend.append(s.name)
    step = max(1, len(xs) // 6)
    # Times within one day are told apart by the clock alone.
    first, last = xs[0], xs[-1]
    fine = (
        isinstance(first, datetime)
        and isinstance(last, datetime)
        and (last - first).total_seconds() < 86_400
    )
    for i in range(0, len(xs), step):
        chart.x_ticks.append({"x": round(position[xs[i]], 1), "text": _x_text(xs[i], fine)})
    return chart


def bar_chart(
    title: str, bars: Sequence[tuple[X, Decimal]], x_label: str = "", y_label: str = ""
) -> Chart:
    """One bar per x (a day, a level, a rule)."""
    chart = Chart(title, "bars", x_label=x_label, y_label=y_label)
    if not bars:
        chart.empty = True
        return chart
    bottom, top = _frame(chart, min(v for _, v in bars), max(v for _, v in bars))
    plot_w = chart.width - LEFT - RIGHT
    plot_h = chart.height - TOP - BOTTOM
    slot = plot_w / len(bars)
    zero = chart.height - BOTTOM - float((0 - bottom) / (top - bottom)) * plot_h
    step = max(1, len(bars) // 10)
    for i, (x, value) in enumerate(bars):
        y = chart.height - BOTTOM - float((value - bottom) / (top - bottom)) * plot_h
        left = LEFT + slot * i + slot * 0.15
        chart.bars.append(
            {
                "x": round(left, 1),
                "y": round(min(y, zero), 1),
                "w": round(slot * 0.7, 1),
                "h": round(abs(zero - y), 1),
                "title": f"{_x_text(x)}: {_label(value)}",
            }
        )
        if i % step == 0:
            chart.x_ticks.append({"x": round(left + slot * 0.35, 1), "text": _x_text(x)})
    return chart


def _order(x: X) -> tuple[int, X]:
    return (0, x) if isinstance(x, date | datetime) else (1, str(x))
