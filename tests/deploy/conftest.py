"""Fixtures for the deployment tests: a project with a registered scikit-learn model.

The project is made once per session and copied into each test's folder (a local SQLite
project is its folder), so each test starts from churn@1 and churn@2 without refitting them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import Registered, churn_frame, register_churn

from shipyard.project import Project
from shipyard.registry.versions import get


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "container: builds and runs a real image with Podman (minutes; see docs)"
    )


@pytest.fixture(scope="session")
def registered_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("registered")
    project = Project.init(folder / ".shipyard")
    try:
        register_churn(project)
    finally:
        project.close()
    return folder / ".shipyard"


@pytest.fixture
def registered(registered_template: Path, tmp_path: Path) -> Iterator[Registered]:
    """A SQLite project in this test's folder (the current directory) holding churn@1, @2."""
    shutil.copytree(registered_template, tmp_path / ".shipyard")
    project = Project.open(tmp_path / ".shipyard")
    yield Registered(
        project=project,
        folder=tmp_path,
        v1=get("churn@1", project=project),
        champion=get("churn@champion", project=project),
        frame=churn_frame(),
    )
    project.close()
