"""Fixtures for the scoring tests: a project with customers and a churn model, a Dask cluster.

The project is built once per session and copied into each test's folder (which becomes the
working folder, so the model's hook module imports from there):

    customers@1   3,000 rows: id, age, visits, spend, plan, city, churned
    churn@1       logistic regression on age, visits, spend, plan; alias champion
    [serving.churn] an output filter `refer_old` (age > 75) from score_hooks.py
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from scoring_helpers import FEATURES, HOOKS, SERVING, customers, logistic

import shipyard.data as data
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import register

ROWS = 3000


@pytest.fixture(scope="session")
def scoring_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scoring") / "project"
    folder.mkdir()
    project = Project.init(folder / ".shipyard")
    frame = customers(ROWS, 1)
    version = data.add(frame, "customers", project=project)
    model = logistic().fit(frame[FEATURES], frame["churned"])
    register(model, "churn", training_data=version, target="churned", project=project)
    set_alias("churn", "champion", 1, project=project)
    project.close()
    (folder / "score_hooks.py").write_text(HOOKS)
    with (folder / ".shipyard" / "shipyard.toml").open("a") as settings:
        settings.write(SERVING)
    return folder


@pytest.fixture
def folder(scoring_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the scoring project, as the working folder."""
    copy = tmp_path / "work"
    shutil.copytree(scoring_template, copy)
    monkeypatch.chdir(copy)
    return copy


@pytest.fixture
def project(folder: Path) -> Iterator[Project]:
    opened = Project.open(folder / ".shipyard")
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A real LocalCluster of two worker processes on 127.0.0.1: its scheduler's HOST:PORT."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        yield str(cluster.scheduler_address).removeprefix("tcp://")
    finally:
        cluster.close()
