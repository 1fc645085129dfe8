"""Charts drawn on the server as inline SVG coordinates: they show without any JavaScript.

Three shapes the dashboard needs besides the drift report's histograms and trends (which come
from `shipyard.monitoring.report` and are drawn by its own template macros):

- `step_chart`: a value that holds until the next decision changes it (a rollout's traffic
  split), one step line per series;
- `line_chart`: values measured at points in time (an SLO's budget left, its burn rates), with
  optional horizontal threshold lines;
- `lineage_graph`: boxes in columns joined by edges (datasets -> run -> version -> rollouts).

Axes reuse the drift report's frame, ticks and number formatting, so every chart reads alike.

Text in an SVG does not wrap or measure itself, so the layout here estimates label widths from
their length (wide enough for DejaVu Sans, the widest common system font): legend entries wrap
onto more rows instead of running off the canvas, and threshold labels sit in a gutter right of
the plot, nudged apart, where no line can run through them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shipyard.monitoring.report import Frame, Tick, axis_tick, format_time, nice_ticks

TIME_FRAME = Frame(width=640, height=240, left=56, top=30, plot_width=560, plot_height=170)
PALETTE = ("#2f6db5", "#e8720c", "#17702a", "#8a3ab9", "#b00020", "#00838f", "#6d4c41")

LEGEND_CHAR = 6.8  # px per character at the legend's 11px
LEGEND_BOX = 14.0  # the colour box and the space after it
LEGEND_GAP = 18.0  # between two entries on a row
LEGEND_ROW = 16.0  # between two rows
LEGEND_BASELINE = 35.0  # the first row's text baseline, below the plot's bottom
THRESHOLD_CHAR = 5.6  # px per character at the threshold labels' 9px
THRESHOLD_PAD = 6.0  # between the plot's right edge and a threshold label
THRESHOLD_GUTTER = 100.0  # at least this wide, so charts side by side keep one plot width
THRESHOLD_SPACING = 11.0  # the least vertical distance between two threshold labels
TICK_FORMATS = ("%m-%d %H:%M", "%m-%d %H:%M:%S")  # to the minute, to the second
MINUTE_TICKS_FROM = 120.0  # seconds: a shorter span labels its ends to the second


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # the tooltip: when, and the value


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    path: str  # an SVG path ("M x,y L x,y ..."); empty when the series has no point
    points: list[Point]


@dataclass(frozen=True)
class Threshold:
    y: float
    label: str
    label_y: float  # where its label sits: level with the line unless a neighbour is too close


@dataclass(frozen=True)
class LegendEntry:
    name: str
    colour: str
    x: float  # the colour box's left edge
    y: float  # the text's baseline

    @property
    def text_x(self) -> float:
        return self.x + LEGEND_BOX

    @property
    def box_y(self) -> float:
        return self.y - 9


@dataclass(frozen=True)
class TimeChart:
    """A chart over time: series of points, axes, and thresholds; `message` when empty."""

    frame: Frame
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    thresholds: list[Threshold]
    title: str
    description: str
    y_label: str
    message: str | None = None
    legend: list[LegendEntry] = field(default_factory=list)

    @property
    def point_count(self) -> int:
        return sum(len(s.points) for s in self.series)

    @property
    def height(self) -> float:
        """The canvas's height: the frame's, plus the legend's rows after the first."""
        rows = len({entry.y for entry in self.legend})
        return self.frame.height + max(rows - 1, 0) * LEGEND_ROW


def _legend(series: Sequence[Series], frame: Frame) -> list[LegendEntry]:
    """One entry per series, left to right from the plot's left edge, wrapping onto a new row
    before an entry would run past the canvas's right edge."""
    entries: list[LegendEntry] = []
    x, y = frame.left, frame.bottom + LEGEND_BASELINE
    for s in series:
        width = LEGEND_BOX + len(s.name) * LEGEND_CHAR
        if entries and x + width > frame.width:
            x, y = frame.left, y + LEGEND_ROW
        entries.append(LegendEntry(s.name, s.colour, x, y))
        x += width + LEGEND_GAP
    return entries


def _threshold_frame(labels: Sequence[str]) -> Frame:
    """The time frame with a gutter right of the plot wide enough for the threshold labels."""
    if not labels:
        return TIME_FRAME
    longest = max(len(label) for label in labels) * THRESHOLD_CHAR + THRESHOLD_PAD + 4
    gutter = max(THRESHOLD_GUTTER, math.ceil(longest))
    plot_width = TIME_FRAME.width - TIME_FRAME.left - gutter
    return replace(TIME_FRAME, plot_width=plot_width)


def _spread(levels: Sequence[float], frame: Frame) -> list[float]:
    """Label positions for lines at `levels` (SVG y, any order): each as close to its line as
    it can be while at least THRESHOLD_SPACING from its neighbours and inside the canvas."""
    if not levels:
        return []
    order = sorted(range(len(levels)), key=lambda i: levels[i])  # top to bottom
    placed = [levels[i] for i in order]
    for k in range(1, len(placed)):  # push down what sits too close below its neighbour
        placed[k] = max(placed[k], placed[k - 1] + THRESHOLD_SPACING)
    placed[-1] = min(placed[-1], frame.bottom)
    for k in range(len(placed) - 2, -1, -1):  # then back up what the bottom pushed into
        placed[k] = min(placed[k], placed[k + 1] - THRESHOLD_SPACING)
    result = [0.0] * len(levels)
    for k, i in enumerate(order):
        result[i] = round(placed[k], 2)
    return result


def _time_scale(times: Sequence[datetime], frame: Frame) -> tuple[float, float]:
    """(start seconds, seconds per unit): one point sits in the middle of the plot."""
    seconds = [t.timestamp() for t in times]
    low, high = min(seconds), max(seconds)
    if high <= low:
        return low - 1.0, 2.0 / frame.plot_width
    return low, (high - low) / frame.plot_width


def _x(moment: datetime, start: float, per_unit: float, frame: Frame) -> float:
    return round(frame.left + (moment.timestamp() - start) / per_unit, 2)


def _y_axis(low: float, high: float, frame: Frame) -> tuple[float, float, list[float]]:
    """The plotted range and its ticks: nice round numbers that cover [low, high]."""
    if high <= low:
        low, high = low - 1.0, high + 1.0
    ticks = nice_ticks(low, high, 4)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    bottom = min(low, ticks[0])
    top = max(high, ticks[-1])
    if ticks[0] > low:
        bottom = ticks[0] - step
        ticks.insert(0, bottom)
    if ticks[-1] < high:
        top = ticks[-1] + step
        ticks.append(top)
    return bottom, top, ticks


def _y(value: float, bottom: float, top: float, frame: Frame) -> float:
    return round(frame.bottom - (value - bottom) / (top - bottom) * frame.plot_height, 2)


def _x_ticks(times: Sequence[datetime], start: float, per_unit: float, frame: Frame) -> list[Tick]:
    """The first and last time: to the minute over two minutes or more, else to the second (a
    few seconds' span must not read as 11:00 to 11:01); one tick when both read the same."""
    first, last = min(times), max(times)
    precise = (last - first).total_seconds() < MINUTE_TICKS_FROM
    layout = TICK_FORMATS[1] if precise else TICK_FORMATS[0]
    labels = (first.strftime(layout), last.strftime(layout))
    if labels[0] == labels[1]:
        return [Tick(_x(first, start, per_unit, frame), labels[0])]
    return [
        Tick(_x(first, start, per_unit, frame), labels[0]),
        Tick(_x(last, start, per_unit, frame), labels[1]),
    ]


def _empty(title: str, y_label: str, message: str, frame: Frame) -> TimeChart:
    return TimeChart(frame, [], [], [], [], title, message, y_label, message)


def step_chart(
    times: Sequence[datetime],
    values: dict[str, Sequence[float | None]],
    *,
    end: datetime,
    title: str,
    y_label: str = "share of traffic (%)",
    unit: str = "%",
) -> TimeChart:
    """Each series holds its value from one time to the next; the last step runs to `end`.

    `values[name][i]` is the series' value from `times[i]` on (None: the series is absent)."""
    frame = TIME_FRAME
    if not times:
        return _empty(title, y_label, "no decision recorded yet", frame)
    moments = [*times, max(end, times[-1])]
    start, per_unit = _time_scale(moments, frame)
    numbers = [v for series in values.values() for v in series if v is not None]
    bottom, top, ticks = _y_axis(min([0.0, *numbers]), max([100.0, *numbers]), frame)
    drawn: list[Series] = []
    for index, (name, series) in enumerate(values.items()):
        path: list[str] = []
        points: list[Point] = []
        for i, value in enumerate(series):
            if value is None:
                continue
            x0 = _x(moments[i], start, per_unit, frame)
            x1 = _x(moments[i + 1], start, per_unit, frame)
            y = _y(value, bottom, top, frame)
            path.append(f"{'L' if path else 'M'} {x0},{y} L {x1},{y}")
            label = f"{format_time(moments[i])}: {name} {axis_tick(value)}{unit}"
            points.append(Point(x0, y, label))
        drawn.append(Series(name, PALETTE[index % len(PALETTE)], " ".join(path), points))
    description = "; ".join(
        f"{s.name}: " + ", ".join(p.label.split(": ", 1)[1] for p in s.points) for s in drawn
    )
    return TimeChart(
        frame,
        drawn,
        _x_ticks(moments, start, per_unit, frame),
        [Tick(_y(v, bottom, top, frame), axis_tick(v)) for v in ticks],
        [],
        title,
        description,
        y_label,
        legend=_legend(drawn, frame),
    )


def line_chart(
    times: Sequence[datetime],
    values: dict[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    thresholds: Sequence[tuple[float, str]] = (),
    percent: bool = False,
    empty: str = "nothing measured yet",
) -> TimeChart:
    """One line per series through its points; a None value breaks nothing, it is skipped."""
    frame = _threshold_frame([label for _, label in thresholds])
    if not times:
        return _empty(title, y_label, empty, frame)
    start, per_unit = _time_scale(times, frame)
    scale = 100.0 if percent else 1.0
    numbers = [v * scale for series in values.values() for v in series if v is not None]
    levels = [level * scale for level, _ in thresholds]
    if not numbers:
        return _empty(title, y_label, empty, frame)
    bottom, top, ticks = _y_axis(min([*numbers, *levels]), max([*numbers, *levels]), frame)
    unit = "%" if percent else ""
    drawn: list[Series] = []
    for index, (name, series) in enumerate(values.items()):
        points = [
            Point(
                _x(moment, start, per_unit, frame),
                _y(value * scale, bottom, top, frame),
                f"{format_time(moment)}: {name} {axis_tick(value * scale)}{unit}",
            )
            for moment, value in zip(times, series, strict=True)
            if value is not None
        ]
        path = " ".join(f"{'L' if i else 'M'} {p.x},{p.y}" for i, p in enumerate(points))
        drawn.append(Series(name, PALETTE[index % len(PALETTE)], path, points))
    description = "; ".join(
        f"{s.name}: " + ", ".join(p.label.split(": ", 1)[1] for p in s.points) for s in drawn
    )
    lines = [_y(level, bottom, top, frame) for level in levels]
    return TimeChart(
        frame,
        drawn,
        _x_ticks(times, start, per_unit, frame),
        [Tick(_y(v, bottom, top, frame), axis_tick(v)) for v in ticks],
        [
            Threshold(y, label, label_y)
            for y, label_y, (_, label) in zip(lines, _spread(lines, frame), thresholds, strict=True)
        ],
        title,
        description,
        y_label,
        legend=_legend(drawn, frame),
    )


# -- lineage ----------------------------------------------------------------------------------

NODE_WIDTH = 150.0
NODE_HEIGHT = 34.0
COLUMN_GAP = 60.0
ROW_GAP = 14.0
MARGIN = 10.0


@dataclass(frozen=True)
class Node:
    key: str
    kind: str  # dataset, run, version, rollout
    label: str
    detail: str
    href: str | None
    x: float = 0.0
    y: float = 0.0
    current: bool = False  # the page's own version

    @property
    def text_x(self) -> float:
        return self.x + 8

    @property
    def middle_y(self) -> float:
        return self.y + NODE_HEIGHT / 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str


@dataclass
class Graph:
    width: float
    height: float
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    node_width: float = NODE_WIDTH
    node_height: float = NODE_HEIGHT
    description: str = ""


def lineage_graph(columns: Sequence[Sequence[Node]], links: Sequence[tuple[str, str]]) -> Graph:
    """Lay `columns` of nodes left to right, centred vertically, and join `links` (key pairs)
    with curves from the right edge of the source to the left edge of the target."""
    shown = [list(column) for column in columns if column]
    tallest = max((len(column) for column in shown), default=0)
    height = MARGIN * 2 + max(tallest, 1) * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    width = MARGIN * 2 + len(shown) * NODE_WIDTH + max(len(shown) - 1, 0) * COLUMN_GAP
    placed: dict[str, Node] = {}
    for index, column in enumerate(shown):
        x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
        used = len(column) * NODE_HEIGHT + (len(column) - 1) * ROW_GAP
        top = (height - used) / 2
        for row, node in enumerate(column):
            y = top + row * (NODE_HEIGHT + ROW_GAP)
            placed[node.key] = Node(
                node.key, node.kind, node.label, node.detail, node.href, x, y, node.current
            )
    edges = []
    for source, target in links:
        a, b = placed.get(source), placed.get(target)
        if a is None or b is None:
            continue
        x0, y0 = a.x + NODE_WIDTH, a.middle_y
        x1, y1 = b.x, b.middle_y
        bend = (x1 - x0) / 2
        edges.append(
            Edge(source, target, f"M {x0},{y0} C {x0 + bend},{y0} {x1 - bend},{y1} {x1},{y1}")
        )
    description = "; ".join(
        f"{placed[s].label} -> {placed[t].label}" for s, t in ((e.source, e.target) for e in edges)
    )
    return Graph(width, height, list(placed.values()), edges, description=description)
