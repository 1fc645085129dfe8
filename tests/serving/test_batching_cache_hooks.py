"""Micro-batching, the response cache, and per-model hooks and output filters, in process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from serving_helpers import FEATURES

from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.serving import Batch, ModelOptions, Predictor
from shipyard.serving.app import ServingApp
from shipyard.serving.cache import ResponseCache
from shipyard.serving.predictor import Prediction

ROW = {"age": 30, "income": 20000.0, "plan": "basic"}


def app_with(project: Project, **options: Any) -> ServingApp:
    predictor = Predictor.load("churn@1", project=project, options=ModelOptions.build(**options))
    app = ServingApp.of([predictor])
    app.load()
    return app


async def post_many(
    app: ServingApp, bodies: list[Any], path: str = "/predict"
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return list(
            await asyncio.gather(*(client.post(path, content=orjson.dumps(b)) for b in bodies))
        )


def batch_sizes(app: ServingApp) -> tuple[float, float]:
    text = app.metrics.render(app.sink).decode()
    values = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("shipyard_batch_rows_")
    }
    return values["shipyard_batch_rows_count"], values["shipyard_batch_rows_sum"]


def test_concurrent_requests_share_one_model_call(served_project: Project) -> None:
    app = app_with(served_project, max_batch_size=64, max_batch_wait_ms=50)
    rows = [{**ROW, "age": 20 + i} for i in range(20)]
    answers = asyncio.run(post_many(app, [[row] for row in rows]))
    alone = app.models["churn"].predictor.predict(rows).column()
    assert [a.json()["predictions"][0] for a in answers] == alone
    calls, predicted = batch_sizes(app)
    assert predicted == 20
    assert calls < 20  # gathered: fewer model calls than requests


def test_a_full_batch_is_cut_at_its_size(served_project: Project) -> None:
    app = app_with(served_project, max_batch_size=4, max_batch_wait_ms=1000)
    answers = asyncio.run(post_many(app, [[ROW]] * 8))
    assert all(a.status_code == 200 for a in answers)
    calls, predicted = batch_sizes(app)
    assert (calls, predicted) == (2, 8)  # two full batches, no one waited the second


def test_a_bad_request_in_a_batch_gets_its_own_error(served_project: Project) -> None:
    app = app_with(served_project, max_batch_size=64, max_batch_wait_ms=50)
    bodies: list[Any] = [[ROW], [{**ROW, "plan": "gold"}], [ROW], [{"age": 1}]]
    answers = asyncio.run(post_many(app, bodies))
    assert [a.status_code for a in answers] == [200, 422, 200, 422]
    assert "gold" in answers[1].text and "'income'" in answers[3].text


def test_the_cache_answers_repeats_and_counts(served_project: Project) -> None:
    app = app_with(served_project, cache_size=2, cache_ttl_s=60)
    bodies = [[ROW], [dict(reversed(list(ROW.items())))], [{**ROW, "age": 50}], [ROW]]
    answers = asyncio.run(post_many(app, bodies[:1]))
    answers += asyncio.run(post_many(app, bodies[1:]))
    assert len({a.json()["predictions"][0] for a in answers[:2]}) == 1
    cache = app.models["churn"].cache
    assert cache is not None
    assert (cache.hits, cache.misses) == (2, 2)  # key order does not matter
    text = app.metrics.render(app.sink).decode()
    assert 'shipyard_cache_total{model="churn",result="hit",version="1"} 2.0' in text, text


def test_cache_entries_expire_and_the_oldest_goes_first() -> None:
    now = [0.0]
    cache = ResponseCache(size=2, ttl_s=10, clock=lambda: now[0])
    answer = Prediction({"prediction": np.array([1])}, [None])
    keys = [ResponseCache.key(1, {"a": [i]}) for i in range(3)]
    for key in keys:
        cache.put(key, answer)
    assert cache.get(keys[0]) is None and len(cache) == 2  # bounded
    assert cache.get(keys[2]) is answer
    now[0] = 11
    assert cache.get(keys[2]) is None  # expired
    assert ResponseCache.key(1, {"a": [1]}) != ResponseCache.key(2, {"a": [1]})  # per version


def clean(frame: Any) -> Any:
    """Pre-processing: accept a missing income as 0 and plans in any case."""
    frame = pd.DataFrame(frame)
    frame["income"] = frame["income"].fillna(0.0)
    frame["plan"] = frame["plan"].str.lower()
    return frame


def threshold(batch: Batch) -> None:
    batch.outputs["prediction"] = (batch.probabilities()[:, 1] > 0.9).astype(int)
    batch.outputs["probability"] = batch.probabilities()[:, 1].round(6)


def refer_young(batch: Batch) -> Any:
    return np.asarray(batch.inputs["age"] < 25)


def test_hooks_shape_the_answer_and_a_filter_withholds_it(served_project: Project) -> None:
    app = app_with(served_project, preprocess=clean, postprocess=threshold, filters=refer_young)
    rows = [{"age": 22, "income": None, "plan": "PRO"}, {"age": 70, "income": 9.0, "plan": "Team"}]
    (answer,) = asyncio.run(post_many(app, [rows]))
    body = answer.json()
    assert body["predictions"][0] == {
        "prediction": None,
        "probability": None,
        "filtered": "refer_young",
    }
    assert set(body["predictions"][1]) == {"prediction", "probability"}
    assert body["filtered"] == ["refer_young", None]
    text = app.metrics.render(app.sink).decode()
    assert 'shipyard_filtered_outputs_total{model="churn",rule="refer_young"} 1.0' in text
    hooks = app.models["churn"].predictor.options.hooks
    assert set(hooks) == {"clean", "threshold", "refer_young"} and all(
        len(h) == 64 for h in hooks.values()
    )


def test_hooks_by_name_from_settings_and_their_errors(
    served_project: Project, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_hooks.py").write_text("def broken(batch):\n    return [True, False]\n")
    monkeypatch.chdir(tmp_path)
    options = ModelOptions.from_settings("churn", {"filters": ["my_hooks:broken"]})
    assert options.filters[0].name == "broken"
    app = ServingApp.of([Predictor.load("churn@1", project=served_project, options=options)])
    with pytest.raises(Exception, match="one boolean per row"):
        app.load()  # warm-up runs the filter: a broken hook stops the server before it is ready
    with pytest.raises(InvalidInput, match="unknown serving option max_batch"):
        ModelOptions.from_settings("churn", {"max_batch": 3})
    with pytest.raises(InvalidInput, match="module:function"):
        ModelOptions.from_settings("churn", {"preprocess": "nocolon"})
    with pytest.raises(InvalidInput, match="cannot import"):
        ModelOptions.from_settings("churn", {"preprocess": "no_such_module:f"})
    with pytest.raises(InvalidInput, match="max_batch_size must be an integer >= 1"):
        ModelOptions.from_settings("churn", {"max_batch_size": 0})


def test_signature_columns_are_what_the_hooks_see(served_project: Project) -> None:
    seen: list[list[str]] = []

    def spy(batch: Batch) -> None:
        seen.append(list(batch.inputs.columns))

    predictor = Predictor.load(
        "churn@1", project=served_project, options=ModelOptions.build(postprocess=spy)
    )
    predictor.predict([ROW])
    assert seen == [FEATURES]
