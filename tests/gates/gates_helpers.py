"""Helpers for the gate tests: churn-like data, the models trained on it, a policy builder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipyard.gates import Policy
from shipyard.gates.policy import Gate

FEATURES = ["age", "visits", "spend", "plan"]
HOLDOUT = "customers-test@1"


def churn_frame(rows: int, seed: int, *, noisy_city: str | None = None) -> pd.DataFrame:
    """Customers with a churn label that depends on age, visits and plan."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "visits": rng.integers(0, 15, rows),
            "spend": np.round(rng.uniform(0, 500, rows), 2),
            "plan": rng.choice(["basic", "pro", "team"], rows),
            "city": rng.choice(["north", "south", "east"], rows),
            "segment": rng.choice(["a", "b"], rows),
        }
    )
    logit = (
        -0.5
        + 0.06 * (frame["age"] - 48)
        - 0.35 * (frame["visits"] - 7)
        + 1.2 * (frame["plan"] == "basic")
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    if noisy_city is not None:
        noisy = (frame["city"] == noisy_city).to_numpy()
        churned[noisy] = rng.random(int(noisy.sum())) < 0.5
    frame["churned"] = churned
    return frame


def logistic(c: float, features: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f for f in features if f != "plan"]
    steps = [("numbers", StandardScaler(), numeric)]
    if "plan" in features:
        steps.append(("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]))
    return make_pipeline(ColumnTransformer(steps), LogisticRegression(C=c, max_iter=500))


def policy(*gates: Gate, **fields: Any) -> Policy:
    """A `champion` policy judged on the holdout."""
    fields.setdefault("holdout", HOLDOUT)
    fields.setdefault("target", "churned")
    return Policy("champion", list(gates), **fields)
