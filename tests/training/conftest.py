"""Fixtures for the continuous-training tests.

A project is built once per session: weather@1 (400 days), weather-holdout@1 (300 days), the
weather pipeline at pipelines/weather_pipeline.py, and weather@1 (a model trained by that
pipeline) as champion. Each test works on its own copy, opened with the settings it needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from training_helpers import OpenProject, weather_frame, write_pipeline

import shipyard.data as data
from shipyard.pipelines.execution import run_pipeline
from shipyard.pipelines.loading import load_pipeline
from shipyard.project import Project
from shipyard.registry.aliases import set_alias


@pytest.fixture(scope="session")
def weather_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct") / "project"
    project = Project.init(folder / ".shipyard")
    path = write_pipeline(folder)
    data.add(weather_frame(400, 1), "weather", project=project)
    data.add(weather_frame(300, 2), "weather-holdout", project=project)
    pipeline, _ = load_pipeline(f"{path}:weather")
    run_pipeline(pipeline, {"data": "weather@1"}, project=project, progress=False)
    set_alias("weather", "champion", 1, project=project)
    project.close()
    return folder


@pytest.fixture
def weather_project(weather_template: Path, tmp_path: Path) -> Iterator[OpenProject]:
    """Opens this test's copy of the weather project with the settings given (training=...,
    policies=...); the copy's root folder is tmp_path / "work"."""
    folder = tmp_path / "work"
    shutil.copytree(weather_template, folder)
    opened: list[Project] = []

    def open_with(**settings: Any) -> Project:
        project = Project.open(folder / ".shipyard", **settings)
        opened.append(project)
        return project

    yield open_with
    for project in opened:
        project.close()
