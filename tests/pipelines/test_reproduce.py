"""`shipyard reproduce`: a pipeline committed to a real git repository, run by the real CLI, then
re-run from its recorded commit (and uncommitted patch), parameters and seed, and compared.

One repository is shared by the module; the runs of each test leave the committed tree as
they found it.
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

from shipyard.errors import InvalidInput
from shipyard.pipelines.reproduce import reproduce
from shipyard.project import Project
from shipyard.tracking import get_run, start_run

SHIPYARD = Path(sys.executable).parent / "shipyard"

PIPELINE = """
import os
from pathlib import Path

import numpy as np

from shipyard.pipelines import pipeline, step

SCALE = 2.0


@step
def make(n: int) -> list[float]:
    return [float(x) for x in np.random.rand(n)]


@step
def fit(values: list[float]) -> float:
    return sum(values) * SCALE


@step
def salt(chaos: bool) -> str:
    # Not seeded by anything: a reproduction cannot give the same bytes.
    return os.urandom(8).hex() if chaos else "calm"


@step
def drift(drift_file: str) -> float:
    extra = float(Path(drift_file).read_text()) if drift_file else 0.0
    return 1.0 + extra


@pipeline
def train(n: int = 5, chaos: bool = False, drift_file: str = ""):
    fit(make(n))
    salt(chaos)
    drift(drift_file)
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@dataclass
class Repo:
    folder: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.folder, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shipyard(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SHIPYARD), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def run(self, *args: str) -> dict[str, Any]:
        done = self.shipyard("run", "pipeline.py", *args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def project(self) -> Project:
        return Project.open(self.folder / ".shipyard")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    folder = tmp_path_factory.mktemp("repro")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "GIT_"))}
    env.update(GIT_ENV)
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1"})
    space = Repo(folder, env)
    (folder / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (folder / ".gitignore").write_text(".shipyard/\ndrift.txt\n")
    space.git("init", "-q", "-b", "main")
    space.git("add", "pipeline.py", ".gitignore")
    space.git("commit", "-q", "-m", "pipeline")
    Project.init(folder / ".shipyard").close()
    yield space


def test_a_clean_run_reproduces_identically(repo: Repo) -> None:
    original = repo.run("--param", "n=4")
    run_id = original["run_id"]
    info = get_run(run_id, project=repo.project())
    assert info.code_commit == repo.git("rev-parse", "HEAD").strip()
    assert info.code_dirty is False
    assert info.source == "pipeline.py:train"

    done = repo.shipyard("reproduce", run_id[:8])
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"reproduced run {run_id} as run" in out
    assert f"commit {info.code_commit[:12]} checked out" in out
    for output in ("make.output", "fit.output", "salt.output", "drift.output"):
        line = next(line for line in out.splitlines() if output in line)
        assert "identical" in line
    assert "environment: same packages and python" in out
    assert out.strip().splitlines()[-1] == "reproduced"

    new_id = out.split(" as run ", 1)[1].split()[0]
    again = get_run(new_id, project=repo.project())
    assert again.reproduces == run_id
    assert again.params == info.params
    assert again.seed == info.seed
    # The worktree the reproduction ran in is gone again.
    assert repo.git("worktree", "list").count("\n") == 1


def test_uncommitted_changes_are_reapplied(repo: Repo) -> None:
    pipeline_file = repo.folder / "pipeline.py"
    committed = pipeline_file.read_text()
    pipeline_file.write_text(committed.replace("SCALE = 2.0", "SCALE = 3.0"))
    try:
        dirty = repo.run("--param", "n=3")
    finally:
        pipeline_file.write_text(committed)
    project = repo.project()
    info = get_run(dirty["run_id"], project=project)
    assert info.code_dirty is True
    assert info.code_patch is not None

    report = reproduce(dirty["run_id"], project=project)
    assert report.code.endswith("with the run's uncommitted changes applied")
    assert report.status == "finished"
    assert {v.name: v.verdict for v in report.verdicts} == {
        "make.output": "identical",
        "fit.output": "identical",  # computed with SCALE = 3.0, as the original was
        "salt.output": "identical",
        "drift.output": "identical",
    }
    assert report.reproduced
    assert report.package_changes == []
    assert report.python_change is None
    assert repo.git("status", "--porcelain").strip() == ""


def test_unseeded_randomness_is_different_and_tiny_float_drift_is_close(repo: Repo) -> None:
    drift = repo.folder / "drift.txt"  # git-ignored: the same file is read by the reproduction
    drift.write_text("0.0")
    original = repo.run("--param", "chaos=true", "--param", f"drift_file={drift}")
    drift.write_text("1e-12")

    done = repo.shipyard("reproduce", original["run_id"], "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    verdicts = {v["name"]: v["verdict"] for v in report["verdicts"]}
    assert verdicts == {
        "make.output": "identical",
        "fit.output": "identical",
        "salt.output": "different",
        "drift.output": "close",
    }
    assert report["reproduced"] is False
    assert report["original"] == original["run_id"]


def test_a_run_not_made_by_a_pipeline_cannot_be_reproduced(repo: Repo) -> None:
    project = repo.project()
    with start_run("by hand", project=project) as run:
        run.log_metric("x", 1.0)
    with pytest.raises(InvalidInput, match="only pipeline runs can be reproduced"):
        reproduce(run.id, project=project)
