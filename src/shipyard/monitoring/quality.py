"""Model quality on live traffic: delayed labels joined to the prediction log, and, until the
labels arrive, a classifier's accuracy estimated from its calibrated confidence (CBPE).

    outcomes("churn", since=day_ago)        # one row per labelled prediction (Arrow table)
    quality("churn", by="1h")               # per version and hour: coverage, accuracy, MAE...
    estimate("churn", since=hour_ago, until=now)   # CBPE, stored
    check_estimates("churn")                # each stored estimate against the labels since

Only what users saw counts: shadow copies and failed (5xx) answers are left out. A label
belongs to a request; a request of several rows takes a list of labels, one per row (as the
rollout analysis reads them), and a single label only when the request had one row.

Confidence-based performance estimation (NannyML's CBPE): a calibrated classifier that says
"0.8" is right 80% of the time, so the expected accuracy of a window is the mean, over its
predictions, of the calibrated probability of the predicted class. The server logs predicted
labels only (probabilities only when a v2 client asks for them), so the probabilities are
recomputed here by the registered version itself (`predict_proba` on the logged inputs, in
batches): the same model, the same inputs, the same numbers the server had. The calibrator
(isotonic regression, one-vs-rest for several classes) is fitted on a reference with labels:
the version's own labelled predictions before the window when there are enough of them,
otherwise the held-out rows of its training lineage. Both are recorded in each estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from shipyard.project import Project
    from shipyard.registry.loaded import LoadedModel

SHADOW = "shadow"
CLASSIFIER, REGRESSOR = "classifier", "regressor"
METRIC = "accuracy"
MIN_REFERENCE = 100  # labelled rows needed to fit a calibrator worth trusting
MAX_REFERENCE = 20_000  # the newest labelled rows are enough; older ones cost time only
SCORE_BATCH = 5_000  # rows per predict_proba call: bounded memory on long windows
Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
HOLDOUT_SUFFIXES = ("-test", "-holdout", "-valid", "-validation", "-reference", "-eval")
DEFAULT_ESTIMATE_WINDOW = timedelta(days=1)
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# -- reading the log ---------------------------------------------------------------------------


@dataclass
class _Logged:
    """One answered request: its predictions (one per row) and, when asked, its input rows."""

    request_id: str
    time: datetime
    version: int
    arm: str
    protocol: str
    predictions: list[Any]
    inputs: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        from shipyard.release.analysis import logged_rows

        return logged_rows(self.protocol, self.inputs)


def _window(
    since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidInput(
                f"{name} must be an aware UTC datetime (e.g. datetime.now(UTC)); got {value!r}"
            )
    if since is not None and until is not None and until <= since:
        raise InvalidInput(f"the window is empty: until ({until}) is not after since ({since})")
    return since, until


def _read_log(
    model: str,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
    project: Project | None,
    *,
    with_inputs: bool = False,
) -> list[_Logged]:
    """The answered (non-shadow, non-5xx) requests of `model` in [since, until), oldest first."""
    from shipyard.predictions.query import read
    from shipyard.release.analysis import logged_predictions

    where = ["model = ?", "coalesce(arm, '') <> ?", "coalesce(status, 200) < 500"]
    params: list[Any] = [model, SHADOW]
    if since is not None:  # the hour partition first: whole folders are skipped
        where += ["hour >= ?", "time >= ?"]
        params += [since.astimezone(UTC).strftime("%Y-%m-%dT%H"), since]
    if until is not None:
        where += ["hour <= ?", "time < ?"]
        params += [until.astimezone(UTC).strftime("%Y-%m-%dT%H"), until]
    if version is not None:
        where.append("version = ?")
        params.append(int(version))
    columns = "request_id, time, version, arm, protocol, outputs" + (
        ", inputs" if with_inputs else ""
    )
    sql = f"SELECT {columns} FROM predictions WHERE {' AND '.join(where)} ORDER BY time, request_id"
    table = read(sql, params, model=model, since=since, until=until, project=project)
    return [
        _Logged(
            request_id=str(row["request_id"]),
            time=row["time"].astimezone(UTC),
            version=int(row["version"]),
            arm=str(row["arm"] or ""),
            protocol=str(row["protocol"] or ""),
            predictions=logged_predictions(str(row["protocol"] or ""), row["outputs"]),
            inputs=row.get("inputs"),
        )
        for row in table.to_pylist()
    ]


def _per_row_labels(label: Any, predictions: Sequence[Any]) -> list[Any] | None:
    """The label of each row of a request (as the rollout analysis reads them); None when the
    label does not line up with the rows (several rows, one label)."""
    if label is None:
        return None
    if isinstance(label, list) and len(label) == len(predictions):
        return label
    if len(predictions) == 1:
        return [label]
    return None


def _labels(records: Sequence[_Logged], project: Project | None) -> dict[str, Any]:
    from shipyard.predictions.feedback import labels_for

    known = labels_for({r.request_id for r in records}, project=project)
    return {rid: item.label for rid, item in known.items() if item.label is not None}


# -- the task of a version ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    kind: str  # classifier | regressor
    classes: tuple[Any, ...] | None = None


def _task_of(model: str, version: int, project: Project | None, seen: Iterable[Any] = ()) -> _Task:
    """What the registered version predicts; for an unregistered one, read from its values
    (all numbers with a fraction somewhere: a regressor)."""
    meta = _flavor_meta(model, version, project)
    task = meta.get("task")
    classes = meta.get("classes")
    if task == CLASSIFIER or (task is None and classes):
        return _Task(CLASSIFIER, tuple(classes) if classes else None)
    if task == REGRESSOR:
        return _Task(REGRESSOR)
    values = [v for v in seen if v is not None]
    numeric = values and all(_is_number(v) for v in values)
    if numeric and any(float(v) != math.floor(float(v)) for v in values):
        return _Task(REGRESSOR)
    return _Task(CLASSIFIER)


def _flavor_meta(model: str, version: int, project: Project | None) -> dict[str, Any]:
    from shipyard.registry.versions import get

    try:
        return dict(get(f"{model}@{version}", project=project).flavor_meta or {})
    except NotFound:
        return {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    request_id: str
    row: int
    time: datetime
    version: int
    arm: str
    prediction: Any
    label: Any
    correct: bool | None
    abs_error: float | None


def _outcomes(
    records: Sequence[_Logged], labels: Mapping[str, Any], tasks: Mapping[int, _Task]
) -> list[_Outcome]:
    from shipyard.predictions.feedback import same_label

    found: list[_Outcome] = []
    for record in records:
        per_row = _per_row_labels(labels.get(record.request_id), record.predictions)
        if per_row is None:
            continue
        regression = tasks[record.version].kind == REGRESSOR
        for index, (prediction, label) in enumerate(zip(record.predictions, per_row, strict=True)):
            if prediction is None or label is None:
                continue
            correct: bool | None = None
            error: float | None = None
            if regression:
                predicted, actual = _as_float(prediction), _as_float(label)
                if predicted is None or actual is None:
                    continue  # not a number: no error to measure
                error = abs(predicted - actual)
            else:
                correct = same_label(prediction, label)
            found.append(
                _Outcome(record.request_id, index, record.time, record.version, record.arm,
                         prediction, label, correct, error)
            )  # fmt: skip
    return found


def _tasks(
    model: str, records: Sequence[_Logged], labels: Mapping[str, Any], project: Project | None
) -> dict[int, _Task]:
    seen: dict[int, list[Any]] = {}
    for record in records:
        values = seen.setdefault(record.version, [])
        if len(values) < 1000:  # enough to tell a regressor from a classifier
            values.extend(record.predictions)
            label = labels.get(record.request_id)
            values.extend(label if isinstance(label, list) else [label])
    return {v: _task_of(model, v, project, values) for v, values in seen.items()}


def _column(values: list[Any]) -> pa.Array:
    """Values as one Arrow column: their own type when they share one, else their text."""
    import json

    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
            pa.string(),
        )


OUTCOME_COLUMNS = (
    "request_id", "row", "time", "version", "arm", "prediction", "label", "correct", "abs_error",
)  # fmt: skip


def outcomes(
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    project: Project | None = None,
) -> pa.Table:
    """One row per labelled prediction of `model` in [since, until) that users saw.

    Columns: request_id, row (the row's index in its request), time, version, arm, prediction,
    label, correct (bool for a classifier, null for a regressor), abs_error (float for a
    regressor, null for a classifier). Shadow copies and 5xx answers are left out; a label that
    does not line up with its request's rows is left out too (as the rollout analysis does).
    """
    import pyarrow as pa

    since, until = _window(since, until)
    records = _read_log(model, since, until, version, project)
    labels = _labels(records, project)
    rows = _outcomes(records, labels, _tasks(model, records, labels, project))
    return pa.Table.from_arrays(
        [
            pa.array([o.request_id for o in rows], pa.string()),
            pa.array([o.row for o in rows], pa.int32()),
            pa.array([o.time for o in rows], pa.timestamp("us", tz="UTC")),
            pa.array([o.version for o in rows], pa.int64()),
            pa.array([o.arm for o in rows], pa.string()),
            _column([o.prediction for o in rows]) if rows else pa.array([], pa.string()),
            _column([o.label for o in rows]) if rows else pa.array([], pa.string()),
            pa.array([o.correct for o in rows], pa.bool_()),
            pa.array([o.abs_error for o in rows], pa.float64()),
        ],
        names=list(OUTCOME_COLUMNS),
    )


# -- quality over time -------------------------------------------------------------------------


def bucket_seconds(by: str) -> int:
    """Seconds in a time bucket written as 30s, 15m, 1h or 1d."""
    match = _DURATION.match(str(by)) if isinstance(by, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"a time bucket is a whole number of s, m, h or d such as 15m, 1h or 1d; got {by!r}"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _bucket(moment: datetime, size_s: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % size_s, UTC)


@dataclass(frozen=True)
class QualityPoint:
    """The quality of one version in one time bucket [start, end)."""

    start: datetime
    end: datetime
    version: int
    task: str
    predictions: int
    labelled: int
    coverage: float | None  # labelled / predictions
    accuracy: float | None = None  # classifiers
    f1_macro: float | None = None
    mae: float | None = None  # regressors
    rmse: float | None = None
    estimated_accuracy: float | None = None  # the CBPE estimate stored for this very bucket
    estimate_error: float | None = None  # estimated - realised, once labels exist

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


def quality(
    model: str,
    *,
    by: str = "1h",
    since: datetime | None = None,
    until: datetime | None = None,
    project: Project | None = None,
) -> list[QualityPoint]:
    """Per version and time bucket: predictions, labelled ones, coverage, and accuracy and
    macro F1 (classifiers) or MAE and RMSE (regressors) on the labelled ones; with the CBPE
    estimates stored for that version over the bucket (weighted by the predictions they cover
    inside it), and their error once labels exist.

    Buckets are aligned to the epoch in UTC (1h buckets start on the hour); ordered by bucket,
    then version. Buckets without predictions are left out.
    """
    size_s = bucket_seconds(by)
    since, until = _window(since, until)
    records = _read_log(model, since, until, None, project)
    labels = _labels(records, project)
    tasks = _tasks(model, records, labels, project)
    predicted: dict[tuple[datetime, int], int] = {}
    for record in records:
        key = (_bucket(record.time, size_s), record.version)
        count = sum(p is not None for p in record.predictions)
        predicted[key] = predicted.get(key, 0) + count
    scored: dict[tuple[datetime, int], list[_Outcome]] = {}
    for outcome in _outcomes(records, labels, tasks):
        scored.setdefault((_bucket(outcome.time, size_s), outcome.version), []).append(outcome)
    estimates = _stored_estimates(model, since, until, project)
    points = []
    for (start, version), count in sorted(predicted.items()):
        end = start + timedelta(seconds=size_s)
        stored = _estimate_for(estimates, version, start, end)
        points.append(
            _point(start, end, version, tasks[version].kind, count,
                   scored.get((start, version), []), stored)
        )  # fmt: skip
    return points


def _point(
    start: datetime,
    end: datetime,
    version: int,
    task: str,
    predictions: int,
    scored: list[_Outcome],
    estimated: float | None,
) -> QualityPoint:
    labelled = len(scored)
    values: dict[str, float | None] = {}
    if scored and task == CLASSIFIER:
        values["accuracy"] = sum(bool(o.correct) for o in scored) / labelled
        values["f1_macro"] = _f1_macro(scored)
    elif scored:
        errors = [float(o.abs_error or 0.0) for o in scored]
        values["mae"] = sum(errors) / labelled
        values["rmse"] = math.sqrt(sum(e * e for e in errors) / labelled)
    accuracy = values.get("accuracy")
    return QualityPoint(
        start=start,
        end=end,
        version=version,
        task=task,
        predictions=predictions,
        labelled=labelled,
        coverage=labelled / predictions if predictions else None,
        estimated_accuracy=estimated,
        estimate_error=(
            estimated - accuracy if estimated is not None and accuracy is not None else None
        ),
        **values,
    )


def _class_key(value: Any) -> str:
    """One text per class, with the equalities of the rollout analysis: 1, 1.0, "1" and True
    name the same class."""
    number = _as_float(value)
    return repr(number) if number is not None else str(value)


def _f1_macro(scored: Sequence[_Outcome]) -> float:
    from sklearn.metrics import f1_score  # type: ignore[import-untyped]

    truth = [_class_key(o.label) for o in scored]
    predicted = [_class_key(o.prediction) for o in scored]
    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def _stored_estimates(
    model: str, since: datetime | None, until: datetime | None, project: Project | None
) -> list[tuple[int, datetime, datetime, int, float]]:
    """(version, window start, window end, predictions, estimate) of every stored accuracy
    estimate whose window overlaps [since, until)."""
    from sqlalchemy import select

    from shipyard.store.models import QualityEstimateRecord as Row

    statement = select(Row).where(Row.model == model, Row.metric == METRIC)
    if since is not None:
        statement = statement.where(Row.window_end > since)
    if until is not None:
        statement = statement.where(Row.window_start < until)
    with _project(project).metadata.read() as session:
        rows = session.scalars(statement.order_by(Row.created_at, Row.id)).all()
        return [(r.version, r.window_start, r.window_end, r.predictions, r.estimate) for r in rows]


def _estimate_for(
    estimates: list[tuple[int, datetime, datetime, int, float]],
    version: int,
    start: datetime,
    end: datetime,
) -> float | None:
    """The bucket's estimated accuracy: the estimates of `version` whose windows overlap it,
    averaged with weights of their predictions times the share of their window inside the
    bucket (an estimate's windows need not line up with the buckets: the monitoring pass
    estimates whatever arrived since its last pass)."""
    total = weight = 0.0
    for number, low, high, predictions, value in estimates:
        overlap = (min(high, end) - max(low, start)).total_seconds()
        span = (high - low).total_seconds()
        if number != version or overlap <= 0 or span <= 0:
            continue
        share = predictions * overlap / span
        total += share * value
        weight += share
    return total / weight if weight > 0 else None


def _project(project: Project | None) -> Project:
    if project is not None:
        return project
    from shipyard.project import current

    return current()


# -- confidence-based performance estimation ---------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A classifier's accuracy over a window, estimated from its calibrated confidence."""

    model: str
    version: int
    window_start: datetime
    window_end: datetime
    predictions: int
    estimate: float
    interval: tuple[float, float]  # 95%, from the Poisson-binomial variance sum p(1 - p)
    calibration: str  # labelled-predictions | dataset | none
    detail: dict[str, Any] = field(default_factory=dict)
    metric: str = METRIC
    id: int | None = None  # the stored record's id; None when not saved
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "metric": self.metric,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "predictions": self.predictions,
            "estimate": self.estimate,
            "interval": list(self.interval),
            "calibration": self.calibration,
            "detail": self.detail,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class _Scores:
    """Class probabilities (one row per prediction, columns in `classes` order)."""

    classes: list[Any]
    probabilities: np.ndarray[Any, Any]
    chosen: np.ndarray[Any, Any]  # the index of each predicted class


@dataclass(frozen=True)
class _Calibrator:
    source: str
    detail: dict[str, Any]
    models: list[Any] | None  # isotonic regressions: one (binary) or one per class

    def confidence(self, scores: _Scores) -> np.ndarray[Any, Any]:
        """The calibrated probability of each predicted class."""
        import numpy as np

        proba = scores.probabilities
        if self.models is not None and len(scores.classes) == 2:
            positive = np.clip(self.models[0].predict(proba[:, 1]), 0.0, 1.0)
            proba = np.column_stack([1.0 - positive, positive])
        elif self.models is not None:
            columns = [m.predict(proba[:, k]) for k, m in enumerate(self.models)]
            raw = np.clip(np.column_stack(columns), 0.0, 1.0)
            total = raw.sum(axis=1, keepdims=True)
            uniform = np.full_like(raw, 1.0 / raw.shape[1])
            proba = np.where(total > 0, raw / np.where(total > 0, total, 1.0), uniform)
        picked: np.ndarray[Any, Any] = proba[np.arange(len(proba)), scores.chosen]
        return picked


def estimate(
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    reference: str | None = None,
    project: Project | None = None,
    save: bool = True,
) -> Estimate:
    """Estimate the accuracy of `model`'s predictions in [since, until) before their labels
    arrive (CBPE), and store it (`save`) to be checked against the labels later.

    The window defaults to the day before now; `version` to the version that answered most of
    it. The calibrator is fitted on `reference` (a dataset version with the target column)
    when given, else on the version's labelled predictions before `since` (at least
    MIN_REFERENCE), else on the held-out datasets of its lineage; with none of these, the raw
    probabilities are used and the estimate says so (`calibration` "none").
    """
    project = _project(project)
    until = until or datetime.now(UTC)
    since = since or until - DEFAULT_ESTIMATE_WINDOW
    since, until = _window(since, until)
    assert since is not None and until is not None
    records = _read_log(model, since, until, version, project, with_inputs=True)
    if not records:
        raise InvalidInput(
            f"no predictions of {model}"
            + (f" version {version}" if version is not None else "")
            + f" in [{since.isoformat()}, {until.isoformat()}): nothing to estimate; widen "
            "the window (--since/--until)"
        )
    version = version if version is not None else _main_version(records)
    records = [r for r in records if r.version == version]
    loaded = _load_classifier(model, version, project)
    scores, skipped = _score_logged(loaded, records)
    if not len(scores.chosen):
        raise InvalidInput(
            f"none of the {len(records)} logged requests of {model}@{version} in the window "
            "has inputs that line up with its predictions: nothing to estimate"
        )
    calibrator = _calibrator(loaded, since, reference, project)
    confidence = calibrator.confidence(scores)
    found = _summarise(model, version, since, until, confidence, calibrator, skipped, scores)
    return _save_estimate(found, project) if save else found


def _main_version(records: Sequence[_Logged]) -> int:
    counts: dict[int, int] = {}
    for record in records:
        counts[record.version] = counts.get(record.version, 0) + len(record.predictions)
    return max(sorted(counts), key=lambda v: counts[v])


def _load_classifier(model: str, version: int, project: Project) -> LoadedModel:
    from shipyard.registry.versions import get

    found = get(f"{model}@{version}", project=project)
    if found.flavor_meta.get("task") == REGRESSOR:
        raise InvalidInput(
            f"{found.ref} is a regressor: CBPE estimates a classifier's accuracy from its class "
            "probabilities; a regressor's quality needs its labels (`shipyard quality show`)"
        )
    return found.load(project=project)


def _classes(loaded: LoadedModel) -> list[Any]:
    classes = loaded.meta.get("classes") or getattr(loaded.model, "classes_", None)
    if classes is None:
        raise InvalidInput(
            f"{loaded.version.ref} does not say its classes (flavor {loaded.version.flavor}): "
            "CBPE needs a classifier with classes and predict_proba"
        )
    return list(classes)


def _probabilities(loaded: LoadedModel, rows: Any) -> np.ndarray[Any, Any]:
    import numpy as np

    proba = loaded.predict_proba(rows)
    if proba is None:
        raise InvalidInput(
            f"{loaded.version.ref} has no class probabilities (flavor "
            f"{loaded.version.flavor}): CBPE needs a classifier with predict_proba"
        )
    return np.asarray(proba, dtype=float)


def _class_index(classes: Sequence[Any]) -> dict[str, int]:
    return {_class_key(value): index for index, value in enumerate(classes)}


def _score_logged(loaded: LoadedModel, records: Sequence[_Logged]) -> tuple[_Scores, int]:
    """The class probabilities of every logged prediction, recomputed in batches; and how many
    predictions were skipped (inputs that do not line up with the outputs, unknown classes)."""
    import numpy as np

    classes = _classes(loaded)
    index = _class_index(classes)
    rows: list[dict[str, Any]] = []
    chosen: list[int] = []
    skipped = 0
    for record in records:
        inputs = record.rows()
        if len(inputs) != len(record.predictions):
            skipped += sum(p is not None for p in record.predictions)
            continue
        for row, prediction in zip(inputs, record.predictions, strict=True):
            if prediction is None:
                continue  # withheld by an output filter: no one saw it
            position = index.get(_class_key(prediction))
            if position is None:
                skipped += 1
                continue
            rows.append(row)
            chosen.append(position)
    parts = [
        _probabilities(loaded, rows[start : start + SCORE_BATCH])
        for start in range(0, len(rows), SCORE_BATCH)
    ]
    proba = np.vstack(parts) if parts else np.zeros((0, len(classes)))
    return _Scores(classes, proba, np.asarray(chosen, dtype=int)), skipped


# -- the calibrator ----------------------------------------------------------------------------


def _calibrator(
    loaded: LoadedModel, since: datetime, reference: str | None, project: Project
) -> _Calibrator:
    if reference is not None:
        found = _dataset_reference(loaded, [reference], project, strict=True)
        assert found is not None
        return found
    return (
        _labelled_reference(loaded, since, project)
        or _dataset_reference(loaded, _lineage(loaded), project, strict=False)
        or _Calibrator("none", {"reason": "no labelled reference: raw probabilities"}, None)
    )


def _fit(
    source: str, detail: dict[str, Any], classes: list[Any], proba: Any, truth: list[int]
) -> _Calibrator:
    """Isotonic regression of "the label is class k" on the probability of class k: for the
    positive class of a binary model, one per class (one-vs-rest) otherwise."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]

    target = np.asarray(truth)
    wanted = [1] if len(classes) == 2 else range(len(classes))
    models = [
        IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            proba[:, k], (target == k).astype(float)
        )
        for k in wanted
    ]
    return _Calibrator(source, {**detail, "rows": len(truth)}, models)


def _labelled_reference(
    loaded: LoadedModel, since: datetime, project: Project
) -> _Calibrator | None:
    """The version's own labelled predictions before the window (its newest ones)."""
    version = loaded.version
    records = _read_log(version.name, None, since, version.version, project, with_inputs=True)
    labels = _labels(records, project)
    index = _class_index(_classes(loaded))
    rows: list[dict[str, Any]] = []
    truth: list[int] = []
    first: datetime | None = None
    for record in reversed(records):
        per_row = _per_row_labels(labels.get(record.request_id), record.predictions)
        inputs = record.rows() if per_row is not None else []
        if per_row is None or len(inputs) != len(per_row):
            continue
        for row, label in zip(inputs, per_row, strict=True):
            position = None if label is None else index.get(_class_key(label))
            if position is not None:
                rows.append(row)
                truth.append(position)
                first = record.time
        if len(truth) >= MAX_REFERENCE:
            break
    if len(truth) < MIN_REFERENCE:
        return None
    proba = _probabilities(loaded, rows)
    detail = {"from": first.isoformat() if first else None, "until": since.isoformat()}
    return _fit("labelled-predictions", detail, _classes(loaded), proba, truth)


def _lineage(loaded: LoadedModel) -> list[str]:
    """The version's datasets, held-out ones (by name: -test, -holdout, -valid...) first."""
    refs = list(loaded.version.datasets)
    held_out = [r for r in refs if r.split("@")[0].endswith(HOLDOUT_SUFFIXES)]
    return held_out + [r for r in refs if r not in held_out]


def _dataset_reference(
    loaded: LoadedModel, refs: Sequence[str], project: Project, *, strict: bool
) -> _Calibrator | None:
    """The first dataset in `refs` holding the version's inputs and target, scored by it."""
    from shipyard.data.versions import get as get_dataset

    signature = loaded.signature
    target = signature.output_names[0] if signature and signature.outputs else None
    inputs = signature.input_names if signature else []
    for ref in refs:
        dataset = get_dataset(ref, project=project)
        missing = [c for c in [*inputs, target] if c is None or c not in dataset.schema.names]
        if missing or not inputs:
            if strict:
                raise InvalidInput(
                    f"the reference {ref} lacks the columns {loaded.version.ref} needs "
                    f"(inputs {', '.join(inputs) or '?'} and the target {target or '?'}); "
                    f"missing: {', '.join(str(c) for c in missing) or 'a signature'}"
                )
            continue
        assert target is not None
        frame = dataset.to_pandas([*inputs, target]).tail(MAX_REFERENCE)
        frame = frame[frame[target].notna()]
        fitted = _fit_frame(loaded, frame, inputs, target, ref)
        if fitted is not None or strict:
            if fitted is None:
                raise InvalidInput(
                    f"the reference {ref} has fewer than {MIN_REFERENCE} rows labelled with "
                    f"one of {loaded.version.ref}'s classes: too few to calibrate on"
                )
            return fitted
    return None


def _fit_frame(
    loaded: LoadedModel, frame: pd.DataFrame, inputs: list[str], target: str, ref: str
) -> _Calibrator | None:
    import numpy as np

    index = _class_index(_classes(loaded))
    positions = [index.get(_class_key(value)) for value in frame[target].tolist()]
    keep = np.asarray([p is not None for p in positions], dtype=bool)
    if int(keep.sum()) < MIN_REFERENCE:
        return None
    proba = _probabilities(loaded, frame.loc[keep, inputs].reset_index(drop=True))
    truth = [p for p in positions if p is not None]
    return _fit("dataset", {"dataset": ref}, _classes(loaded), proba, truth)


# -- the estimate ------------------------------------------------------------------------------


def _summarise(
    model: str,
    version: int,
    since: datetime,
    until: datetime,
    confidence: np.ndarray[Any, Any],
    calibrator: _Calibrator,
    skipped: int,
    scores: _Scores,
) -> Estimate:
    import numpy as np

    n = len(confidence)
    value = float(np.mean(confidence))
    # Each prediction is right with its own probability p: the count right is Poisson-
    # binomial, with variance sum p(1 - p); the mean's standard error is its root over n.
    spread = Z_95 * math.sqrt(float(np.sum(confidence * (1.0 - confidence)))) / n
    interval = (max(0.0, value - spread), min(1.0, value + spread))
    return Estimate(
        model=model,
        version=version,
        window_start=since,
        window_end=until,
        predictions=n,
        estimate=value,
        interval=interval,
        calibration=calibrator.source,
        detail={
            "calibration": {"source": calibrator.source, **calibrator.detail},
            "interval": list(interval),
            "confidence_level": 0.95,
            "probabilities": f"recomputed by {model}@{version} predict_proba on logged inputs",
            "classes": [_plain(c) for c in scores.classes],
            "skipped": skipped,
        },
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _save_estimate(found: Estimate, project: Project) -> Estimate:
    from shipyard.store.models import QualityEstimateRecord

    row = QualityEstimateRecord(
        model=found.model,
        version=found.version,
        metric=found.metric,
        window_start=found.window_start,
        window_end=found.window_end,
        predictions=found.predictions,
        estimate=found.estimate,
        detail=found.detail,
    )
    with project.metadata.write() as session:
        session.add(row)
        session.flush()
        row_id, created = row.id, row.created_at
    return Estimate(**{**found.__dict__, "id": row_id, "created_at": created})


def estimates(model: str, *, limit: int = 50, project: Project | None = None) -> list[Estimate]:
    """The stored estimates of `model`, newest window first."""
    from sqlalchemy import select

    from shipyard.store.models import QualityEstimateRecord as Row

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be an integer >= 1; got {limit!r}")
    statement = (
        select(Row)
        .where(Row.model == model, Row.metric == METRIC)
        .order_by(Row.window_start.desc(), Row.id.desc())
        .limit(limit)
    )
    with _project(project).metadata.read() as session:
        return [_from_row(row) for row in session.scalars(statement).all()]


def _from_row(row: Any) -> Estimate:
    detail = dict(row.detail or {})
    low, high = detail.get("interval") or (row.estimate, row.estimate)
    return Estimate(
        model=row.model,
        version=row.version,
        window_start=row.window_start,
        window_end=row.window_end,
        predictions=row.predictions,
        estimate=row.estimate,
        interval=(float(low), float(high)),
        calibration=str((detail.get("calibration") or {}).get("source", "unknown")),
        detail=detail,
        metric=row.metric,
        id=row.id,
        created_at=row.created_at,
    )


# -- checking estimates against the labels -----------------------------------------------------


@dataclass(frozen=True)
class EstimateCheck:
    """A stored estimate against the labels that have arrived for its window since."""

    estimate: Estimate
    labelled: int
    coverage: float  # labelled / the predictions the estimate covered
    realised: float | None  # the accuracy on the labelled predictions; None before any label
    error: float | None  # estimate - realised
    within_interval: bool | None

    @property
    def status(self) -> str:
        return "pending" if self.realised is None else "checked"

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_dict(),
            "labelled": self.labelled,
            "coverage": self.coverage,
            "realised": self.realised,
            "error": self.error,
            "within_interval": self.within_interval,
            "status": self.status,
        }


def check_estimates(
    model: str, *, limit: int = 50, project: Project | None = None
) -> list[EstimateCheck]:
    """Each stored estimate of `model` (newest window first) against the labels known now:
    the realised accuracy on its window's labelled predictions, the error, and whether it fell
    inside the estimate's interval. An estimate without labels yet is `pending`."""
    checks = []
    for found in estimates(model, limit=limit, project=project):
        table = outcomes(
            model,
            since=found.window_start,
            until=found.window_end,
            version=found.version,
            project=project,
        )
        correct = [bool(c) for c in table.column("correct").to_pylist() if c is not None]
        labelled = len(correct)
        realised = sum(correct) / labelled if labelled else None
        low, high = found.interval
        checks.append(
            EstimateCheck(
                estimate=found,
                labelled=labelled,
                coverage=labelled / found.predictions if found.predictions else 0.0,
                realised=realised,
                error=found.estimate - realised if realised is not None else None,
                within_interval=low <= realised <= high if realised is not None else None,
            )
        )
    return checks
