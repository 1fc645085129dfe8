"""The three protocols on one model, in process (the ASGI app without a socket): what each
accepts, what it answers, and the 4xx every kind of bad input gets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from serving_helpers import FEATURES, churn_frame

from shipyard.project import Project
from shipyard.serving import Predictor
from shipyard.serving.app import ServingApp
from shipyard.serving.request_ids import made_at

ROWS = [
    {"age": 30, "income": 20000.0, "plan": "basic"},
    {"age": 70, "income": 50000.5, "plan": "pro"},
]


class Client:
    """Synchronous calls into the app through httpx's ASGI transport."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
        return self.loop.run_until_complete(
            self.client.request(method, path, content=body, **kwargs)
        )

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, body, **kwargs)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture
def predictor(served_project: Project) -> Predictor:
    return Predictor.load("churn@1", project=served_project)


@pytest.fixture
def client(predictor: Predictor) -> Iterator[Client]:
    app = ServingApp.of([predictor], max_body_bytes=64 * 1024)
    app.load()
    made = Client(app)
    yield made
    made.close()


def expected(predictor: Predictor, rows: list[dict[str, Any]]) -> list[int]:
    frame = churn_frame().iloc[:0][FEATURES]
    import pandas as pd

    frame = pd.DataFrame(rows).astype({"plan": frame["plan"].dtype})
    return [int(value) for value in predictor.loaded.model.predict(frame)]


def test_plain_records_one_object_or_a_list(client: Client, predictor: Predictor) -> None:
    answer = client.post("/predict", ROWS)
    assert answer.status_code == 200
    assert answer.json() == {
        "model": "churn",
        "version": 1,
        "predictions": expected(predictor, ROWS),
    }
    one = client.post("/predict/churn", ROWS[0]).json()
    assert one["predictions"] == expected(predictor, ROWS[:1])
    assert client.post("/predict", {"records": ROWS}).json()["predictions"] == expected(
        predictor, ROWS
    )


def test_mlflow_scoring_payloads_all_agree(client: Client, predictor: Predictor) -> None:
    want = {"predictions": expected(predictor, ROWS)}
    split = {"columns": FEATURES, "data": [[row[name] for name in FEATURES] for row in ROWS]}
    payloads: list[Any] = [
        {"dataframe_split": split},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"instances": split["data"]},
        {"inputs": {name: [row[name] for row in ROWS] for name in FEATURES}},
        {"dataframe_records": ROWS, "params": {"unused": 1}},
    ]
    for payload in payloads:
        answer = client.post("/invocations", payload)
        assert (answer.status_code, answer.json()) == (200, want), payload
    csv = "age,income,plan\n30,20000.0,basic\n70,50000.5,pro\n"
    answer = client.post("/invocations", csv.encode(), headers={"content-type": "text/csv"})
    assert answer.json() == want


def test_open_inference_protocol_columns_matrix_and_outputs(
    client: Client, predictor: Predictor
) -> None:
    columns = {
        "id": "req-7",
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 70]},
            {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[20000.0], [50000.5]]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    answer = client.post("/v2/models/churn/versions/1/infer", columns)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("churn", "1", "req-7")
    predict, proba = body["outputs"]
    assert predict == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [2],
        "data": expected(predictor, ROWS),
    }
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 2]
    assert np.allclose(np.asarray(proba["data"]).reshape(2, 2).sum(axis=1), 1.0)
    metadata = client.request("GET", "/v2/models/churn").json()
    assert [item["name"] for item in metadata["inputs"]] == FEATURES
    assert metadata["versions"] == ["1"]
    assert client.request("GET", "/v2/models/churn/ready").status_code == 200
    assert client.request("GET", "/v2").json()["name"] == "shipyard"


def test_a_request_id_is_kept_or_made(client: Client) -> None:
    given = client.post("/predict", ROWS, headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.post("/predict", ROWS)
    assert len(made.headers["x-request-id"]) == 32
    assert made_at(made.headers["x-request-id"]) is not None  # UUIDv7: it carries its time
    odd = client.post("/predict", ROWS, headers={"x-request-id": "has spaces\tand tabs"})
    assert odd.headers["x-request-id"] != "has spaces\tand tabs"


def v2(*tensors: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": list(tensors)}


AGE = {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]}
INCOME = {"name": "income", "shape": [1], "datatype": "FP64", "data": [2.5]}
PLAN = {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]}

BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("malformed JSON", "/predict", b"{not json", 400, "malformed JSON"),
    ("empty body", "/predict", b"", 400, "empty"),
    ("missing input", "/predict", [{"age": 30, "income": 2.5}], 422, "'plan'"),
    ("extra input", "/predict", [{**ROWS[0], "agee": 3}], 422, "unexpected input 'agee'"),
    ("string for a number", "/predict", [{**ROWS[0], "age": "thirty"}], 422, "column 'age'"),
    ("unknown category", "/predict", [{**ROWS[0], "plan": "gold"}], 422, "gold"),
    (
        "NaN in a non-nullable column",
        "/predict",
        b'[{"age": 30, "income": NaN, "plan": "pro"}]',
        422,
        "income",
    ),
    ("not records", "/predict", 42, 422, "object"),
    ("mlflow without a format", "/invocations", {"rows": ROWS}, 400, "dataframe_split"),
    (
        "mlflow two formats",
        "/invocations",
        {"instances": ROWS, "dataframe_records": ROWS},
        400,
        "exactly one",
    ),
    (
        "split with a short row",
        "/invocations",
        {"dataframe_split": {"columns": FEATURES, "data": [[1, 2]]}},
        422,
        "2 values for 3 columns",
    ),
    (
        "v2 wrong datatype",
        "/v2/models/churn/infer",
        v2({**AGE, "datatype": "FLOAT"}, INCOME, PLAN),
        422,
        "datatype 'FLOAT'",
    ),
    (
        "v2 string in FP64",
        "/v2/models/churn/infer",
        v2(AGE, {**INCOME, "data": ["x"]}, PLAN),
        422,
        "FP64 takes numbers",
    ),
    (
        "v2 shape and data disagree",
        "/v2/models/churn/infer",
        v2({**AGE, "shape": [2]}, INCOME, PLAN),
        422,
        "holds 2 values",
    ),
    ("v2 missing input", "/v2/models/churn/infer", v2(AGE, INCOME), 422, "'plan'"),
    ("v2 input twice", "/v2/models/churn/infer", v2(AGE, AGE, INCOME, PLAN), 422, "twice"),
    (
        "v2 rank 3 column",
        "/v2/models/churn/infer",
        v2({**AGE, "shape": [1, 1, 1]}, INCOME, PLAN),
        422,
        "[rows]",
    ),
    (
        "v2 datatype not a string",
        "/v2/models/churn/infer",
        v2({**AGE, "datatype": []}, INCOME, PLAN),
        422,
        "datatype []",
    ),
    (
        "v2 parameters not an object",
        "/v2/models/churn/infer",
        {**v2(AGE, INCOME, PLAN), "parameters": [1]},
        422,
        "'parameters' must be an object",
    ),
    (
        "v2 null in a column that is not nullable",
        "/v2/models/churn/infer",
        v2({**AGE, "data": [None]}, INCOME, PLAN),
        422,
        "age",
    ),
    ("v2 no inputs", "/v2/models/churn/infer", {"inputs": []}, 422, "non-empty"),
    (
        "v2 unknown output",
        "/v2/models/churn/infer",
        {**v2(AGE, INCOME, PLAN), "outputs": [{"name": "nope"}]},
        422,
        "'nope'",
    ),
    ("unknown model", "/v2/models/nope/infer", v2(AGE), 404, "'nope' is not served"),
    ("unknown version", "/v2/models/churn/versions/9/infer", v2(AGE), 404, "version '9'"),
    ("unknown path", "/v3/whatever", {}, 404, "no endpoint"),
]


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "says"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_input_is_a_4xx_naming_the_problem(
    client: Client, case: str, path: str, body: Any, status: int, says: str
) -> None:
    answer = client.post(path, body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert says in json.dumps(error), error
    assert "Traceback" not in answer.text


def test_a_body_over_the_limit_is_413(client: Client) -> None:
    big = orjson.dumps([ROWS[0]] * 5000)
    answer = client.post("/predict", big)
    assert answer.status_code == 413
    assert answer.json()["expected"] == f"at most {64 * 1024} bytes"


def test_wrong_method_is_405(client: Client) -> None:
    assert client.request("GET", "/predict").status_code == 405
    assert client.request("DELETE", "/v2/models/churn/infer").status_code == 405


def test_readiness_waits_for_the_models(predictor: Predictor) -> None:
    app = ServingApp.of([predictor])
    client = Client(app)
    try:
        assert client.request("GET", "/v2/health/live").status_code == 200
        assert client.request("GET", "/v2/health/ready").status_code == 503
        assert client.post("/predict", ROWS).status_code == 503
        app.load()
        assert client.request("GET", "/v2/health/ready").status_code == 200
    finally:
        client.close()


def test_explanations_add_up_and_importance_ranks_features(client: Client) -> None:
    request = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 70]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [20000.0, 50000.5]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
        ]
    }
    answer = client.post("/v2/models/churn/explain", request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "churn" and len(body["contributions"]) == 2
    assert body["method"] == "linear"
    importance = client.request("GET", "/v2/models/churn/importance").json()
    assert importance["importance"] and importance["method"]
    bad = client.post("/v2/models/churn/explain", {"inputs": [request["inputs"][0]]})
    assert bad.status_code == 422
