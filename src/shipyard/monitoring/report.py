"""The HTML drift report: one self-contained page per drift result.

`render(result)` turns a drift result (the shape of `DriftResult.to_dict()`) into a single HTML
file: a header with the dataset verdict, a summary table of every column (drifted first), then per
feature the reference and current histograms overlaid as shares, so windows of different sizes
compare, with the column's statistic and verdict beside it. Given `history` (older results of the
same model, newest first), each feature also gets a trend of its score across windows against its
threshold. Charts are inline SVG drawn here, so the page needs no network, fonts or JavaScript.

    from shipyard.monitoring.report import write_report
    older = [r.to_dict() for r in earlier_results]  # newest first
    write_report(result.to_dict(), "reports/weather-drift.html", history=older)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from shipyard.errors import InvalidInput

TEMPLATE = "drift_report.html.j2"
REFERENCE_COLOUR = "#2f6db5"
CURRENT_COLOUR = "#e8720c"
MAX_LEVELS = 20  # categorical charts show the levels with the largest share on either side
# Tests whose threshold applies to the (adjusted) p-value; distances compare their statistic.
P_VALUE_METHODS = frozenset({"ks", "chi2", "chisquare"})
UNEVEN_BINS = 20.0  # widest/narrowest bin ratio beyond which bins are drawn at equal width
LABEL_CHARS = 14  # longer level names are shortened in the middle on the axis
LEGEND_CHAR = 6.2  # about the width of one 11px character, to lay the legend out
TICK_CHAR = 5.6  # the same for the 10px tick labels


@dataclass(frozen=True)
class Frame:
    """An SVG canvas and the plot area inside it, in user units."""

    width: float
    height: float
    left: float
    top: float
    plot_width: float
    plot_height: float

    @property
    def bottom(self) -> float:
        return self.top + self.plot_height

    @property
    def right(self) -> float:
        return self.left + self.plot_width


HISTOGRAM = Frame(width=560, height=240, left=52, top=30, plot_width=496, plot_height=170)
CATEGORICAL = Frame(width=560, height=300, left=66, top=30, plot_width=482, plot_height=170)
TREND = Frame(width=320, height=160, left=46, top=22, plot_width=262, plot_height=104)


@dataclass(frozen=True)
class Tick:
    at: float  # position along the axis, in user units
    label: str


@dataclass(frozen=True)
class Bar:
    series: str  # "reference" or "current"
    x: float
    y: float
    width: float
    height: float
    share: float
    label: str  # the bin or level, for the tooltip


@dataclass(frozen=True)
class Histogram:
    frame: Frame
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    rotate_labels: bool
    title: str
    description: str
    notes: list[str]
    message: str | None  # drawn instead of bars when there is nothing to draw
    reference_label: str
    current_label: str

    @property
    def current_legend_x(self) -> float:
        """Where the current series' legend entry starts: after the reference's text."""
        return self.frame.left + 40 + len(self.reference_label) * LEGEND_CHAR


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    label: str
    drifted: bool


@dataclass(frozen=True)
class Trend:
    frame: Frame
    lines: list[str]  # SVG polyline points, one per run of windows that have a value
    points: list[TrendPoint]
    threshold_y: float | None
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    measure: str
    threshold: str
    title: str
    description: str


@dataclass(frozen=True)
class ColumnView:
    anchor: str
    name: str
    role: str
    kind: str
    method: str
    statistic: str
    threshold: str
    rule: str
    p_value: str
    adjusted_p_value: str
    verdict: str
    css: str
    streak: int
    reference_rows: str
    current_rows: str
    current_nulls: str
    statistics: list[tuple[str, str]]
    histogram: Histogram
    trend: Trend | None


def render(result: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The drift result as one self-contained HTML page.

    `history` holds older results of the same model, newest first; when given, each feature gets
    a trend of its score across those windows and this one.
    """
    _check(result, history)
    windows = trend_windows(result, history)
    columns = [column_view(i, c, windows) for i, c in enumerate(result["columns"])]
    columns.sort(key=lambda c: (c.css == "clean", c.css != "alerting"))  # stable: drifted first
    return _template().render(
        header=header_view(result, len(windows)),
        columns=columns,
        reference_colour=REFERENCE_COLOUR,
        current_colour=CURRENT_COLOUR,
    )


def write_report(
    result: Mapping[str, Any], path: str | Path, history: Sequence[Mapping[str, Any]] = ()
) -> Path:
    """Render the report and write it to `path` atomically, creating folders; return the path."""
    page = render(result, history)  # before touching the disk, so bad input writes nothing
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)  # a rename: readers see the old page or the new one, never half
    finally:
        partial.unlink(missing_ok=True)
    return target


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    # Autoescaping on: model, feature and level names are user data.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("shipyard.monitoring", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE)


def _check(result: Any, history: Sequence[Any]) -> None:
    expected = "a drift result as DriftResult.to_dict() returns it"
    if not isinstance(result, Mapping):
        raise InvalidInput(f"The drift report needs {expected}, got {type(result).__name__}.")
    for key in ("model", "columns"):
        if key not in result:
            raise InvalidInput(f"The drift result has no '{key}' key; expected {expected}.")
    if not isinstance(result["columns"], Sequence) or isinstance(result["columns"], str):
        raise InvalidInput(
            f"The drift result's 'columns' must be a list of columns, "
            f"got {type(result['columns']).__name__}."
        )
    for index, older in enumerate(history):
        if not isinstance(older, Mapping):
            raise InvalidInput(
                f"History entry {index} is {type(older).__name__}; expected older drift results "
                f"as DriftResult.to_dict() returns them, newest first."
            )
    for index, column in enumerate(result["columns"]):
        if not isinstance(column, Mapping) or "name" not in column:
            raise InvalidInput(
                f"Column {index} of the drift result has no 'name'; expected a mapping with "
                f"name, role, kind, method, statistic, threshold, drifted and histogram."
            )


def trend_windows(
    result: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Every window to trend, oldest first, ending with `result` (which history may repeat)."""
    current_id = result.get("id")
    older = [h for h in history if current_id is None or h.get("id") != current_id]
    return [*reversed(older), result] if older else []


def header_view(result: Mapping[str, Any], windows: int) -> dict[str, Any]:
    dataset = _mapping(result.get("dataset"))
    # The dataset verdict is over the inputs; prediction drift is reported beside it.
    inputs = [c for c in result["columns"] if c.get("role") != "prediction"]
    predictions = [c for c in result["columns"] if c.get("role") == "prediction"]
    drifted = bool(dataset.get("drifted", result.get("drifted", False)))
    alerting = bool(dataset.get("alerting", result.get("alerting", False)))
    start, end = result.get("window_start"), result.get("window_end")
    return {
        "model": str(result["model"]),
        "version": _text(result.get("version")),
        "reference": _text(result.get("reference")),
        "window": f"{format_time(start) if start else 'the start of the log'} to "
        f"{format_time(end) if end else 'now'}",
        "reference_rows": _count(result.get("reference_rows")),
        "current_rows": _count(result.get("current_rows")),
        "created_at": format_time(result.get("created_at")),
        "drifted": drifted,
        "alerting": alerting,
        "css": "alerting" if drifted and alerting else "drifted" if drifted else "clean",
        "verdict": "drift detected" if drifted else "no drift",
        "drifted_inputs": sum(bool(c.get("drifted")) for c in inputs),
        "inputs": len(inputs),
        "drifted_predictions": [str(c["name"]) for c in predictions if c.get("drifted")],
        "share": format_percent(dataset.get("share", result.get("drifted_share"))),
        "threshold_share": format_percent(dataset.get("threshold_share")),
        "streak": _integer(dataset.get("streak")),
        "windows": windows,
        "settings": json.dumps(result.get("settings") or {}, indent=2, sort_keys=True, default=str),
    }


def column_view(
    index: int, column: Mapping[str, Any], windows: Sequence[Mapping[str, Any]]
) -> ColumnView:
    name, method = str(column["name"]), _text(column.get("method"))
    drifted, alerting = bool(column.get("drifted")), bool(column.get("alerting"))
    verdict = "drift, alerting" if drifted and alerting else "drift" if drifted else "no drift"
    statistics = _mapping(column.get("statistics"))
    return ColumnView(
        anchor=f"column-{index}",
        name=name,
        role=_text(column.get("role")),
        kind=_text(column.get("kind")),
        method=method,
        statistic=format_number(column.get("statistic")),
        threshold=format_number(column.get("threshold")),
        rule=_rule(column),
        p_value=format_number(column.get("p_value")),
        adjusted_p_value=format_number(column.get("adjusted_p_value")),
        verdict=verdict,
        css="alerting" if drifted and alerting else "drifted" if drifted else "clean",
        streak=_integer(column.get("streak")),
        reference_rows=_count(column.get("reference_rows")),
        current_rows=_count(column.get("current_rows")),
        current_nulls=_count(column.get("current_nulls")),
        statistics=[(str(k), format_number(v)) for k, v in statistics.items()],
        histogram=_histogram(name, column),
        trend=_trend(column, windows) if windows else None,
    )


def _rule(column: Mapping[str, Any]) -> str:
    threshold = format_number(column.get("threshold"))
    if _uses_p_value(column):
        return f"drifts when the {_score(column)[1]} is below {threshold}"
    return f"drifts when the {_text(column.get('method'))} statistic reaches {threshold}"


def _uses_p_value(column: Mapping[str, Any]) -> bool:
    return column.get("method") in P_VALUE_METHODS and _finite(column.get("p_value")) is not None


def _score(column: Mapping[str, Any]) -> tuple[float | None, str]:
    """The number a column's threshold is compared with, and what it is called."""
    if _uses_p_value(column):
        adjusted = _finite(column.get("adjusted_p_value"))
        if adjusted is not None:
            return adjusted, "adjusted p-value"
        return _finite(column.get("p_value")), "p-value"
    return _finite(column.get("statistic")), "statistic"


# Histograms ----------------------------------------------------------------------------------


def _histogram(name: str, column: Mapping[str, Any]) -> Histogram:
    histogram = _mapping(column.get("histogram"))
    reference = _counts(histogram.get("reference"))
    current = _counts(histogram.get("current"))
    size = max(len(reference), len(current))
    reference, current = _pad(reference, size), _pad(current, size)
    if "levels" in histogram:
        return _categorical(name, histogram.get("levels") or [], reference, current)
    return _numeric(name, histogram.get("edges") or [], reference, current)


def _numeric(
    name: str, edges: Sequence[Any], reference: np.ndarray, current: np.ndarray
) -> Histogram:
    frame, size = HISTOGRAM, len(reference)
    if size == 0:
        return _blank(frame, name, "no histogram was recorded for this column")
    reference_share, current_share = _shares(reference), _shares(current)
    notes = _empty_sides(reference, current)
    positions, x_ticks, note = _bin_layout(_floats(edges), size, frame)
    notes += [note] if note else []
    scale, y_ticks = _share_axis(max(reference_share.max(), current_share.max()), frame)
    labels = _bin_labels(_floats(edges), size)
    bars: list[Bar] = []
    for series, shares in (("reference", reference_share), ("current", current_share)):
        for i, share in enumerate(shares):
            x0, x1 = positions[i], positions[i + 1]
            gap = 1.0 if x1 - x0 > 4 else 0.0
            bars.append(_bar(series, x0, max(x1 - x0 - gap, 0.5), share, scale, labels[i], frame))
    description = "; ".join(
        f"{labels[i]}: {format_percent(reference_share[i])} vs {format_percent(current_share[i])}"
        for i in range(size)
    )
    return _chart(
        name, frame, bars, x_ticks, y_ticks, False, description, notes, reference, current
    )


def _categorical(
    name: str, levels: Sequence[Any], reference: np.ndarray, current: np.ndarray
) -> Histogram:
    frame = CATEGORICAL
    names = [_level(level) for level in levels] + [
        f"level {i + 1}" for i in range(len(levels), len(reference))
    ]
    reference, current = _pad(reference, len(names)), _pad(current, len(names))
    if not names:
        return _blank(frame, name, "no categories were recorded for this column")
    reference_share, current_share = _shares(reference), _shares(current)
    notes = _empty_sides(reference, current)
    order = np.argsort(-np.maximum(reference_share, current_share), kind="stable")
    shown, hidden = order[:MAX_LEVELS], order[MAX_LEVELS:]
    # Room under the axis for the longest label, drawn at 45 degrees.
    longest = max(len(_shorten(names[i])) for i in shown)
    frame = replace(frame, height=frame.bottom + 30 + longest * TICK_CHAR * 0.75)
    if len(hidden):
        notes.append(
            f"{len(hidden)} more levels not shown: "
            f"{format_percent(reference_share[hidden].sum())} of the reference and "
            f"{format_percent(current_share[hidden].sum())} of the current window "
            f"(the {MAX_LEVELS} levels with the largest share on either side are drawn)."
        )
    scale, y_ticks = _share_axis(max(reference_share.max(), current_share.max()), frame)
    slot = frame.plot_width / len(shown)
    bar_width = slot * 0.4
    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    for place, i in enumerate(shown):
        start = frame.left + place * slot + slot * 0.1
        bars.append(_bar("reference", start, bar_width, reference_share[i], scale, names[i], frame))
        bars.append(
            _bar("current", start + bar_width, bar_width, current_share[i], scale, names[i], frame)
        )
        x_ticks.append(Tick(round(start + bar_width, 2), _shorten(names[i])))
    description = "; ".join(
        f"{names[i]}: {format_percent(reference_share[i])} vs {format_percent(current_share[i])}"
        for i in shown
    )
    return _chart(name, frame, bars, x_ticks, y_ticks, True, description, notes, reference, current)


def _chart(
    name: str,
    frame: Frame,
    bars: list[Bar],
    x_ticks: list[Tick],
    y_ticks: list[Tick],
    rotate: bool,
    description: str,
    notes: list[str],
    reference: np.ndarray,
    current: np.ndarray,
) -> Histogram:
    return Histogram(
        frame=frame,
        bars=bars,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        rotate_labels=rotate,
        title=f"{name}: share of rows, reference and current overlaid",
        description=f"Share of rows per {'level' if rotate else 'bin'}, reference vs current: "
        f"{description}.",
        notes=notes,
        message=None,
        reference_label=f"reference ({_count(reference.sum())} rows)",
        current_label=f"current ({_count(current.sum())} rows)",
    )


def _blank(frame: Frame, name: str, message: str) -> Histogram:
    return Histogram(
        frame=frame,
        bars=[],
        x_ticks=[],
        y_ticks=[],
        rotate_labels=False,
        title=f"{name}: no histogram",
        description=f"Nothing to draw: {message}.",
        notes=[],
        message=message,
        reference_label="reference",
        current_label="current",
    )


def _bar(
    series: str, x: float, width: float, share: float, scale: float, label: str, frame: Frame
) -> Bar:
    height = float(share) / scale * frame.plot_height
    return Bar(
        series=series,
        x=round(x, 3),
        y=round(frame.bottom - height, 3),
        width=round(width, 3),
        height=round(height, 3),
        share=float(share),
        label=label,
    )


def _bin_layout(
    edges: np.ndarray, size: int, frame: Frame
) -> tuple[np.ndarray, list[Tick], str | None]:
    """Where each bin boundary sits on the x axis, the axis ticks, and a note when not to scale."""
    valid = len(edges) == size + 1 and bool(np.isfinite(edges).all())
    widths = np.diff(edges) if valid else np.array([])
    if valid and (widths > 0).all() and widths.max() / widths.min() <= UNEVEN_BINS:
        low, high = float(edges[0]), float(edges[-1])
        positions = frame.left + (edges - low) / (high - low) * frame.plot_width
        ticks = [
            Tick(round(frame.left + (v - low) / (high - low) * frame.plot_width, 2), axis_tick(v))
            for v in nice_ticks(low, high)
        ]
        return positions, ticks, None
    # Uneven, unordered or missing edges: equal slots, labelled with the edges they stand for.
    positions = frame.left + np.linspace(0.0, 1.0, size + 1) * frame.plot_width
    step = max(1, math.ceil((size + 1) / 8))
    if len(edges) == size + 1:
        ticks = [
            Tick(round(positions[i], 2), axis_tick(edges[i])) for i in range(0, size + 1, step)
        ]
        note = "Bins of unequal width are drawn at equal width; ticks mark their edges."
        return positions, ticks, note if size > 1 else None
    ticks = [
        Tick(round((positions[i] + positions[i + 1]) / 2, 2), f"bin {i + 1}")
        for i in range(0, size, step)
    ]
    return positions, ticks, "The bin edges were not recorded; bins are numbered instead."


def _bin_labels(edges: np.ndarray, size: int) -> list[str]:
    if len(edges) != size + 1:
        return [f"bin {i + 1}" for i in range(size)]
    return [
        f"[{axis_tick(edges[i])}, {axis_tick(edges[i + 1])}{']' if i == size - 1 else ')'}"
        for i in range(size)
    ]


def _share_axis(top: float, frame: Frame) -> tuple[float, list[Tick]]:
    """The share at the top of the y axis (a round multiple of a round step), and its ticks."""
    step = _nice_step(float(top) / 4) if top > 0 else 0.25
    steps = max(1, math.ceil(float(top) / step - 1e-9))
    scale = steps * step
    ticks = [
        Tick(round(frame.bottom - i / steps * frame.plot_height, 2), f"{i * step * 100:.4g}%")
        for i in range(steps + 1)
    ]
    return scale, ticks


def _empty_sides(reference: np.ndarray, current: np.ndarray) -> list[str]:
    return [
        f"The {side} side has no rows in this histogram."
        for side, counts in (("reference", reference), ("current", current))
        if counts.sum() <= 0
    ]


# Trend --------------------------------------------------------------------------------------


def _trend(column: Mapping[str, Any], windows: Sequence[Mapping[str, Any]]) -> Trend:
    frame, key = TREND, (column.get("name"), column.get("role"))
    found = [_find(window, key) for window in windows]
    scores = [_score(c)[0] if c is not None else None for c in found]
    measure = _score(column)[1]
    threshold = _finite(column.get("threshold"))
    known = [s for s in scores if s is not None] + ([threshold] if threshold is not None else [])
    low = min([0.0, *known])
    high = _nice_ceiling(max(known)) if known and max(known) > low else low + 1.0
    if measure != "statistic":
        low, high = 0.0, 1.0  # p-values

    def y(value: float) -> float:
        return round(frame.bottom - (value - low) / (high - low) * frame.plot_height, 2)

    def x(index: int) -> float:
        spread = index / (len(windows) - 1) if len(windows) > 1 else 0.5
        return round(frame.left + spread * frame.plot_width, 2)

    points: list[TrendPoint] = []
    runs: list[list[str]] = [[]]  # a window without a value breaks the line
    for i, (window, col, score) in enumerate(zip(windows, found, scores, strict=True)):
        if score is None:
            runs.append([])
            continue
        runs[-1].append(f"{x(i)},{y(score)}")
        when = format_time(window.get("window_end") or window.get("created_at"))
        drifted = bool(col and col.get("drifted"))
        label = f"{when}: {measure} {format_number(score)}{' (drift)' if drifted else ''}"
        points.append(TrendPoint(x(i), y(score), label, drifted))
    lines = [" ".join(run) for run in runs if len(run) > 1]
    ends = [0, len(windows) - 1] if len(windows) > 1 else [0]
    x_ticks = [
        Tick(
            x(i),
            format_time(windows[i].get("window_end") or windows[i].get("created_at"), short=True),
        )
        for i in ends
    ]
    y_ticks = [Tick(y(v), axis_tick(v)) for v in (low, (low + high) / 2, high)]
    missing = len(windows) - len(points)
    return Trend(
        frame=frame,
        lines=lines,
        points=points,
        threshold_y=y(threshold) if threshold is not None and low <= threshold <= high else None,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        measure=measure,
        threshold=format_number(threshold),
        title=f"{column.get('name')}: {measure} over the last {len(windows)} windows",
        description=f"{measure} per window, oldest first: "
        + ", ".join(p.label for p in points)
        + f"; threshold {format_number(threshold)}"
        + (f"; {missing} windows without a value" if missing else "")
        + ".",
    )


def _find(window: Mapping[str, Any], key: tuple[Any, Any]) -> Mapping[str, Any] | None:
    for column in window.get("columns") or []:
        if isinstance(column, Mapping) and (column.get("name"), column.get("role")) == key:
            return column
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping; an empty one when missing or malformed, so nothing crashes."""
    return value if isinstance(value, Mapping) else {}


# Numbers and text -----------------------------------------------------------------------------


def _counts(values: Any) -> np.ndarray:
    counts = _floats(values or [])
    return np.where(np.isfinite(counts) & (counts > 0), counts, 0.0)


def _floats(values: Sequence[Any]) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return np.array([], dtype=float)


def _pad(counts: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([counts, np.zeros(max(size - len(counts), 0))])[:size]


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if value <= m * base * (1 + 1e-9))


def _nice_step(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`: a step for ticks."""
    base = 10.0 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 2, 5, 10) if value <= m * base * (1 + 1e-9))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = _nice_step((high - low) / count)
    first = math.ceil(low / step - 1e-9) * step
    return [float(v) for v in np.arange(first, high + step * 1e-6, step)]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_number(value: Any) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{number:.4g}"


def axis_tick(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    text = f"{value:.4g}"
    return "0" if text == "-0" else text


def format_percent(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return "n/a"
    return f"{number * 100:.3g}%" if abs(number) < 0.01 else f"{number * 100:.1f}%"


def _count(value: Any) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{int(number):,}"


def _integer(value: Any) -> int:
    number = _finite(value)
    return 0 if number is None else int(number)


def _text(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _level(level: Any) -> str:
    return "(missing)" if level is None else str(level)


def _shorten(label: str) -> str:
    if len(label) <= LABEL_CHARS:
        return label
    # Keep both ends: names often differ only in a prefix or a suffix.
    head = (LABEL_CHARS - 1) // 2
    return label[:head] + "…" + label[-(LABEL_CHARS - 1 - head) :]


def format_time(value: Any, short: bool = False) -> str:
    """A datetime or ISO string as people read it; anything else as text."""
    if value is None:
        return "n/a"
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, datetime):
        return str(value)
    if short:
        return moment.strftime("%m-%d %H:%M")
    zone = moment.strftime(" %Z") if moment.tzinfo else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone
