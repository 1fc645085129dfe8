"""The HTML drift report: overlaid histograms, the summary table, trends, escaping and writing.

Results are literal dicts in the shape of `DriftResult.to_dict()`, parsed back with html.parser.
"""

from __future__ import annotations

import copy
import itertools
import math
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.monitoring.report import render, write_report

TEMPERATURE_EDGES = [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
TEMPERATURE_REFERENCE = [5, 20, 60, 140, 220, 230, 180, 95, 40, 10]
TEMPERATURE_CURRENT = [0, 2, 10, 30, 60, 110, 160, 150, 90, 38]
STATIONS = ["oslo", "bergen", "trondheim", "tromsø"]


def column(name: str, **overrides: Any) -> dict[str, Any]:
    """A clean numeric input column; `overrides` change any key."""
    base: dict[str, Any] = {
        "name": name,
        "role": "input",
        "kind": "numeric",
        "method": "wasserstein",
        "statistic": 0.03,
        "p_value": None,
        "adjusted_p_value": None,
        "threshold": 0.1,
        "drifted": False,
        "alerting": False,
        "streak": 0,
        "statistics": {"wasserstein": 0.03, "ks": 0.02, "psi": 0.01},
        "reference_rows": 1000,
        "current_rows": 650,
        "current_nulls": 0,
        "histogram": {"edges": [0.0, 1.0, 2.0], "reference": [500, 500], "current": [320, 330]},
    }
    return base | overrides


def result(columns: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 3,
        "model": "weather",
        "version": 2,
        "reference": "weather@1",
        "window_start": "2024-05-01T00:00:00+00:00",
        "window_end": "2024-05-08T00:00:00+00:00",
        "reference_rows": 1000,
        "current_rows": 650,
        "drifted": True,
        "drifted_share": 2 / 3,
        "alerting": True,
        "created_at": "2024-05-08T00:05:00+00:00",
        "dataset": {
            "drifted": True,
            "share": 2 / 3,
            "threshold_share": 0.5,
            "alerting": True,
            "streak": 3,
        },
        "settings": {"window": "7d", "persistence": 3, "correction": "fdr"},
        "columns": columns,
    }
    return base | overrides


def weather() -> dict[str, Any]:
    """A realistic result: two inputs of each kind and a prediction, two of them drifted."""
    return result(
        [
            column(
                "humidity",
                method="ks",
                statistic=0.021,
                p_value=0.41,
                adjusted_p_value=1.0,
                threshold=0.05,
            ),
            column(
                "temperature",
                statistic=0.23,
                drifted=True,
                alerting=True,
                streak=3,
                histogram={
                    "edges": TEMPERATURE_EDGES,
                    "reference": TEMPERATURE_REFERENCE,
                    "current": TEMPERATURE_CURRENT,
                },
            ),
            column(
                "station",
                kind="categorical",
                method="jensenshannon",
                statistic=0.17,
                drifted=True,
                streak=1,
                histogram={
                    "levels": STATIONS,
                    "reference": [400, 300, 200, 100],
                    "current": [100, 150, 200, 200],
                },
            ),
            column(
                "rain",
                role="prediction",
                kind="categorical",
                method="chisquare",
                statistic=1.2,
                p_value=0.27,
                adjusted_p_value=0.8,
                threshold=0.05,
                histogram={"levels": ["no", "yes"], "reference": [700, 300], "current": [450, 200]},
            ),
        ]
    )


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node] = []
        self.text = ""

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


class TreeBuilder(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert tag in [n.tag for n in self.stack], f"</{tag}> closes nothing"
        while self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "every element is closed"
    return builder.root


def sections(page: Node) -> dict[str, Node]:
    """Each feature's section, by the column name in its heading."""
    found = {}
    for section in page.find_all("section"):
        [name] = section.find_all("span", **{"class": "name"})
        found[name.text] = section
    return found


def assert_bars_match(section: Node, expected: dict[str, dict[str, float]]) -> None:
    """Both series are drawn, and every bar's height is the same multiple of its share."""
    histogram = section.find_all("svg", **{"class": "histogram"})[0]
    ratios = []
    for series in ("reference", "current"):
        [group] = histogram.find_all("g", **{"data-series": series})
        bars = group.find_all("rect")
        assert {bar.attrs["data-label"] for bar in bars} == set(expected[series])
        for bar in bars:
            share = expected[series][str(bar.attrs["data-label"])]
            height = float(str(bar.attrs["height"]))
            assert float(str(bar.attrs["data-share"])) == pytest.approx(share)
            if share == 0:
                assert height == 0
            else:
                ratios.append(height / share)
    assert ratios and max(ratios) == pytest.approx(min(ratios), rel=1e-3)


def shares(labels: list[str], counts: list[int]) -> dict[str, float]:
    return {label: count / sum(counts) for label, count in zip(labels, counts, strict=True)}


@pytest.fixture(scope="module")
def page() -> Node:
    return parse(render(weather()))


def test_each_feature_overlays_reference_and_current_shares(page: Node) -> None:
    found = sections(page)
    assert set(found) == {"humidity", "temperature", "station", "rain"}
    bins = [f"[{a:g}, {b:g})" for a, b in itertools.pairwise(TEMPERATURE_EDGES)]
    bins[-1] = bins[-1][:-1] + "]"
    assert_bars_match(
        found["temperature"],
        {
            "reference": shares(bins, TEMPERATURE_REFERENCE),
            "current": shares(bins, TEMPERATURE_CURRENT),
        },
    )
    assert_bars_match(
        found["station"],
        {
            "reference": shares(STATIONS, [400, 300, 200, 100]),
            "current": shares(STATIONS, [100, 150, 200, 200]),
        },
    )
    assert_bars_match(
        found["rain"],
        {
            "reference": shares(["no", "yes"], [700, 300]),
            "current": shares(["no", "yes"], [450, 200]),
        },
    )
    svg = found["temperature"].find_all("svg")[0]
    assert "temperature" in svg.find_all("title")[0].text
    assert "[-10, -5): 0.5% vs 0%" in svg.find_all("desc")[0].text
    legend = svg.find_all("g", **{"class": "legend"})[0].all_text()
    assert "reference (1,000 rows)" in legend and "current (650 rows)" in legend
    tick_labels = [t.text for t in svg.find_all("g", **{"class": "x-axis"})[0].find_all("text")]
    assert tick_labels[0] == "-10" and tick_labels[-1] == "40"


def test_the_summary_lists_every_column_drifted_first(page: Node) -> None:
    [table] = page.find_all("table", **{"class": "summary"})
    rows = [
        [cell.all_text().strip() for cell in row.find_all("td")] for row in table.find_all("tr")
    ]
    rows = [row for row in rows if row]
    assert [(row[0], row[8]) for row in rows] == [
        ("temperature", "drift, alerting"),
        ("station", "drift"),
        ("humidity", "no drift"),
        ("rain", "no drift"),
    ]
    assert rows[2][1:8] == ["input", "numeric", "ks", "0.021", "0.05", "0.41", "1"]
    assert rows[3][1] == "prediction"
    header = page.find_all("p", **{"class": "verdict alerting"})[0].text
    assert "2 of 3 input columns drifted (66.7%; the dataset drifts at 50.0%)" in " ".join(
        header.split()
    )
    assert "persisted for 3 windows" in header
    assert "predictions drifted" not in header
    rain = sections(page)["rain"].find_all("dd")[0].text
    assert rain == "chisquare: drifts when the adjusted p-value is below 0.05"
    assert page.find_all("title")[0].text == "Drift report: weather v2 (drift detected)"
    assert page.find_all("meta")[0].attrs == {"charset": "utf-8"}


def test_user_names_are_escaped_and_the_page_is_offline() -> None:
    hostile = "<script>alert(1)</script>"
    drifted = weather()
    drifted["model"] = '"><img src=x onerror=alert(2)>'
    drifted["columns"][2]["name"] = hostile
    drifted["columns"][2]["histogram"]["levels"][0] = "<b>bold</b>"
    drifted["columns"][3] |= {"name": "rain & <snow>", "drifted": True}
    text = render(drifted)
    tree = parse(text)
    assert not tree.find_all("script") and not tree.find_all("img") and not tree.find_all("b")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "The predictions drifted too (rain &amp; &lt;snow&gt;)." in text
    assert hostile in sections(tree)
    for reference in ("http://", "https://", "//cdn", "<link", "@import", "url("):
        assert reference not in text


def test_history_draws_a_trend_with_a_point_per_window() -> None:
    current = weather()
    older = []
    for i, statistic in enumerate([0.15, 0.12, 0.04]):  # newest first
        window = copy.deepcopy(current)
        window["id"] = 2 - i
        window["window_end"] = datetime(2024, 5, 7 - i, tzinfo=UTC)  # datetimes are accepted too
        window["columns"][1] |= {"statistic": statistic, "drifted": statistic >= 0.1}
        older.append(window)
    del older[1]["columns"][0]  # humidity was not monitored in that window
    found = sections(parse(render(current, history=[current, *older])))
    temperature = found["temperature"].find_all("svg", **{"class": "trend"})[0]
    points = temperature.find_all("circle")
    assert len(points) == 4  # three older windows and this one; the repeated current is skipped
    [line] = temperature.find_all("polyline")
    ys = [float(p.split(",")[1]) for p in str(line.attrs["points"]).split()]
    assert ys[0] > ys[1] > ys[2] > ys[3]  # 0.04, 0.12, 0.15, 0.23 drawn upwards (smaller y)
    assert temperature.find_all("line", **{"class": "threshold"})
    assert [p.attrs["fill"] for p in points] == ["#444", "#b00020", "#b00020", "#b00020"]
    description = temperature.find_all("desc")[0].text
    assert "oldest first: 2024-05-05 00:00:00 UTC: statistic 0.04, " in description
    assert description.endswith("2024-05-08 00:00:00 UTC: statistic 0.23 (drift); threshold 0.1.")
    humidity = found["humidity"].find_all("svg", **{"class": "trend"})[0]
    assert len(humidity.find_all("circle")) == 3
    assert "1 windows without a value" in humidity.find_all("desc")[0].text
    assert "p-value" in humidity.find_all("title")[0].text  # ks compares its p-value
    assert not sections(parse(render(current)))["temperature"].find_all("svg", **{"class": "trend"})


def test_degenerate_inputs_render() -> None:
    levels = [f"level-{i:02d}" for i in range(30)]
    odd = result(
        [
            column(
                "empty current", histogram={"edges": [0.0, 1.0], "reference": [10], "current": [0]}
            ),
            column("constant", histogram={"edges": [5.0, 5.0], "reference": [10], "current": [3]}),
            column("nan", statistic=math.nan, threshold=None, p_value=None),
            column("no histogram", histogram=None, statistics=None),
            column("malformed", histogram=[1, 2], statistics=[0.1]),
            column(
                "uneven",
                histogram={
                    "edges": [-math.inf, 0.0, 0.001, 1000.0],
                    "reference": [1, 2, 3],
                    "current": [3, 2],
                },
            ),
            column(
                "no levels",
                kind="categorical",
                histogram={"levels": [], "reference": [], "current": []},
            ),
            column(
                "many levels",
                kind="categorical",
                histogram={"levels": levels, "reference": list(range(1, 31)), "current": [1] * 30},
            ),
        ],
        window_start=None,
        window_end=datetime(2024, 5, 8, tzinfo=UTC),
        created_at=datetime(2024, 5, 8, 0, 5, tzinfo=UTC),
        dataset={},
    )
    history = [result([column("nan", statistic=None)], id=1), result([], id=0)]
    tree = parse(render(odd, history=history))
    found = sections(tree)
    notes = {
        name: [p.text for p in s.find_all("p", **{"class": "note"})] for name, s in found.items()
    }
    assert notes["empty current"] == ["The current side has no rows in this histogram."]
    assert found["empty current"].find_all("rect", **{"data-label": "[0, 1]", "height": "0.0"})
    assert found["nan"].find_all("dd")[1].text == "n/a"
    assert "no histogram was recorded" in found["no histogram"].find_all("svg")[0].all_text()
    assert notes["no histogram"] == []
    assert "no histogram was recorded" in found["malformed"].find_all("svg")[0].all_text()
    assert "unequal width" in notes["uneven"][0]
    assert "no categories" in found["no levels"].find_all("svg")[0].all_text()
    many = found["many levels"].find_all("g", **{"data-series": "reference"})[0]
    assert len(many.find_all("rect")) == 20
    assert notes["many levels"][0].startswith("10 more levels not shown")
    assert len(found["nan"].find_all("circle")) == 0  # no window has a finite statistic
    assert "the start of the log to 2024-05-08 00:00:00 UTC" in tree.all_text()
    assert parse(render(result([])))  # no columns at all


def test_bad_input_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "drift.html"
    with pytest.raises(InvalidInput, match="no 'model' key; expected a drift result"):
        write_report({"columns": []}, target)
    with pytest.raises(InvalidInput, match=r"Column 0 of the drift result has no 'name'"):
        render(result([{"role": "input"}]))
    with pytest.raises(InvalidInput, match="'columns' must be a list of columns, got str"):
        render(result([]) | {"columns": "temperature"})
    with pytest.raises(InvalidInput, match="History entry 1 is list; expected older drift"):
        write_report(weather(), target, history=[weather() | {"id": 1}, []])
    assert not (tmp_path / "reports").exists()


def test_write_report_writes_atomically_into_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "weather" / "drift.html"
    written = write_report(weather(), str(target))
    assert written == target
    assert target.read_text(encoding="utf-8") == render(weather())
    clean = weather()
    clean["columns"] = clean["columns"][:1]
    assert write_report(clean, target) == target  # replaces the old page
    assert "temperature" not in target.read_text(encoding="utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["drift.html"]  # no partial files left
