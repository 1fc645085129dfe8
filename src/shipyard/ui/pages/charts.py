"""Charts drawn on the server as inline SVG coordinates: they show without any JavaScript.

Three shapes the dashboard needs besides the drift report's histograms and trends (which come
from `shipyard.monitoring.report` and are drawn by its own template macros):

- `step_chart`: a value that holds until the next decision changes it (a rollout's traffic
  split), one step line per series;
- `line_chart`: values measured at points in time (an SLO's budget left, its burn rates), with
  optional horizontal threshold lines;
- `lineage_graph`: boxes in columns joined by edges (datasets -> run -> version -> rollouts).

Axes reuse the drift report's frame, ticks and number formatting, so every chart reads alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shipyard.monitoring.report import Frame, Tick, _nice_ticks, _tick, _time

TIME_FRAME = Frame(width=640, height=240, left=56, top=30, plot_width=560, plot_height=170)
PALETTE = ("#2f6db5", "#e8720c", "#17702a", "#8a3ab9", "#b00020", "#00838f", "#6d4c41")


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

    @property
    def point_count(self) -> int:
        return sum(len(s.points) for s in self.series)


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
    ticks = _nice_ticks(low, high, 4)
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
    first, last = min(times), max(times)
    ends = [first] if first == last else [first, last]
    return [Tick(_x(t, start, per_unit, frame), _time(t, short=True)) for t in ends]


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
            label = f"{_time(moments[i])}: {name} {_tick(value)}{unit}"
            points.append(Point(x0, y, label))
        drawn.append(Series(name, PALETTE[index % len(PALETTE)], " ".join(path), points))
    description = "; ".join(
        f"{s.name}: " + ", ".join(p.label.split(": ", 1)[1] for p in s.points) for s in drawn
    )
    return TimeChart(
        frame,
        drawn,
        _x_ticks(moments, start, per_unit, frame),
        [Tick(_y(v, bottom, top, frame), _tick(v)) for v in ticks],
        [],
        title,
        description,
        y_label,
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
    frame = TIME_FRAME
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
                f"{_time(moment)}: {name} {_tick(value * scale)}{unit}",
            )
            for moment, value in zip(times, series, strict=True)
            if value is not None
        ]
        path = " ".join(f"{'L' if i else 'M'} {p.x},{p.y}" for i, p in enumerate(points))
        drawn.append(Series(name, PALETTE[index % len(PALETTE)], path, points))
    description = "; ".join(
        f"{s.name}: " + ", ".join(p.label.split(": ", 1)[1] for p in s.points) for s in drawn
    )
    return TimeChart(
        frame,
        drawn,
        _x_ticks(times, start, per_unit, frame),
        [Tick(_y(v, bottom, top, frame), _tick(v)) for v in ticks],
        [
            Threshold(_y(level, bottom, top, frame), label)
            for level, (_, label) in zip(levels, thresholds, strict=True)
        ],
        title,
        description,
        y_label,
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
