"""Helpers for the continuous-training tests: a tiny weather pipeline, its data, and settings.

The pipeline trains a shallow decision tree on `weather@N` (temperature and humidity -> rain)
and registers it as `weather`; `fail = true` makes its training step raise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.project import Project

# Opens the test's copy of the weather project with the settings given (training=..., ...).
OpenProject = Callable[..., Project]

PIPELINE_FILE = "pipelines/weather_pipeline.py"
PIPELINE_SOURCE = """
import shipyard
from shipyard.pipelines import pipeline, step, step_context
from shipyard.registry import registering

register_weather = registering("weather", target="rain")


@step(cache=False)
def load(ref: str) -> shipyard.data.DatasetVersion:
    return shipyard.data.get(ref, project=step_context().project)


@step
def fit(version: shipyard.data.DatasetVersion, depth: int, fail: bool):
    from sklearn.tree import DecisionTreeClassifier

    if fail:
        raise RuntimeError("the training data is unusable on purpose")
    frame = version.to_pandas()
    return DecisionTreeClassifier(max_depth=depth, random_state=0).fit(
        frame[["temperature", "humidity"]], frame["rain"]
    )


@pipeline
def weather(data: str = "weather", depth: int = 3, fail: bool = False) -> None:
    version = load(data)
    register_weather(fit(version, depth=depth, fail=fail), training_data=version)
"""


def weather_frame(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Days with a rain label that depends on humidity (and a little on temperature)."""
    rng = np.random.default_rng(seed)
    temperature = rng.normal(15 + shift, 6, rows).round(1)
    humidity = rng.uniform(20, 100, rows).round(1)
    rain = (humidity + rng.normal(0, 8, rows) - 0.3 * temperature) > 65
    return pd.DataFrame(
        {"temperature": temperature, "humidity": humidity, "rain": rain.astype(int)}
    )


def write_pipeline(root: Path) -> Path:
    path = root / PIPELINE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PIPELINE_SOURCE)
    return path


def policies(min_accuracy: float = 0.6) -> dict[str, Any]:
    """A `champion` policy: accuracy on weather-holdout@1 of at least `min_accuracy`."""
    return {
        "champion": {
            "holdout": "weather-holdout@1",
            "target": "rain",
            "gates": [{"kind": "evaluation", "metrics": {"accuracy": {"min": min_accuracy}}}],
        }
    }


CANARY = {
    "strategy": "canary",
    "steps": [{"weight": 10, "hold": "5m"}, {"weight": 100}],
    "analysis": [{"metric": "error_rate", "max": 0.05}],
}


def training(*triggers: dict[str, Any], **overrides: Any) -> dict[str, dict[str, Any]]:
    """A `[training.weather]` table with these triggers."""
    table: dict[str, Any] = {
        "pipeline": f"{PIPELINE_FILE}:weather",
        "params": {"depth": 3},
        "dataset": "weather",
        "data_param": "data",
        "policy": "champion",
        "rollout": CANARY,
        "cooldown": "0s",
        "triggers": list(triggers),
    }
    table.update(overrides)
    return {"weather": table}
