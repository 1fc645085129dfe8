"""Fixtures for the gate tests: a project with churn-like data and real scikit-learn models.

The project is built once per session (datasets added, models trained and registered) and
copied into each test's folder, so every test starts from the same store and may change it.

    customers-train@1   2,000 rows to train on
    customers-test@1    600 held-out rows; in city "east" the label is noise
    customers-drifted@1 training rows whose ages are shifted far out of range
    churn@1  logistic regression (C=1)          churn@2  logistic regression (C=0.02)
    churn@3  DummyClassifier (always the prior) churn@4  trained on customers-drifted@1
    churn@5  trained on age and visits only (another signature)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gates_helpers import FEATURES, churn_frame, logistic

import shipyard.data as data
from shipyard.project import Project
from shipyard.registry.versions import register


@dataclass(frozen=True)
class Template:
    folder: Path


@pytest.fixture(scope="session")
def gates_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    from sklearn.dummy import DummyClassifier

    folder = tmp_path_factory.mktemp("gates") / "project"
    project = Project.init(folder / ".shipyard")
    train_frame = churn_frame(2000, 1)
    drifted_frame = churn_frame(2000, 3)
    drifted_frame.loc[: len(drifted_frame) // 4, "age"] += 200
    train = data.add(train_frame, "customers-train", project=project)
    data.add(churn_frame(600, 2, noisy_city="east"), "customers-test", project=project)
    drifted = data.add(drifted_frame, "customers-drifted", project=project)
    x, y = train_frame[FEATURES], train_frame["churned"]
    models = [
        (logistic(1.0, FEATURES).fit(x, y), train),
        (logistic(0.02, FEATURES).fit(x, y), train),
        (DummyClassifier(strategy="prior").fit(x, y), train),
        (logistic(1.0, FEATURES).fit(drifted_frame[FEATURES], drifted_frame["churned"]), drifted),
        (logistic(1.0, ["age", "visits"]).fit(train_frame[["age", "visits"]], y), train),
    ]
    for number, (model, training) in enumerate(models, 1):
        version = register(
            model, "churn", training_data=training, target="churned", project=project
        )
        assert version.version == number
    project.close()
    return Template(folder)


@pytest.fixture
def project(gates_template: Template, tmp_path: Path) -> Iterator[Project]:
    """A copy of the gates project in this test's folder (the test's working folder)."""
    folder = tmp_path / "work"
    shutil.copytree(gates_template.folder, folder)
    opened = Project.open(folder / ".shipyard")
    yield opened
    opened.close()
