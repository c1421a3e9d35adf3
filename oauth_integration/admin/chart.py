"""Bar charts as geometry: counts per time bucket into SVG rectangles, ticks and labels.

Pure functions, no Django and no database: a page counts what happened per hour or per
day, ``buckets`` and ``fill`` line the counts up with every bucket of the window (empty
ones included), and ``bar_chart`` places one bar per series in each bucket's slot, on a
scale with round ticks. A template only draws the result. Coordinates are SVG user units,
``y`` growing downwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Room around the plot for the axis labels (left: counts; bottom: times).
MARGIN_LEFT = 36
MARGIN_RIGHT = 8
MARGIN_TOP = 8
MARGIN_BOTTOM = 22
# Share of a bucket's slot taken by its bars (the rest separates neighbouring buckets).
BARS_SHARE = 0.8


@dataclass(frozen=True)
class Series:
    """One kind of count, drawn in every bucket: ``key`` names its CSS class."""

    key: str
    label: str  # plural, capitalised: "Refreshes"
    one: str  # singular, lower case: "refresh"

    def amount(self, value: int) -> str:
        """``value`` with the series' noun: "1 refresh", "3 refreshes"."""
        return f"{value} {self.one if value == 1 else self.label.lower()}"


@dataclass(frozen=True)
class Column:
    """One bucket: its full label ("2026-07-15 14:00"), its label under the axis ("" for none) and its counts."""

    label: str
    axis_label: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class Bar:
    series: str
    x: float
    y: float
    width: float
    height: float
    value: int
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    series: tuple[Series, ...]
    columns: tuple[Column, ...]
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_labels: tuple[Tick, ...]
    totals: tuple[int, ...]
    highest: int

    @property
    def legend(self) -> list[tuple[Series, int]]:
        """Each series with its total."""
        return list(zip(self.series, self.totals, strict=True))

    @property
    def summary(self) -> str:
        """The totals in words: "12 refreshes, 1 failure"."""
        return ", ".join(series.amount(total) for series, total in self.legend)


def buckets(first: datetime, step: timedelta, count: int) -> list[datetime]:
    """The start of each of ``count`` buckets of length ``step``, from ``first``, oldest first."""
    return [first + step * index for index in range(count)]


def fill(starts: Sequence[datetime], counted: Mapping[datetime, Sequence[int]], size: int) -> list[tuple[int, ...]]:
    """The counts of each bucket in ``starts``: zeros where nothing was counted; counts outside are ignored."""
    zeros = (0,) * size
    return [tuple(counted.get(start, zeros)) for start in starts]


def scale(highest: int, ticks: int = 4) -> tuple[int, int]:
    """(top of the axis, step between ticks): a round step (1, 2 or 5 times a power of ten)
    such that at most ``ticks`` steps reach ``highest``. An empty chart still has a 0-1 axis."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * ticks >= highest:
                return max(step, -(-highest // step) * step), step
        magnitude *= 10


def bar_chart(columns: Sequence[Column], series: Sequence[Series], *, width: int = 720, height: int = 180) -> BarChart:
    """Place a bar per series in each column's slot, scaled so that the highest count nearly fills the plot."""
    if not columns or any(len(column.values) != len(series) for column in columns):
        raise ValueError("every column needs one value per series")
    left, right = float(MARGIN_LEFT), float(width - MARGIN_RIGHT)
    top, bottom = float(MARGIN_TOP), float(height - MARGIN_BOTTOM)
    highest = max(max(column.values) for column in columns)
    axis_top, step = scale(highest)
    slot = (right - left) / len(columns)
    bar_width = slot * BARS_SHARE / len(series)
    gap = slot * (1 - BARS_SHARE) / 2

    def y_of(value: int) -> float:
        return bottom - (bottom - top) * value / axis_top

    bars = [
        Bar(
            series=kind.key,
            x=_round(left + index * slot + gap + position * bar_width),
            y=_round(y_of(value)),
            width=_round(bar_width),
            height=_round(bottom - y_of(value)),
            value=value,
            title=f"{column.label}: {kind.amount(value)}",
        )
        for index, column in enumerate(columns)
        for position, (kind, value) in enumerate(zip(series, column.values, strict=True))
    ]
    return BarChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        series=tuple(series),
        columns=tuple(columns),
        bars=tuple(bars),
        y_ticks=tuple(Tick(_round(y_of(value)), str(value)) for value in range(0, axis_top + 1, step)),
        x_labels=tuple(
            Tick(_round(left + (index + 0.5) * slot), column.axis_label)
            for index, column in enumerate(columns)
            if column.axis_label
        ),
        totals=tuple(sum(column.values[index] for column in columns) for index in range(len(series))),
        highest=highest,
    )


def _round(value: float) -> float:
    return round(value, 2)
