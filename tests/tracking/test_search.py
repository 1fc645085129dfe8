"""Searching runs: the query language, its meaning on both backends, and its error messages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest

from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.tracking import search_runs
from shipyard.tracking.runs import RunOrigin, get_run, list_runs, start_run
from shipyard.tracking.search import And, Comparison, Not, Or, parse_query

ALL = {"rf-deep", "gbm", "linear", "broken", "piped"}


@dataclass(frozen=True)
class Runs:
    """Five runs, started in this order: rf-deep, gbm, linear, broken, piped."""

    project: Project
    ids: dict[str, str]

    def names(self, query: str) -> set[str]:
        return {run.name for run in search_runs(query, project=self.project)}


@pytest.fixture
def runs(project: Project) -> Runs:
    ids = {}
    with start_run(
        "rf-deep",
        params={"depth": 3, "model": "rf", "lr": 0.1, "note": "abc", "gamma": "NaN",
                "title": "it's café"},
        tags={"team": "vision", "owner name": "ann"},
        project=project,
    ) as run:  # fmt: skip
        run.log_metric("auc", 0.5)
        run.log_metric("auc", 0.95)
        run.log_metric("loss", 0.4)
        run.log_metric("loss", math.nan)  # the last value is NaN; the 0.4 before it is not
        run.log_metric("val.auc", 0.8)
        ids[run.name] = run.id
    with start_run(
        "gbm",
        params={"depth": 3.0, "model": "gbm", "lr": 0.01, "note": "5"},
        tags={"team": "nlp"},
        project=project,
    ) as run:
        run.log_metric("auc", 0.99, step=0)
        run.log_metric("auc", 0.7, step=1)
        run.log_metric("loss", 0.2)
        ids[run.name] = run.id
    with start_run(
        "linear",
        params={"depth": "abc", "model": "Linear", "lr": 1, "gamma": math.nan},
        tags={"team": "Vision"},
        project=project,
    ) as run:
        run.log_metric("auc", 0.88, step=5)
        run.log_metric("auc", 0.1, step=3)  # logged later, but at a lower step
        run.log_metric("loss", 0.3, step=0)
        run.log_metric("loss", 0.6, step=0)  # same step: the one logged later wins
        ids[run.name] = run.id
    with (
        pytest.raises(RuntimeError),
        start_run(
            "broken", params={"depth": 10, "model": "rf"}, tags={"team": "vision-core"},
            project=project,
        ) as run,
    ):  # fmt: skip
        ids[run.name] = run.id
        raise RuntimeError("boom")
    with start_run(
        "piped",
        params={"depth": 2},
        project=project,
        origin=RunOrigin(kind="pipeline", pipeline="train"),
    ) as run:
        run.log_metric("auc", 0.9)
        ids[run.name] = run.id
    return Runs(project, ids)


def _check(runs: Runs, cases: dict[str, set[str]]) -> None:
    wrong = {query: (runs.names(query), want) for query, want in cases.items()}
    wrong = {query: pair for query, pair in wrong.items() if pair[0] != pair[1]}
    assert not wrong, "query: (found, expected)\n" + "\n".join(
        f"{q}: {p}" for q, p in wrong.items()
    )


# -- meaning ----------------------------------------------------------------------------------


def test_metrics_compare_the_last_value(runs: Runs) -> None:
    _check(
        runs,
        {
            "metrics.auc > 0.9": {"rf-deep"},  # gbm's 0.99 came first: its last is 0.7
            "metrics.auc >= 0.9": {"rf-deep", "piped"},
            "metrics.auc < 0.8": {"gbm"},
            "metrics.auc <= 0.88": {"gbm", "linear"},  # linear: highest step (5), not latest
            "metrics.auc = 0.9": {"piped"},
            "metrics.auc != 0.9": {"rf-deep", "gbm", "linear"},  # broken has no auc at all
            "metrics.auc in (0.7, 0.88)": {"gbm", "linear"},
            "metrics.auc = 0.99": set(),
            "metrics.loss = 0.6": {"linear"},  # a tie on the step: the later point
            "metrics.loss = 0.3": set(),
            "metrics.AUC > 0": set(),  # names are case-sensitive
            "metrics.`val.auc` = 0.8": {"rf-deep"},
            "metrics.val.auc = 0.8": {"rf-deep"},
            "metrics.auc > -1": {"rf-deep", "gbm", "linear", "piped"},
            "metrics.auc < 1e3": {"rf-deep", "gbm", "linear", "piped"},
        },
    )


def test_a_nan_last_value_equals_nothing_and_differs_from_everything(runs: Runs) -> None:
    _check(
        runs,
        {
            "metrics.loss > 0.3": {"linear"},  # rf-deep's earlier 0.4 is not its last value
            "metrics.loss < 100 or metrics.loss >= 100": {"gbm", "linear"},
            "metrics.loss = 0.4": set(),
            "metrics.loss != 0.2": {"rf-deep", "linear"},
            "not metrics.loss != 0.2": {"gbm", "broken", "piped"},
            "metrics.loss in (0.2, 0.6)": {"gbm", "linear"},
        },
    )


def test_params_compare_numbers_with_numbers_and_strings_with_strings(runs: Runs) -> None:
    _check(
        runs,
        {
            "params.depth = 3": {"rf-deep", "gbm"},  # int 3 and float 3.0
            "params.depth = 3.0": {"rf-deep", "gbm"},
            "params.depth > 2": {"rf-deep", "gbm", "broken"},
            "params.depth >= 2": {"rf-deep", "gbm", "broken", "piped"},
            "params.depth < 5": {"rf-deep", "gbm", "piped"},  # "abc" is never 0
            "params.depth <= 3": {"rf-deep", "gbm", "piped"},
            "params.depth != 3": {"broken", "piped"},
            "params.depth = 'abc'": {"linear"},
            "params.depth = '3'": set(),
            "params.depth in (3, 'abc')": {"rf-deep", "gbm", "linear"},
            "params.model = 'rf'": {"rf-deep", "broken"},
            'params.model = "gbm"': {"gbm"},
            "params.model != 'rf'": {"gbm", "linear"},
            "params.model in ('rf', 'gbm')": {"rf-deep", "gbm", "broken"},
            "params.model > 'h'": {"rf-deep", "broken"},
            "params.note = 5": set(),  # gbm's note is the string "5"
            "params.note = '5'": {"gbm"},
            "params.lr < 0.05": {"gbm"},
            "params.lr >= 1": {"linear"},
            "params.missing = 1": set(),
            "params.gamma = 'NaN'": {"rf-deep"},  # a string; linear's is a NaN float
            "params.gamma > 0 or params.gamma <= 0": set(),
            "params.title = 'it''s café'": {"rf-deep"},
            "params.title like '%café'": {"rf-deep"},
        },
    )


def test_like_is_case_sensitive_and_ilike_is_not(runs: Runs) -> None:
    _check(
        runs,
        {
            "params.model like 'r%'": {"rf-deep", "broken"},
            "params.model like 'L%'": {"linear"},
            "params.model like 'l%'": set(),
            "params.model ilike 'l%'": {"linear"},
            "params.model ILIKE '_BM'": {"gbm"},
            "tags.team like 'vision%'": {"rf-deep", "broken"},
            "tags.team ilike 'vision%'": {"rf-deep", "linear", "broken"},
            "tags.team like 'vision_core'": {"broken"},  # `_` is any one character
            "tags.team like 'vision\\_core'": set(),  # ... unless escaped
            "tags.team like 'vision\\-core'": {"broken"},
            "name like '%e%'": {"rf-deep", "linear", "broken", "piped"},
            "name like '*'": set(),  # GLOB's wildcards are plain characters here
            "name like 'gb[m]'": set(),
        },
    )


def test_tags(runs: Runs) -> None:
    _check(
        runs,
        {
            "tags.team = 'vision'": {"rf-deep"},
            "tags.team != 'vision'": {"gbm", "linear", "broken"},  # piped has no tag
            "not tags.team = 'vision'": {"gbm", "linear", "broken", "piped"},
            "tags.team in ('nlp', 'Vision')": {"gbm", "linear"},
            "tags.team < 'w'": {"rf-deep", "gbm", "linear", "broken"},
            "tags.`owner name` = 'ann'": {"rf-deep"},
        },
    )


def test_attributes(runs: Runs) -> None:
    user = runs.project.user.replace("'", "''")
    _check(
        runs,
        {
            "status = 'failed'": {"broken"},
            "status != 'finished'": {"broken"},
            "status in ('failed', 'killed')": {"broken"},
            "status = 'running'": set(),
            "name = 'gbm'": {"gbm"},
            "attributes.name = 'gbm'": {"gbm"},
            "name in ('gbm', 'piped', 'nothing')": {"gbm", "piped"},
            "pipeline = 'train'": {"piped"},
            "pipeline != 'train'": set(),  # the others have no pipeline at all
            "not pipeline = 'train'": ALL - {"piped"},
            "pipeline like 't%'": {"piped"},
            "kind = 'pipeline'": {"piped"},
            "kind = 'run'": ALL - {"piped"},
            f"user = '{user}'": ALL,
            f"user != '{user}'": set(),
        },
    )


def test_started_at_compares_with_iso_times(runs: Runs) -> None:
    middle = get_run(runs.ids["gbm"], project=runs.project).started_at
    assert middle.utcoffset() is not None
    naive = middle.replace(tzinfo=None).isoformat()
    _check(
        runs,
        {
            f"started_at >= '{middle.isoformat()}'": ALL - {"rf-deep"},
            f"started_at > '{middle.isoformat()}'": {"linear", "broken", "piped"},
            f"started_at < '{middle.isoformat()}'": {"rf-deep"},
            f"started_at = '{middle.isoformat()}'": {"gbm"},
            f"started_at <= '{naive}'": {"rf-deep", "gbm"},  # no zone: UTC
            "started_at > '2000-01-01'": ALL,
            "started_at < '2000-01-01T00:00:00+02:00'": set(),
            "started_at > '2999-12-31'": set(),
        },
    )


def test_and_binds_tighter_than_or_and_not_tighter_than_and(runs: Runs) -> None:
    _check(
        runs,
        {
            "params.model = 'rf' or params.model = 'gbm' and tags.team = 'nlp'": {
                "rf-deep", "broken", "gbm",
            },
            "(params.model = 'rf' or params.model = 'gbm') and tags.team = 'nlp'": {"gbm"},
            "not params.model = 'rf' and params.depth = 3": {"gbm"},
            "not (params.model = 'rf' and params.depth = 3)": ALL - {"rf-deep"},
            "NOT status = 'failed' AND metrics.auc > 0.9 Or name = 'piped'": {
                "rf-deep", "piped",
            },
            "not not name = 'gbm'": {"gbm"},
            "((name = 'gbm'))": {"gbm"},
            "name = 'gbm' or name = 'linear' or name = 'piped'": {"gbm", "linear", "piped"},
            "metrics.auc > 0 and metrics.auc < 0.9 and params.depth = 3": {"gbm"},
        },
    )  # fmt: skip


def test_parse_tree_shape() -> None:
    tree = parse_query("name = 'a' or not name = 'b' and kind = 'c'")
    assert isinstance(tree, Or) and len(tree.operands) == 2
    first, second = tree.operands
    assert isinstance(first, Comparison) and first.values == ("a",)
    assert isinstance(second, And) and isinstance(second.operands[0], Not)
    chain = parse_query(" or ".join(f"name = '{k}'" for k in range(5)))
    assert isinstance(chain, Or) and len(chain.operands) == 5  # flat, not nested pairs
    field = parse_query("metrics.`odd ``name`` here` in (1, 2.5)")
    assert isinstance(field, Comparison)
    assert (field.field.kind, field.field.name, field.op, field.values) == (
        "metric", "odd `name` here", "in", (1.0, 2.5),
    )  # fmt: skip


def test_newest_first_limit_and_the_empty_query(runs: Runs) -> None:
    everything = search_runs("", project=runs.project)
    assert [run.name for run in everything] == ["piped", "broken", "linear", "gbm", "rf-deep"]
    assert [run.name for run in search_runs("  ", project=runs.project, limit=2)] == [
        "piped",
        "broken",
    ]
    found = search_runs("name = 'rf-deep'", project=runs.project)
    assert found[0].id == runs.ids["rf-deep"]
    assert found[0].metrics["auc"] == 0.95 and math.isnan(found[0].metrics["loss"])
    assert found[0].params["depth"] == 3
    with pytest.raises(InvalidInput, match="limit must be a positive integer; got 0"):
        search_runs("", project=runs.project, limit=0)


def test_long_queries_within_the_bounds_run(runs: Runs) -> None:
    names = " or ".join(f"name = 'run-{k}'" for k in range(199)) + " or name = 'gbm'"
    deep = "not " * 30 + "name = 'gbm'"  # an even number of `not`s
    values = "name in (" + ", ".join(f"'{k}'" for k in range(999)) + ", 'gbm')"
    nested = "name = 'gbm'"
    for level in range(7):  # 28 levels of `not (`, `or` and `and` in alternation
        if level % 2:
            nested = f"not (name = 'x' or not ({nested}))"
        else:
            nested = f"not (not ({nested} and kind = 'run') or name = 'x')"
    _check(runs, {names: {"gbm"}, deep: {"gbm"}, values: {"gbm"}, nested: {"gbm"}})
    assert runs.names("name like 'rf\\-deep'") == {"rf-deep"}  # an escaped plain character
    assert runs.names("tags.team like 'vision\\\\'") == set()  # an escaped backslash


def test_sql_in_a_query_is_a_parse_error_and_values_are_bound(runs: Runs) -> None:
    for query in ("1=1; drop table runs", "name = 'x'; drop table runs"):
        with pytest.raises(InvalidInput):
            search_runs(query, project=runs.project)
    _check(
        runs,
        {
            "name = 'x''; drop table runs; --'": set(),
            "name = 'x'' or ''1''=''1'": set(),
            "tags.`team'; drop table run_tags; --` = 'x'": set(),
            "params.`a\") or 1=1 --` like '%'": set(),
        },
    )
    assert len(list_runs(project=runs.project)) == len(ALL)
    assert runs.names("tags.team = 'vision'") == {"rf-deep"}


# -- error messages ---------------------------------------------------------------------------

FIELDS = (
    "metrics.NAME, params.NAME, tags.NAME or one of status, name, pipeline, user, kind, started_at"
)
ERRORS = {
    "metric.auc > 0.9": f"unknown field 'metric.auc' at 0: expected {FIELDS}",
    "attributes.colour = 'x'": f"unknown field 'attributes.colour' at 0: expected {FIELDS}",
    "name = 'a' and colour = 'x'": f"unknown field 'colour' at 15: expected {FIELDS}",
    "metrics.auc > abc": "expected a number after '>' at 14, got 'abc'",
    "metrics.auc > 'high'": "expected a number after '>' at 14, got 'high'",
    "metrics.auc >> 1": "expected a number after '>' at 13, got '>'",
    "metrics.auc in (1, 'x')": "expected a number after ',' at 19, got 'x'",
    "tags.team = 3": "expected a quoted string (tags.team holds text) after '=' at 12, got '3'",
    "name = 3": "expected a quoted string (name holds text) after '=' at 7, got '3'",
    "params.depth = deep": "expected a number or a quoted string after '=' at 15, got 'deep'",
    "1=1; drop table runs": f"expected a field ({FIELDS}) at 0, got '1'",
    "name = 'x'; drop table runs": "unexpected character ';' at 10 in the query",
    "and": f"expected a field ({FIELDS}) at 0, got 'and'",
    "metrics.auc > 0.9 and": f"expected a field ({FIELDS}) at 21, got the end of the query",
    "metrics.auc 0.9": (
        "expected an operator (=, !=, <, <=, >, >=, like, ilike or in) after 'metrics.auc' "
        "at 12, got '0.9'"
    ),
    "metrics.auc == 0.9": "expected a number after '=' at 13, got '='",
    "(metrics.auc > 0.9": "expected 'and', 'or' or ')' at 18, got the end of the query",
    "metrics.auc > 0.9)": "expected 'and', 'or' or the end of the query at 17, got ')'",
    "metrics.auc > 0.9 name = 'x'": (
        "expected 'and', 'or' or the end of the query at 18, got 'name'"
    ),
    "metrics.auc like '0.9%'": (
        "'like' at 12 needs a text field; metrics.auc is compared with =, !=, <, <=, >, >= or in"
    ),
    "started_at ilike '2024%'": "'ilike' at 11 needs a text field",
    "params.model like 5": "expected a quoted pattern after 'like' at 18, got '5'",
    "status = 'done'": (
        "unknown status 'done' at 9: expected one of running, finished, failed, killed"
    ),
    "started_at > 'yesterday'": "'yesterday' at 13 is not an ISO date or date/time",
    "started_at > 5": "expected an ISO date or date/time in quotes",
    "params.a in ()": "expected a number or a quoted string after '(' at 13, got ')'",
    "params.a in 3": "expected '(' and a list of values after 'in' at 12, got '3'",
    "params.a in (1 2)": "expected ',' or ')' at 15, got '2'",
    "name = 'open": "unterminated string at 7: close it with '",
    "metrics.`val.auc > 1": "unterminated backtick name at 8: close it with `",
    "metrics.`` > 1": "empty name in backticks at 8",
    "metrics. > 1": "expected a name after 'metrics.' at 8",
    "name like 'a\\'": "pattern 'a\\' at 10 ends with the escape character \\",
    "name like 'a\\\\\\'": "pattern 'a\\\\\\' at 10 ends with the escape character",
    "name = 'a\0'": "the query holds a NUL character at 9",
    "not " * 31 + "name = 'a'": "the query nests 'not' and parentheses more than 30 deep at 120",
    "(" * 31 + "name = 'a'" + ")" * 31: "the query nests 'not' and parentheses more than 30 deep",
    " or ".join(["name = 'a'"] * 201): "the query is too long at 2800: at most 200 comparisons",
    "name in (" + ", ".join(["'a'"] * 1001) + ")": "the query is too long at 0",
}


@pytest.mark.parametrize("query", list(ERRORS), ids=[query[:40] for query in ERRORS])
def test_bad_queries_name_the_position_and_what_was_expected(query: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{re.escape(ERRORS[query])}"):
        parse_query(query)


def test_a_bad_query_fails_before_touching_the_database(project: Project) -> None:
    with pytest.raises(InvalidInput, match=re.escape("expected a number after '>' at 14")):
        search_runs("metrics.auc > abc", project=project)
    with pytest.raises(InvalidInput, match="a search query must be a string"):
        parse_query(3)  # type: ignore[arg-type]
