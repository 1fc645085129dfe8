"""`shipyard run`, `shipyard lineage` and `shipyard --version` through the real console script.

One project folder, with its pipeline files, is shared by the module: every command is a fresh
interpreter, which is what makes these tests slow, so each one checks as much as it can.
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import error_line, run_shipyard, succeeded

from shipyard.project import Project

PIPELINES = """
from shipyard.pipelines import pipeline, step


@step
def load(n: int) -> list[int]:
    return list(range(n))


@step
def train(values: list[int], rate: float) -> float:
    return sum(values) * rate


@step
def explode(value: float) -> float:
    raise RuntimeError(f"cannot use {value}")


@pipeline
def fit(n: int = 4, rate: float = 0.5, verbose: bool = False):
    train(load(n), rate=rate)


@pipeline
def broken(n: int = 3):
    explode(train(load(n), rate=1.0))
"""


@dataclass
class Folder:
    path: Path

    def run_count(self) -> int:
        connection = sqlite3.connect(self.path / ".shipyard" / "shipyard.db")
        try:
            return int(connection.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            connection.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    path = tmp_path_factory.mktemp("cli-pipelines")
    (path / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    Project.init(path / ".shipyard").close()
    return Folder(path)


@pytest.fixture(scope="module")
def first_run(folder: Folder) -> tuple[str, str]:
    """`shipyard run pipelines.py:fit`, human output: the run id and what it printed."""
    result = run_shipyard("run", "pipelines.py:fit", "--param", "rate=0.25", cwd=folder.path)
    out = succeeded(result)
    match = re.search(r"pipeline fit: run ([0-9a-f]{32}) \(2 steps, in-process\)", out)
    assert match, out
    return match.group(1), out


def test_run_prints_a_line_per_step_and_why_it_ran(first_run: tuple[str, str]) -> None:
    run_id, out = first_run
    assert "▶ load: running (runs because: first run of this step)" in out
    assert re.search(r"✓ load: finished \([0-9.]+ s; ran because: first run of this step\)", out)
    assert re.search(r"✓ train: finished \([0-9.]+ s; ran because: first run of this step\)", out)
    assert re.search(rf"run {run_id} finished in [0-9.]+ s", out)


def test_a_second_run_says_each_step_is_cached_and_from_where(
    folder: Folder, first_run: tuple[str, str]
) -> None:
    run_id, _ = first_run
    out = succeeded(
        run_shipyard(
            "run", "pipelines.py:fit", "-p", "rate=0.25", "-p", "verbose=yes", cwd=folder.path
        )
    )
    assert f"↺ load: cached (from run {run_id[:12]})" in out
    assert f"↺ train: cached (from run {run_id[:12]})" in out
    assert "up to date: nothing ran and no run was recorded" in out
    assert "running" not in out
    recorded = succeeded(
        run_shipyard(
            "run", "pipelines.py:fit", "-p", "rate=0.25", "-p", "verbose=yes", "--record",
            cwd=folder.path,
        )
    )  # fmt: skip
    assert f"↺ load: cached (cached from run {run_id[:12]})" in recorded
    assert re.search(r"run [0-9a-f]{32} finished in", recorded)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "rat=2"], "pipeline fit has no parameter 'rat'; did you mean 'rate'?"),
        (["--param", "n=four"], "pipeline fit: parameter 'n' must be int; got 'four'"),
        (["--param", "n"], "--param 'n' is malformed: expected KEY=VALUE"),
    ],
)
def test_bad_options_give_one_error_line_and_record_nothing(
    folder: Folder, first_run: tuple[str, str], args: list[str], message: str
) -> None:
    before = folder.run_count()
    result = run_shipyard("run", "pipelines.py:fit", *args, cwd=folder.path)
    assert result.returncode == 2
    assert message in error_line(result)
    assert result.stdout == ""
    assert folder.run_count() == before


def test_a_missing_file_or_an_ambiguous_one_is_an_error(folder: Folder) -> None:
    missing = run_shipyard("run", "nowhere.py", cwd=folder.path)
    assert missing.returncode == 2
    assert error_line(missing) == "no pipeline file nowhere.py"

    ambiguous = run_shipyard("run", "pipelines.py", cwd=folder.path)
    assert ambiguous.returncode == 2
    assert error_line(ambiguous) == (
        "pipelines.py defines several pipelines (broken, fit): name one, e.g. pipelines.py:broken"
    )


def test_a_failing_step_exits_1_naming_the_step(folder: Folder) -> None:
    before = folder.run_count()
    result = run_shipyard("run", "pipelines.py:broken", cwd=folder.path)
    assert result.returncode == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: step explode failed: RuntimeError: cannot use 3.0")
    assert "inputs: value=<json from step train>" in result.stderr
    assert "✗ explode: failed (RuntimeError: cannot use 3.0)" in result.stdout
    assert folder.run_count() == before + 1
    run_id = re.search(r"--resume ([0-9a-f]{32})", result.stderr)
    assert run_id
    connection = sqlite3.connect(folder.path / ".shipyard" / "shipyard.db")
    try:
        status, error = connection.execute(
            "SELECT status, error FROM runs WHERE id = ?", (run_id.group(1),)
        ).fetchone()
    finally:
        connection.close()
    assert status == "failed"
    assert 'raise RuntimeError(f"cannot use {value}")' in error


def test_lineage_prints_a_tree(folder: Folder, first_run: tuple[str, str]) -> None:
    run_id, _ = first_run
    out = succeeded(run_shipyard("lineage", run_id[:10], cwd=folder.path))
    lines = out.splitlines()
    assert lines[0] == f"run {run_id[:12]} (pipeline fit)"
    assert "upstream (made from)" in out
    assert "downstream (used by)" in out
    assert re.search(r"code code (not under git|[0-9a-f]{12})$", out, re.MULTILINE)
    assert re.search(r"environment python \d+\.\d+\.\d+, \d+ packages", out)
    assert re.search(r"output json train\.output sha256:[0-9a-f]{12}", out)
    assert re.search(r"output json load\.output sha256:[0-9a-f]{12}", out)

    as_json = json.loads(succeeded(run_shipyard("lineage", run_id, "--json", cwd=folder.path)))
    assert as_json["root"] == {
        "kind": "run",
        "id": run_id,
        "label": f"run {run_id[:12]} (pipeline fit)",
        "relation": "",
        "details": as_json["root"]["details"],
    }
    assert {node["kind"] for node in as_json["upstream"]} == {"code", "environment"}


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    out = succeeded(run_shipyard("--version", cwd=tmp_path))
    assert out.strip() == version("shipyard")
