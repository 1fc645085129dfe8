"""A firing whose pipeline fails is recorded as failed, with the stage, the error and the run,
on both metadata backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from training_helpers import policies, training, weather_frame, write_pipeline

import shipyard.data as data
from shipyard.project import Project
from shipyard.training import history, run_once


@pytest.fixture
def configured(project: Project) -> Iterator[Project]:
    """The backend's project, opened with training settings whose pipeline fails."""
    root = project.home.resolve().parent
    write_pipeline(root)
    data.add(weather_frame(200, 1), "weather", project=project)
    settings = training({"name": "new-data", "kind": "dataset"}, params={"fail": True})
    opened = Project.open(
        project.home,
        database_url=project.settings.database_url,
        training=settings,
        policies=policies(),
    )
    yield opened
    opened.close()


def test_a_failing_pipeline_is_recorded_as_failed(configured: Project) -> None:
    (firing,) = run_once(project=configured)

    assert firing.status == "failed"
    assert firing.reason == "weather@1 exists and no trained version used weather"
    assert firing.detail["stage"] == "pipeline"
    assert (
        "step fit failed: RuntimeError: the training data is unusable on purpose"
        in (firing.detail["error"])
    )
    assert firing.run_id is not None and firing.version is None and firing.rollout is None
    assert "failed at the pipeline stage in run" in firing.describe()
    assert history("weather", project=configured) == [firing]
    assert run_once(project=configured) == []  # weather@1 was tried: not again
