"""Helpers for the drift tests: a registered model, its training data, logged traffic."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import shipyard.data as data
from shipyard.predictions.log import open_log
from shipyard.project import Project
from shipyard.registry.versions import ModelVersion, register
from shipyard.serving.record import PredictionRecord

FEATURES = ["age", "income", "plan"]
PLANS = ["basic", "pro", "team"]
T0 = 1_714_568_400.0  # 2024-05-01T13:00:00Z
HOUR = 3600.0


def frame(
    rows: int, seed: int, *, age_shift: int = 0, plans: list[float] | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    result = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows) + age_shift,
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "plan": rng.choice(PLANS, rows, p=plans),
        }
    )
    score = -0.08 * (result["age"] - 45) + (result["plan"] == "basic") * 1.5
    result["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return result


def register_model(project: Project, rows: int = 1500, name: str = "churn") -> ModelVersion:
    train = frame(rows, seed=0)
    stored = data.add(train, f"{name}-train", project=project)
    encode = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    model = Pipeline([("encode", encode), ("fit", LogisticRegression(max_iter=1000))])
    model.fit(train[FEATURES], train["churned"])
    return register(model, name, training_data=stored, target="churned", project=project)


def records(
    rows: pd.DataFrame,
    start: float,
    *,
    model: str = "churn",
    prefix: str = "r",
    arm: str = "default",
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> list[PredictionRecord]:
    """One predict-protocol record per row, a millisecond apart from `start`."""
    found = []
    for index, row in enumerate(rows[FEATURES].to_dict("records")):
        inputs = {**row, **(extra or {})}
        found.append(
            PredictionRecord(
                request_id=f"{prefix}{index}",
                time=start + index * 0.001,
                model=model,
                version=1,
                protocol="predict",
                inputs=json.dumps(inputs),
                outputs=json.dumps({"predictions": [int(row["age"] < 45)]}),
                latency_ms=1.0,
                arm=arm,
                status=status,
            )
        )
    return found


def write_log(project: Project, items: list[PredictionRecord]) -> None:
    log = open_log(project.settings)
    for item in items:
        log.append(item)
    log.close()
