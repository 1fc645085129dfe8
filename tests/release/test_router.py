"""The router in process: a flag that switches a post-processor off for some requests only,
and the fast path when nothing is live."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from serving_helpers import register_churn

from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.release import flagstore
from shipyard.release.router import ReleaseRouter
from shipyard.serving import Batch, ModelOptions, Predictor
from shipyard.serving.app import ServingApp

ROWS = {
    "pro": {"age": 30, "income": 20000.0, "plan": "pro"},
    "basic": {"age": 30, "income": 20000.0, "plan": "basic"},
}


def seven(batch: Batch) -> None:
    """A post-processor whose effect is plain to see."""
    batch.outputs["prediction"] = batch.outputs["prediction"] * 0 + 7


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    register_churn(project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    yield project
    project.close()


def app_for(project: Project) -> ServingApp:
    options = ModelOptions.build(postprocess=seven)

    def load_version(name: str, version: int, default: Predictor) -> Predictor:
        return Predictor.load(f"{name}@{version}", project=project, options=default.options)

    predictor = Predictor.load("churn@1", project=project, options=options)
    router = ReleaseRouter(project, load_version=load_version)
    app = ServingApp.of([predictor], router=router)
    app.load()
    return app


def predict(app: ServingApp, row: dict[str, object]) -> list[object]:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/predict", content=orjson.dumps([row]))

    answer = asyncio.run(post())
    assert answer.status_code == 200, answer.text
    predictions: list[object] = answer.json()["predictions"]
    return predictions


def test_a_flag_switches_a_post_processor_off_for_matching_requests_only(
    project: Project,
) -> None:
    app = app_for(project)
    try:
        assert predict(app, ROWS["pro"]) == [7] and predict(app, ROWS["basic"]) == [7]
        flagstore.set_flag(
            "churn",
            {
                "name": "raw-for-pro",
                "rules": [
                    {
                        "attribute": "plan",
                        "operator": "equals",
                        "value": "pro",
                        "outcome": {"postprocess": {"seven": False}},
                    }
                ],
            },
            project=project,
        )
        assert app.router is not None and app.router.refresh()  # type: ignore[attr-defined]
        assert predict(app, ROWS["pro"]) != [7]  # the model's own answer
        assert predict(app, ROWS["basic"]) == [7]
        flagstore.kill("raw-for-pro", project=project)
        app.router.refresh()  # type: ignore[attr-defined]
        assert predict(app, ROWS["pro"]) == [7]
    finally:
        assert app.router is not None
        app.router.close()


def test_nothing_live_means_no_table_and_no_route(project: Project) -> None:
    app = app_for(project)
    try:
        router = app.router
        assert isinstance(router, ReleaseRouter)
        assert router.tables == {}
        assert router.route(app.models["churn"], {}, {"plan": ["pro"]}, False) is None
        assert router.refresh() is False  # the revision did not move: nothing is read again
    finally:
        assert app.router is not None
        app.router.close()
