"""Step caching as a user meets it: a pipeline and its helper modules in a folder, edited between
runs of the real `shipyard run ... --json` in fresh interpreters.

One folder and one baseline run are shared by the module; each test makes its change, runs,
checks which steps ran and why, and puts the change back, so the next test starts from the
baseline's cache again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.project import Project

SHIPYARD = Path(sys.executable).parent / "shipyard"

PIPELINE = """
from shipyard.pipelines import pipeline, step

import features


@step
def load(n: int) -> list[int]:
    return list(range(n))


@step
def featurize(values: list[int]) -> list[int]:
    return features.transform(values)


@step
def summary(values: list[int]) -> dict:
    return {"count": len(values), "max": max(values)}


@step
def train(values: list[int], rate: float = 0.5) -> float:
    return sum(values) * rate


@step
def report(model: float, stats: dict) -> str:
    return f"{model} over {stats['count']}"


@pipeline
def demo(n: int = 5, rate: float = 0.5):
    raw = load(n)
    model = train(featurize(raw), rate=rate)
    report(model, summary(raw))
"""

FEATURES = """
from deep import shift


def transform(values):
    return [shift(v) for v in values]
"""

DEEP = """
OFFSET = 1


def shift(value):
    return value + OFFSET
"""

ALL = {"load", "featurize", "summary", "train", "report"}


@dataclass
class Workspace:
    folder: Path
    baseline: dict[str, Any]

    def run(self, *args: str) -> dict[str, Any]:
        """`shipyard run pipeline.py ARGS --json` in a fresh interpreter; its JSON line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        # No .pyc: an edit within the same second and of the same size could load stale bytecode.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        done = subprocess.run(
            [str(SHIPYARD), "run", "pipeline.py", *args, "--json"],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        # With every step cached nothing runs and no run is recorded: "up-to-date".
        executed = any(step["status"] == "finished" for step in result["steps"].values())
        assert result["status"] == ("finished" if executed else "up-to-date")
        assert (result["run_id"] is None) == (not executed)
        return result

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(textwrap.dedent(text))

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.folder / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))


def statuses(result: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, step in result["steps"].items():
        found.setdefault(step["status"], set()).add(name)
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    folder = tmp_path_factory.mktemp("cache")
    for name, text in (("pipeline.py", PIPELINE), ("features.py", FEATURES), ("deep.py", DEEP)):
        (folder / name).write_text(textwrap.dedent(text))
    Project.init(folder / ".shipyard").close()
    space = Workspace(folder, {})
    space.baseline = space.run()
    yield space


def test_the_first_run_runs_every_step(workspace: Workspace) -> None:
    assert statuses(workspace.baseline) == {"finished": ALL}
    for step in workspace.baseline["steps"].values():
        assert step["reason"] == "first run of this step"
        assert step["cached_from"] is None


def test_nothing_changed_reuses_every_step_and_names_its_run(workspace: Workspace) -> None:
    again = workspace.run()
    baseline_id = workspace.baseline["run_id"]
    assert again["status"] == "up-to-date"
    assert again["run_id"] is None  # nothing to do: no run recorded
    assert statuses(again) == {"cached": ALL}
    for name, step in again["steps"].items():
        assert step["cached_from"] == baseline_id
        assert step["reason"] == f"cached from run {baseline_id[:12]}"
        assert step["outputs"] == workspace.baseline["steps"][name]["outputs"]


def test_a_helper_two_modules_deep_reruns_the_steps_that_reach_it(workspace: Workspace) -> None:
    workspace.edit("deep.py", "return value + OFFSET", "return value + OFFSET * 10")
    try:
        again = workspace.run()
    finally:
        workspace.edit("deep.py", "return value + OFFSET * 10", "return value + OFFSET")
    assert statuses(again) == {
        "cached": {"load", "summary"},
        "finished": {"featurize", "train", "report"},
    }
    steps = again["steps"]
    assert steps["featurize"]["reason"] == "code changed: deep:shift changed"
    assert steps["train"]["reason"] == "input changed: values"
    assert steps["report"]["reason"] == "input changed: model"
    assert steps["load"]["cached_from"] == workspace.baseline["run_id"]


def test_a_constant_in_a_helper_is_part_of_the_code(workspace: Workspace) -> None:
    workspace.edit("deep.py", "OFFSET = 1\n", "OFFSET = 2\n")
    try:
        again = workspace.run()
    finally:
        workspace.edit("deep.py", "OFFSET = 2\n", "OFFSET = 1\n")
    assert "featurize" in statuses(again)["finished"]
    # The reason compares with the step's latest run, which may be another test's edit.
    reason = again["steps"]["featurize"]["reason"]
    assert reason.startswith("code changed: ")
    assert "deep:OFFSET changed" in reason.split(": ", 1)[1].split("; ")
    assert statuses(again)["cached"] == {"load", "summary"}


def test_comments_and_formatting_do_not_invalidate_the_cache(workspace: Workspace) -> None:
    original = (workspace.folder / "deep.py").read_text()
    workspace.write(
        "deep.py",
        """
        # The offset every feature is moved by.
        OFFSET = 1


        def shift(value):  # one value at a time
            # add the offset
            return (value +
                    OFFSET)
        """,
    )
    try:
        again = workspace.run()
    finally:
        (workspace.folder / "deep.py").write_text(original)
    assert statuses(again) == {"cached": ALL}


def test_a_changed_param_reruns_its_step_and_downstream_only(workspace: Workspace) -> None:
    again = workspace.run("--param", "rate=0.25")
    assert again["params"] == {"n": 5, "rate": 0.25}
    assert statuses(again) == {
        "cached": {"load", "featurize", "summary"},
        "finished": {"train", "report"},
    }
    assert again["steps"]["train"]["reason"] == "parameter rate: 0.5 -> 0.25"
    assert again["steps"]["report"]["reason"] == "input changed: model"


def test_no_cache_runs_every_step(workspace: Workspace) -> None:
    again = workspace.run("--no-cache")
    assert statuses(again) == {"finished": ALL}
    assert {step["reason"] for step in again["steps"].values()} == {"--no-cache"}
    # Same code, data and seed: the same outputs.
    for name, step in again["steps"].items():
        assert step["outputs"] == workspace.baseline["steps"][name]["outputs"]


def test_a_changed_lock_file_reruns_every_step(workspace: Workspace) -> None:
    lock = workspace.folder / "uv.lock"
    lock.write_text('version = 1\n[[package]]\nname = "numpy"\nversion = "2.0.0"\n')
    try:
        first = workspace.run()
        assert statuses(first) == {"finished": ALL}
        for step in first["steps"].values():
            assert step["reason"] == "dependencies changed (lock file or installed packages)"
    finally:
        lock.unlink()


def test_a_deleted_output_blob_reruns_its_step(workspace: Workspace) -> None:
    digest = workspace.baseline["steps"]["load"]["outputs"]["output"]
    blob = workspace.folder / ".shipyard" / "artifacts" / "sha256" / digest[:2] / digest
    assert blob.is_file()
    blob.unlink()
    again = workspace.run()
    assert statuses(again) == {"finished": {"load"}, "cached": ALL - {"load"}}
    assert (
        again["steps"]["load"]["reason"] == "its cached outputs are no longer in the artifact store"
    )
    assert blob.is_file()  # stored again, with the same content
