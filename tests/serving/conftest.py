"""Serving fixtures: a project with a registered churn model, and a real `shipyard serve`."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import Server, register_churn, start_server

from shipyard.project import Project
from shipyard.registry.aliases import set_alias


@pytest.fixture
def served_project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    register_churn(project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    yield project
    project.close()


@pytest.fixture
def server(served_project: Project) -> Iterator[Server]:
    started = start_server(served_project.home.parent, "churn@1")
    yield started
    if started.process.poll() is None:
        os.killpg(started.process.pid, signal.SIGKILL)
        started.process.wait()
