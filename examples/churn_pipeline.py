"""A churn model as a shipyard pipeline: load a dataset version, build features, split, try a
few tree depths in parallel shards, train the best, evaluate on held-out rows, keep those rows
as a dataset version (the gates' holdout), and register the model.

    shipyard run churn_pipeline.py --param data=customers@1 --param trees=100
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from churn_features import FEATURES, feature_frame
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

import shipyard
from shipyard.pipelines import pipeline, step, step_context
from shipyard.registry import registering
from shipyard.tracking import log_metric

register_churn = registering("churn", target="churned")


@step(cache=False)
def load(ref: str) -> shipyard.data.DatasetVersion:
    """The dataset version to train on. Never cached: "customers" names the latest version, which
    changes when data is added; its content hash is part of every later step's cache key."""
    return shipyard.data.get(ref)


@step
def features(version: shipyard.data.DatasetVersion) -> pd.DataFrame:
    return feature_frame(version.to_pandas())


@step(outputs=("train", "test"))
def split(frame: pd.DataFrame, test_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(
        frame, test_size=test_share, random_state=0, stratify=frame["churned"]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def score_depth(depth: int, train: pd.DataFrame, trees: int) -> dict[str, float]:
    """One shard of the search: cross-checked AUC of a forest with this depth."""
    fit, check = train_test_split(train, test_size=0.25, random_state=1)
    model = RandomForestClassifier(
        n_estimators=trees, max_depth=depth, random_state=np.random.randint(2**31)
    )
    model.fit(fit[FEATURES], fit["churned"])
    auc = roc_auc_score(check["churned"], model.predict_proba(check[FEATURES])[:, 1])
    return {"depth": depth, "auc": float(auc)}


@step
def fit(train: pd.DataFrame, scores: list[dict[str, float]], trees: int) -> RandomForestClassifier:
    best = max(scores, key=lambda score: score["auc"])
    log_metric("best_depth", best["depth"])
    model = RandomForestClassifier(
        n_estimators=trees, max_depth=int(best["depth"]), random_state=np.random.randint(2**31)
    )
    return model.fit(train[FEATURES], train["churned"])


@step
def evaluate(model: RandomForestClassifier, test: pd.DataFrame) -> dict[str, float]:
    probabilities = model.predict_proba(test[FEATURES])[:, 1]
    metrics = {
        "auc": float(roc_auc_score(test["churned"], probabilities)),
        "accuracy": float(accuracy_score(test["churned"], probabilities > 0.5)),
    }
    for name, value in metrics.items():
        log_metric(name, value)
    return metrics


@step
def holdout(test: pd.DataFrame) -> shipyard.data.DatasetVersion:
    """The held-out rows as a dataset version: the promotion gates judge every model on them."""
    context = step_context()
    return shipyard.data.add(test, "churn-holdout", run_id=context.run_id, project=context.project)


@pipeline
def churn(data: str = "customers", trees: int = 60, test_share: float = 0.25) -> None:
    frame = features(load(data))
    train, test = split(frame, test_share=test_share)
    scores = score_depth.map([3, 5, 8], train=train, trees=trees)
    model = fit(train, scores, trees=trees)
    evaluation = evaluate(model, test)
    holdout(test)
    register_churn(model, training_data=train, evaluation=evaluation)
