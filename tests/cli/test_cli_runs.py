"""`shipyard runs list/show/compare/search` through the real console script."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import error_line, run_shipyard, succeeded

from shipyard.project import Project
from shipyard.tracking.runs import RunOrigin, start_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Tracked:
    """A project folder holding three runs, started in this order: baseline, deeper, broken."""

    folder: Path
    ids: dict[str, str]

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.folder / ".shipyard" / "shipyard.db")


def _make_runs(folder: Path) -> dict[str, str]:
    project = Project.init(folder / ".shipyard")
    origin = RunOrigin(code_root=folder)  # not a git checkout: the commit is set below
    ids = {}
    try:
        with start_run(
            "baseline",
            params={"depth": 3, "model": "rf"},
            tags={"team": "vision"},
            seed=7,
            project=project,
            origin=origin,
        ) as run:
            run.log_metric("auc", 0.8)
            run.log_metric("auc", 0.9)
            run.log_metric("loss", 0.3)
            run.log_input("train", b"id,label\n1,0\n")
            run.log_artifact("model", b"weights" * 300)
            ids[run.name] = run.id
        with start_run(
            "deeper", params={"depth": 5, "model": "rf"}, project=project, origin=origin
        ) as run:
            run.log_metric("auc", 0.93)
            run.log_metric("loss", 0.3)
            ids[run.name] = run.id
        with (
            pytest.raises(RuntimeError),
            start_run("broken", params={"depth": 5}, project=project, origin=origin) as run,
        ):
            ids[run.name] = run.id
            raise RuntimeError("boom at epoch 3")
    finally:
        project.close()
    with sqlite3.connect(folder / ".shipyard" / "shipyard.db") as connection:
        connection.execute(
            "UPDATE runs SET code_commit = ?, code_dirty = 1, code_root = ? WHERE id = ?",
            (COMMIT, "/src/app", ids["baseline"]),
        )
    return ids


@pytest.fixture(scope="module")
def tracked_template(tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    folder = tmp_path_factory.mktemp("tracked")
    return Tracked(folder, _make_runs(folder))


@pytest.fixture
def tracked(tracked_template: Tracked, tmp_path: Path) -> Tracked:
    """A copy of the project in this test's own folder."""
    folder = tmp_path / "work"
    shutil.copytree(tracked_template.folder, folder)
    return Tracked(folder, tracked_template.ids)


def _cells(line: str) -> list[str]:
    return [cell for cell in re.split(r"[\s│┃|]+", line) if cell]


def _row(stdout: str, needle: str) -> list[str]:
    (line,) = [line for line in stdout.splitlines() if needle in line]
    return _cells(line)


def test_list_as_table_and_json(tracked: Tracked) -> None:
    stdout = succeeded(run_shipyard("runs", "list", cwd=tracked.folder))
    names = [_cells(line)[1] for line in stdout.splitlines() if re.search(r"[0-9a-f]{12}", line)]
    assert names == ["broken", "deeper", "baseline"]  # newest first
    assert _row(stdout, "baseline")[:3] == [tracked.ids["baseline"][:12], "baseline", "finished"]
    assert _row(stdout, "broken")[2] == "failed"

    listed = json.loads(succeeded(run_shipyard("runs", "list", "--json", cwd=tracked.folder)))
    assert [run["id"] for run in listed] == [
        tracked.ids[n] for n in ("broken", "deeper", "baseline")
    ]
    baseline = listed[2]
    assert baseline["params"] == {"depth": 3, "model": "rf"}
    assert baseline["metrics"] == {"auc": 0.9, "loss": 0.3}
    assert baseline["tags"] == {"team": "vision"}
    assert baseline["status"] == "finished" and baseline["duration_s"] >= 0

    failed = run_shipyard("runs", "list", "--status", "failed", "--json", cwd=tracked.folder)
    assert [run["name"] for run in json.loads(succeeded(failed))] == ["broken"]
    newest = run_shipyard("runs", "list", "--limit", "1", "--json", cwd=tracked.folder)
    assert [run["name"] for run in json.loads(succeeded(newest))] == ["broken"]
    none = succeeded(run_shipyard("runs", "list", "--pipeline", "nope", cwd=tracked.folder))
    assert "no runs match these filters" in none


def test_show_by_prefix(tracked: Tracked) -> None:
    run_id = tracked.ids["baseline"]
    stdout = succeeded(run_shipyard("runs", "show", run_id[:6], cwd=tracked.folder))
    lines = [line for line in stdout.splitlines() if not re.search(r"[│┃━|]", line)]
    facts = {cells[0]: " ".join(cells[1:]) for cells in map(_cells, lines) if len(cells) > 1}
    assert facts["run"] == run_id
    assert facts["status"] == "finished"
    assert facts["name"] == "baseline"
    assert facts["seed"] == "7"
    assert facts["code"].startswith(f"{COMMIT[:12]} (dirty") and "/src/app" in facts["code"]
    assert re.fullmatch(r"\d+\.\d+\.\d+ on .+", facts["python"])
    assert re.fullmatch(r"\d+ installed; no lock file", facts["packages"])
    assert "started" in facts and "duration" in facts
    assert _row(stdout, "depth")[:2] == ["depth", "3"]
    assert _row(stdout, "auc")[:3] == ["auc", "0.9", "2"]  # last value, number of points
    assert _row(stdout, "loss")[:3] == ["loss", "0.3", "1"]
    assert _row(stdout, "team")[:2] == ["team", "vision"]

    shown = json.loads(
        succeeded(run_shipyard("runs", "show", run_id[:8], "--json", cwd=tracked.folder))
    )
    assert shown["id"] == run_id
    assert shown["code"] == {"root": "/src/app", "commit": COMMIT, "dirty": True, "patch": None}
    assert shown["metrics"] == {
        "auc": {"last": 0.9, "points": 2},
        "loss": {"last": 0.3, "points": 1},
    }
    assert shown["environment"]["packages"] > 0 and shown["environment"]["lock_file"] is None
    artifacts = {(a["direction"], a["name"]): a for a in shown["artifacts"]}
    assert set(artifacts) == {("input", "train"), ("output", "model")}
    assert artifacts["output", "model"]["size"] == len(b"weights" * 300)
    model = _row(stdout, artifacts["output", "model"]["digest"][:12])
    assert model[:5] == ["out", "model", artifacts["output", "model"]["kind"], "2.1", "KiB"]
    train = _row(stdout, artifacts["input", "train"]["digest"][:12])
    assert train[:2] == ["in", "train"]
    assert shown["error"] is None


def test_show_a_failed_run_prints_its_traceback(tracked: Tracked) -> None:
    result = run_shipyard("runs", "show", tracked.ids["broken"], cwd=tracked.folder)
    assert (result.returncode, result.stderr) == (0, "")
    assert re.search(r"status\s+failed", result.stdout)
    error = result.stdout.split("error", 1)[1]
    assert "Traceback (most recent call last)" in error
    assert "RuntimeError: boom at epoch 3" in error


def test_compare_marks_the_rows_that_differ(tracked: Tracked) -> None:
    baseline, deeper = tracked.ids["baseline"], tracked.ids["deeper"]
    stdout = succeeded(run_shipyard("runs", "compare", baseline[:6], deeper, cwd=tracked.folder))
    assert baseline[:12] in stdout and deeper[:12] in stdout
    assert _row(stdout, "params.depth") == ["*", "params.depth", "3", "5"]
    assert _row(stdout, "params.model") == ["params.model", "rf", "rf"]
    assert _row(stdout, "metrics.auc") == ["*", "metrics.auc", "0.9", "0.93"]
    assert _row(stdout, "metrics.loss") == ["metrics.loss", "0.3", "0.3"]
    keys = [cells[-3] for cells in map(_cells, stdout.splitlines()) if len(cells) >= 3]
    keys = [key for key in keys if key.startswith(("params.", "metrics."))]
    assert keys == ["params.depth", "params.model", "metrics.auc", "metrics.loss"]
    assert "* values differ" in stdout

    three = run_shipyard(
        "runs", "compare", baseline, deeper, tracked.ids["broken"], "--json", cwd=tracked.folder
    )
    compared = json.loads(succeeded(three))
    assert [run["name"] for run in compared["runs"]] == ["baseline", "deeper", "broken"]
    rows = {row["key"]: row for row in compared["rows"]}
    assert rows["params.depth"] == {"key": "params.depth", "values": [3, 5, 5], "differs": True}
    assert rows["params.model"] == {
        "key": "params.model",
        "values": ["rf", "rf", None],
        "differs": True,
    }
    assert rows["metrics.loss"]["values"] == [0.3, 0.3, None]


def test_search_as_table_and_json(tracked: Tracked) -> None:
    query = "metrics.auc > 0.85 and params.model = 'rf'"
    stdout = succeeded(run_shipyard("runs", "search", query, cwd=tracked.folder))
    names = [_cells(line)[1] for line in stdout.splitlines() if re.search(r"[0-9a-f]{12}", line)]
    assert names == ["deeper", "baseline"]

    found = run_shipyard(
        "runs", "search", "params.depth = 5 or tags.team = 'vision'", "--json", cwd=tracked.folder
    )
    assert [run["name"] for run in json.loads(succeeded(found))] == ["broken", "deeper", "baseline"]
    limited = run_shipyard(
        "runs", "search", "not status = 'failed'", "--limit", "1", "--json", cwd=tracked.folder
    )
    assert [run["name"] for run in json.loads(succeeded(limited))] == ["deeper"]
    nothing = succeeded(run_shipyard("runs", "search", "name = 'nope'", cwd=tracked.folder))
    assert "no runs match name = 'nope'" in nothing


def _add_runs_with_prefix(tracked: Tracked, prefix: str) -> None:
    with tracked.db() as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
        names = ", ".join(f'"{c}"' for c in columns)
        copied = ", ".join("?" if c == "id" else f'"{c}"' for c in columns)
        for digit in "01":
            connection.execute(
                f"INSERT INTO runs ({names}) SELECT {copied} FROM runs WHERE id = ?",
                (prefix + digit * (32 - len(prefix)), tracked.ids["deeper"]),
            )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "show", "ffff0000"), r"no run 'ffff0000'; `shipyard runs list` shows the runs"),
        (("runs", "show", "feed"), r"run id 'feed' is ambiguous \(feed0+, feed1+, \.\.\.\)"),
        (("runs", "show", "abc"), r"a run id is 4 to 32 letters and digits; got 'abc'"),
        (("runs", "compare", "feed0", "ffff0000"), r"no run 'ffff0000'"),
        (("runs", "compare", "feed0"), r"compare needs at least two runs; got 1"),
        (
            ("runs", "search", "metrics.auc > abc"),
            r"expected a number after '>' at 14, got 'abc'$",
        ),
        (("runs", "search", "1=1; drop table runs"), r"expected a field \(metrics\.NAME, "),
        (("runs", "list", "--status", "done"), r"unknown run status 'done'"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    tracked: Tracked, args: tuple[str, ...], message: str
) -> None:
    _add_runs_with_prefix(tracked, "feed")
    with tracked.db() as connection:
        before = connection.execute("SELECT count(*) FROM runs").fetchone()
    result = run_shipyard(*args, cwd=tracked.folder)
    assert re.search(message, error_line(result))
    assert result.returncode == 2
    with tracked.db() as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == before
