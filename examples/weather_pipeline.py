"""Seattle's weather (NOAA, 2012-2015, shipped in the `vega-datasets` package) as a shipyard
pipeline: from a day's measurements, is the day's recorded weather wet (rain, drizzle, snow) or
dry (sun, fog)? Load a dataset version, build the features, split, fit a random forest with
calibrated probabilities, evaluate it on held-out days, keep those days as a dataset version
(the gates' holdout), and register the model as `weather`.

    shipyard run weather_pipeline.py --param data=weather@1 --param depth=6

`readings_as_categories=true` reproduces a real schema bug on purpose: the readings are encoded
as categories, and the vocabulary is built from every day, held-out days included, so the
offline evaluation never meets a reading it has not seen. Live traffic does, and the model
raises on it (the server answers 500). The demo releases such a candidate to show the rollout
controller rolling it back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

import shipyard
from shipyard.pipelines import pipeline, step, step_context
from shipyard.registry import registering
from shipyard.tracking import log_metric

FEATURES = ["precipitation", "temp_max", "temp_min", "wind"]
TARGET = "sky"
WET = ("rain", "drizzle", "snow")

register_weather = registering("weather", target=TARGET)


def sky(weather: pd.Series) -> pd.Series:
    """The label: the five recorded kinds of weather, folded into wet and dry. Two classes
    that every half-year has, so every retrained version answers with the same classes."""
    return pd.Series(np.where(weather.isin(WET), "wet", "dry"), index=weather.index)


@step(cache=False)
def load(ref: str) -> shipyard.data.DatasetVersion:
    """The dataset version to train on. Never cached: "weather" names the newest version, which
    changes when data arrives; its content hash is part of every later step's cache key."""
    return shipyard.data.get(ref)


@step
def features(version: shipyard.data.DatasetVersion) -> pd.DataFrame:
    frame = version.to_pandas()
    return frame[FEATURES].astype("float64").assign(**{TARGET: sky(frame["weather"])})


@step(outputs=("train", "test"))
def split(frame: pd.DataFrame, test_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(
        frame, test_size=test_share, random_state=0, stratify=frame[TARGET]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def forest(trees: int, depth: int) -> CalibratedClassifierCV:
    """A forest whose probabilities are calibrated (sigmoid, 3 folds): the monitoring's
    performance estimate (CBPE) reads them as the chance of being right. `ensemble=False`
    keeps one forest for serving."""
    model = RandomForestClassifier(
        n_estimators=trees, max_depth=depth, min_samples_leaf=2, random_state=0, n_jobs=1
    )
    return CalibratedClassifierCV(model, method="sigmoid", cv=3, ensemble=False)


@step
def fit(
    train: pd.DataFrame, test: pd.DataFrame, trees: int, depth: int, readings_as_categories: bool
) -> CalibratedClassifierCV | Pipeline:
    if not readings_as_categories:
        return forest(trees, depth).fit(train[FEATURES], train[TARGET])
    # The bug, on purpose: every distinct reading becomes a category, with a vocabulary built
    # from all days (the held-out ones too) - so only live traffic meets an unknown reading.
    encoder = OrdinalEncoder().fit(pd.concat([train, test])[FEATURES])
    model = forest(trees, depth).fit(encoder.transform(train[FEATURES]), train[TARGET])
    return Pipeline([("readings", encoder), ("forest", model)])


@step
def evaluate(model: CalibratedClassifierCV | Pipeline, test: pd.DataFrame) -> dict[str, float]:
    wet = model.predict_proba(test[FEATURES])[:, list(model.classes_).index("wet")]
    metrics = {
        "auc": float(roc_auc_score(test[TARGET] == "wet", wet)),
        "accuracy": float(accuracy_score(test[TARGET], model.predict(test[FEATURES]))),
    }
    for name, value in metrics.items():
        log_metric(name, value)
    return metrics


@step
def holdout(test: pd.DataFrame) -> shipyard.data.DatasetVersion:
    """The held-out days as a dataset version: the promotion gates judge every model on them."""
    context = step_context()
    return shipyard.data.add(
        test, "weather-holdout", run_id=context.run_id, project=context.project
    )


@pipeline
def weather(
    data: str = "weather",
    trees: int = 25,
    depth: int = 4,
    test_share: float = 0.25,
    readings_as_categories: bool = False,
) -> None:
    frame = features(load(data))
    train, test = split(frame, test_share=test_share)
    model = fit(
        train, test, trees=trees, depth=depth, readings_as_categories=readings_as_categories
    )
    evaluation = evaluate(model, test)
    holdout(test)
    register_weather(model, training_data=train, evaluation=evaluation)
