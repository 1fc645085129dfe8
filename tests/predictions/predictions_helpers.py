"""Helpers for the prediction log tests: records, and reading the files back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from shipyard.predictions.log import open_log
from shipyard.project import Project
from shipyard.serving import protocols
from shipyard.serving.predictor import Predictor
from shipyard.serving.record import PredictionRecord

HOUR = 3600.0
T0 = 1_714_568_400.0  # 2024-05-01T13:00:00Z


def record(
    i: int, *, model: str = "churn", at: float | None = None, **fields: Any
) -> PredictionRecord:
    values: dict[str, Any] = {
        "request_id": f"r{i}",
        "time": T0 + i * 0.001 if at is None else at,
        "model": model,
        "version": 1,
        "protocol": "predict",
        "inputs": f'{{"age": {i}}}',
        "outputs": f'{{"predictions": [{i % 2}]}}',
        "latency_ms": 0.25 * i,
    }
    values.update(fields)
    return PredictionRecord(**values)


def part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if p.name.startswith("part-"))


def written_ids(folder: Path) -> list[str]:
    """The request ids in every finished file (each file must read whole)."""
    ids: list[str] = []
    for path in part_files(folder):
        ids.extend(pq.read_table(path, columns=["request_id"]).column(0).to_pylist())
    return ids


def wait_until(condition: Any, timeout: float = 10.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(every)


# -- a registered model and the records the server would log for it -----------------------

FEATURES = ["age", "income", "tenure"]
ROWS = [
    {"age": 30, "income": 20000.5, "tenure": 3},
    {"age": 61, "income": 52000.0, "tenure": 80},
    {"age": 45, "income": 31000.0, "tenure": 12},
]


def churn_frame(rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "tenure": rng.integers(0, 120, rows),
        }
    )
    frame["churned"] = (frame["age"] + rng.normal(0, 10, rows) < 45).astype(int)
    return frame


def answered(
    project: Project,
    request_id: str,
    body: Any,
    protocol: str = "predict",
    *,
    tamper: Any = None,
    hooks: dict[str, str] | None = None,
    arm: str = "default",
    headers: dict[str, str] | None = None,
    onnx: bool = True,
) -> PredictionRecord:
    """The record the server would log for this request (outputs changed by `tamper`)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    predictor = Predictor.load("churn@1", project=project, onnx=onnx)
    response = protocols.answer(protocol, raw, predictor, headers=headers, request_id=request_id)
    if tamper is not None:
        tamper(response)
    return PredictionRecord(
        request_id=request_id,
        time=time.time(),
        model="churn",
        version=1,
        protocol=protocol,
        inputs=protocols.logged_request(raw, headers or {}),
        outputs=orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        latency_ms=1.0,
        arm=arm,
        hooks=predictor.options.hooks if hooks is None else hooks,
    )


def logged(project: Project, *records: PredictionRecord) -> None:
    log = open_log(project.settings)
    for item in records:
        log.append(item)
    log.close()
