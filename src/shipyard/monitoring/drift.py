"""Drift: a model's served inputs and predictions against its training data, column by column.

`compare(reference, current)` is the pure part: two binned profiles in, one verdict per column
and one for the dataset out. `check(model)` is the whole run: it reads the current window from
the prediction log, profiles it in a streaming pass on the reference's grids, compares, works
out persistence from the model's previous results, stores the result, and raises or clears
the model's drift alert. See docs/drift.md for the settings and the why of the defaults.

Default rules (Evidently 0.7's, by the reference's non-null size and the distinct values of
reference and current together):

    reference > large (1000) rows:  numbers with > 5 values -> normed Wasserstein >= 0.1
                                    categories, numbers with <= 5 values -> Jensen-Shannon >= 0.1
    reference <= large rows:        numbers with > 5 values -> KS p-value < 0.05
                                    categories, numbers with <= 5 values -> chi-square p < 0.05

Evidently uses a two-proportion Z-test for two levels on small references; chi-square on a
2 x 2 table without correction is the same test (z^2 = chi2), so its p-value is the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select

from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.monitoring.binned import (
    BINNING,
    BinnedProfile,
    ColumnBins,
    LevelCounts,
    NumericBins,
    current_profile,
    level_key,
    reference_profile,
)
from shipyard.store.models import DriftReferenceRecord, DriftResultRecord

if TYPE_CHECKING:
    from shipyard.data.versions import DatasetVersion
    from shipyard.project import Project
    from shipyard.registry.versions import ModelVersion

# method -> (what decides, default threshold, column kinds it applies to, statistic key, p key)
METHODS: dict[str, tuple[str, float, tuple[str, ...], str, str | None]] = {
    "ks": ("p_value", 0.05, ("numeric",), "ks", "ks_p_value"),
    "chisquare": ("p_value", 0.05, ("numeric", "categorical"), "chi2", "chi2_p_value"),
    "wasserstein": ("distance", 0.1, ("numeric",), "wasserstein_normed", None),
    "jensenshannon": ("distance", 0.1, ("numeric", "categorical"), "jensenshannon", None),
    "psi": ("distance", 0.1, ("numeric", "categorical"), "psi", None),
}
CORRECTIONS = ("fdr", "bonferroni", "none")
SETTINGS_KEYS = (
    "reference",
    "window",
    "last",
    "share",
    "correction",
    "persistence",
    "large",
    "columns",
    "ignore",
)
COLUMN_KEYS = ("method", "threshold")
FEW_VALUES = 5  # Evidently: numbers with at most this many distinct values are categories
DISPLAY_BINS = 30
PREDICTION = "prediction"
DEFAULT_WINDOW_S = 3600.0
LOG_BATCH_ROWS = 5_000  # log records decoded at once: bounds the raw rows in memory


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRule:
    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DriftSpec:
    """The `[drift.MODEL]` settings, validated; defaults documented in docs/drift.md."""

    reference: str | None = None
    window: float | None = None  # seconds; None with `last` None: DEFAULT_WINDOW_S
    last: int | None = None
    share: float = 0.5
    correction: str = "fdr"
    persistence: int = 2
    large: int = 1000
    columns: Mapping[str, ColumnRule] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, where: str = "[drift]") -> DriftSpec:
        """Validate a settings table; ConfigError naming the key, what was expected and got."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(SETTINGS_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; expected any of "
                f"{', '.join(SETTINGS_KEYS)}"
            )
        reference = data.get("reference")
        if reference is not None and (not isinstance(reference, str) or not reference):
            raise ConfigError(
                f"{where}.reference: expected a dataset version such as "
                f"'weather@1'; got {reference!r}"
            )
        window = data.get("window")
        last = data.get("last")
        if window is not None and last is not None:
            raise ConfigError(f"{where}: set either window or last, not both")
        return cls(
            reference=reference,
            window=None if window is None else _window_seconds(window, f"{where}.window"),
            last=None if last is None else _positive_int(last, f"{where}.last"),
            share=_share(data.get("share", 0.5), f"{where}.share"),
            correction=_correction(data.get("correction", "fdr"), f"{where}.correction"),
            persistence=_positive_int(data.get("persistence", 2), f"{where}.persistence"),
            large=_positive_int(data.get("large", 1000), f"{where}.large"),
            columns=_column_rules(data.get("columns", {}), f"{where}.columns"),
            ignore=_ignore(data.get("ignore", []), f"{where}.ignore"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "window": self.window,
            "last": self.last,
            "share": self.share,
            "correction": self.correction,
            "persistence": self.persistence,
            "large": self.large,
            "columns": {
                name: {"method": rule.method, "threshold": rule.threshold}
                for name, rule in self.columns.items()
            },
            "ignore": list(self.ignore),
        }


def _window_seconds(value: Any, where: str) -> float:
    from shipyard.release.spec import parse_duration

    try:
        seconds = parse_duration(value, where)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    if seconds <= 0:
        raise ConfigError(f"{where}: expected a duration above zero such as '1h'; got {value!r}")
    return seconds


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected an integer >= 1; got {value!r}")
    return value


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{where}: expected a share in (0, 1]; got {value!r}")
    return float(value)


def _correction(value: Any, where: str) -> str:
    if value not in CORRECTIONS:
        raise ConfigError(f"{where}: expected one of {', '.join(CORRECTIONS)}; got {value!r}")
    return str(value)


def _ignore(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of column names; got {value!r}")
    return tuple(value)


def _column_rules(value: Any, where: str) -> dict[str, ColumnRule]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table of columns; got {value!r}")
    rules = {}
    for name, rule in value.items():
        if not isinstance(rule, Mapping):
            raise ConfigError(
                f"{where}.{name}: expected a table with method and/or threshold; got {rule!r}"
            )
        unknown = sorted(set(rule) - set(COLUMN_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}.{name}: unknown key(s) {', '.join(unknown)}; expected method, threshold"
            )
        method = rule.get("method")
        threshold = rule.get("threshold")
        rules[str(name)] = ColumnRule(
            None if method is None else check_method(method, f"{where}.{name}.method"),
            None
            if threshold is None
            else check_threshold(threshold, method, f"{where}.{name}.threshold"),
        )
    return rules


def check_method(method: Any, where: str = "method") -> str:
    if method not in METHODS:
        raise ConfigError(
            f"{where}: unknown method {method!r}; expected one of {', '.join(METHODS)}"
        )
    return str(method)


def check_threshold(threshold: Any, method: str | None, where: str = "threshold") -> float:
    """A p-value threshold is in (0, 1); a distance's is above 0 (Jensen-Shannon's <= 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"{where}: expected a number; got {threshold!r}")
    value = float(threshold)
    if method is not None and METHODS[method][0] == "p_value":
        if not 0 < value < 1:
            raise ConfigError(
                f"{where}: a p-value threshold for {method} is in (0, 1); got {threshold!r}"
            )
    elif not (0 < value <= 1 if method == "jensenshannon" else 0 < value < math.inf):
        upper = "1]" if method == "jensenshannon" else "inf)"
        raise ConfigError(f"{where}: expected a threshold in (0, {upper}; got {threshold!r}")
    return value


def spec_for(model: str, project: Project) -> DriftSpec:
    return DriftSpec.parse(project.settings.drift.get(model), f"[drift.{model}]")


# -- comparing --------------------------------------------------------------------------------


@dataclass
class ColumnDrift:
    name: str
    role: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    threshold: float
    drifted: bool
    statistics: dict[str, Any]
    reference_rows: int
    current_rows: int
    current_nulls: int
    histogram: dict[str, Any]
    alerting: bool = False
    streak: int = 0

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = _json_safe(
            {
                "name": self.name,
                "role": self.role,
                "kind": self.kind,
                "method": self.method,
                "statistic": self.statistic,
                "p_value": self.p_value,
                "adjusted_p_value": self.adjusted_p_value,
                "threshold": self.threshold,
                "drifted": self.drifted,
                "alerting": self.alerting,
                "streak": self.streak,
                "statistics": self.statistics,
                "reference_rows": self.reference_rows,
                "current_rows": self.current_rows,
                "current_nulls": self.current_nulls,
                "histogram": self.histogram,
            }
        )
        return found


@dataclass
class DriftReport:
    """The verdicts of one comparison: per column, and for the dataset (input columns)."""

    columns: list[ColumnDrift]
    share: float  # drifted input columns / input columns
    threshold_share: float
    spec: DriftSpec

    @property
    def drifted(self) -> bool:
        return self.share >= self.threshold_share and any(c.role == "input" for c in self.columns)

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "drifted_share": self.share,
            "dataset": {
                "drifted": self.drifted,
                "share": self.share,
                "threshold_share": self.threshold_share,
                "alerting": False,
                "streak": int(self.drifted),
            },
            "settings": self.spec.to_dict(),
            "columns": [c.to_dict() for c in self.columns],
        }


def compare(
    reference: BinnedProfile,
    current: BinnedProfile,
    *,
    spec: DriftSpec | None = None,
    roles: Mapping[str, str] | None = None,
) -> DriftReport:
    """Every column of `current` against the same column of `reference`.

    `roles` marks columns as "prediction" (default "input"); only input columns count in
    the dataset's drifted share. p-value methods are corrected together (spec.correction).
    """
    from shipyard.monitoring import statistics  # scipy: loaded when comparing, not to list

    spec = spec or DriftSpec()
    roles = roles or {}
    found: list[tuple[str, dict[str, Any], str, float]] = []
    for name in current.names:
        if name in spec.ignore:
            continue
        if name not in reference:
            raise InvalidInput(
                f"column {name!r} is not in the reference; its columns are "
                f"{', '.join(reference.names)}"
            )
        ref, cur = reference[name], current[name]
        if not ref.count or not cur.count:
            continue  # nothing to compare on one side (an all-null column)
        values = statistics.column_statistics(ref, cur)
        method, threshold = _rule(name, ref, values, spec)
        found.append((name, values, method, threshold))
    adjusted = _adjusted_p_values(
        [values[METHODS[method][4] or ""] for _, values, method, _ in found if _uses_p(method)],
        spec.correction,
    )
    columns = []
    for name, values, method, threshold in found:
        p_value = adjusted_p = None
        if _uses_p(method):
            p_value, adjusted_p = values[METHODS[method][4] or ""], next(adjusted)
            drifted = bool(adjusted_p < threshold)
        else:
            drifted = bool(values[METHODS[method][3]] >= threshold)
        ref, cur = reference[name], current[name]
        columns.append(
            ColumnDrift(
                name=name,
                role=roles.get(name, "input"),
                kind=ref.kind,
                method=method,
                statistic=values[METHODS[method][3]],
                p_value=p_value,
                adjusted_p_value=adjusted_p,
                threshold=threshold,
                drifted=drifted,
                statistics=values,
                reference_rows=ref.rows,
                current_rows=cur.rows,
                current_nulls=cur.nulls,
                histogram=display_histogram(ref, cur),
                alerting=drifted and spec.persistence <= 1,
                streak=int(drifted),
            )
        )
    inputs = [c for c in columns if c.role == "input"]
    share = sum(c.drifted for c in inputs) / len(inputs) if inputs else 0.0
    return DriftReport(columns, share, spec.share, spec)


def default_method(kind: str, reference_count: int, distinct: int, large: int = 1000) -> str:
    """Evidently 0.7's default test for a column (see the module's docstring)."""
    few = kind == "categorical" or distinct <= FEW_VALUES
    if reference_count > large:
        return "jensenshannon" if few else "wasserstein"
    return "chisquare" if few else "ks"


def _rule(
    name: str, reference: ColumnBins, values: Mapping[str, Any], spec: DriftSpec
) -> tuple[str, float]:
    from shipyard.monitoring.statistics import PER_VALUE_BINS

    rule = spec.columns.get(name, ColumnRule())
    method = rule.method or default_method(
        reference.kind, reference.count, int(values["distinct"]), spec.large
    )
    if reference.kind not in METHODS[method][2]:
        raise InvalidInput(
            f"column {name!r} is {reference.kind}; method {method} applies to "
            f"{' and '.join(METHODS[method][2])} columns only"
        )
    if METHODS[method][3] not in values:
        raise InvalidInput(
            f"column {name!r} has {values['distinct']} distinct values; chisquare compares "
            f"at most {PER_VALUE_BINS} (use ks, wasserstein or psi for it)"
        )
    threshold = rule.threshold if rule.threshold is not None else METHODS[method][1]
    return method, threshold


def _uses_p(method: str) -> bool:
    return METHODS[method][0] == "p_value"


def _adjusted_p_values(p_values: Sequence[float], correction: str) -> Iterator[float]:
    """Benjamini-Hochberg (fdr), Bonferroni, or none, over one run's p-value columns."""
    from scipy import stats as scipy_stats

    if not p_values:
        return iter(())
    values = np.asarray(p_values, dtype=np.float64)
    if correction == "fdr":
        adjusted = scipy_stats.false_discovery_control(values, method="bh")
    elif correction == "bonferroni":
        adjusted = np.minimum(values * values.size, 1.0)
    else:
        adjusted = values
    return iter(float(v) for v in np.atleast_1d(adjusted))


def display_histogram(reference: ColumnBins, current: ColumnBins) -> dict[str, Any]:
    """What the report plots: ~30 bins over the union's range, or the top levels."""
    from shipyard.monitoring import statistics

    if isinstance(reference, LevelCounts) and isinstance(current, LevelCounts):
        levels, ref, cur = statistics.level_counts(reference, current)
        if len(levels) > DISPLAY_BINS:
            keep = DISPLAY_BINS - 1
            levels = [*levels[:keep], "(other levels)"]
            ref = np.append(ref[:keep], ref[keep:].sum())
            cur = np.append(cur[:keep], cur[keep:].sum())
        return {"levels": levels, "reference": ref.tolist(), "current": cur.tolist()}
    assert isinstance(reference, NumericBins) and isinstance(current, NumericBins)
    aligned = statistics.align(reference, current)
    low, high = (
        float(aligned.values[aligned.occupied].min()),
        float(aligned.values[aligned.occupied].max()),
    )
    assert reference.grid is not None
    if reference.grid.exact and high - low < DISPLAY_BINS:
        edges = np.arange(low - 0.5, high + 1.0, 1.0)  # one bin per integer value
    elif high > low:
        edges = np.linspace(low, high, DISPLAY_BINS + 1)
    else:
        edges = np.asarray([low - 0.5, high + 0.5])
    ref_hist, _ = np.histogram(aligned.values, edges, weights=aligned.reference)
    cur_hist, _ = np.histogram(aligned.values, edges, weights=aligned.current)
    return {
        "edges": [float(e) for e in edges],
        "reference": np.rint(ref_hist).astype(np.int64).tolist(),
        "current": np.rint(cur_hist).astype(np.int64).tolist(),
    }


# -- results ----------------------------------------------------------------------------------


@dataclass
class DriftResult:
    """One stored drift run (`to_dict` is what the report and the exporter read)."""

    id: int | None
    model: str
    version: int | None
    reference: str
    window_start: datetime | None
    window_end: datetime | None
    reference_rows: int
    current_rows: int
    drifted: bool
    drifted_share: float
    alerting: bool
    created_at: datetime
    dataset: dict[str, Any]
    settings: dict[str, Any]
    columns: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> dict[str, Any]:
        for column in self.columns:
            if column["name"] == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "reference": self.reference,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted": self.drifted,
            "drifted_share": self.drifted_share,
            "alerting": self.alerting,
            "created_at": _iso(self.created_at),
            **self.stored(),
        }

    def stored(self) -> dict[str, Any]:
        """What DriftResultRecord.result holds."""
        return {
            "dataset": self.dataset,
            "settings": self.settings,
            "columns": self.columns,
            "notes": self.notes,
        }


def _from_record(row: DriftResultRecord) -> DriftResult:
    result = dict(row.result or {})
    return DriftResult(
        id=row.id,
        model=row.model,
        version=row.version,
        reference=row.reference,
        window_start=_aware(row.window_start),
        window_end=_aware(row.window_end),
        reference_rows=int(row.reference_rows),
        current_rows=int(row.current_rows),
        drifted=bool(row.drifted),
        drifted_share=float(row.drifted_share),
        alerting=bool(row.alerting),
        created_at=_aware(row.created_at) or row.created_at,
        dataset=dict(result.get("dataset", {})),
        settings=dict(result.get("settings", {})),
        columns=list(result.get("columns", [])),
        notes=list(result.get("notes", [])),
    )


def latest(model: str, project: Project | None = None) -> DriftResult | None:
    """The model's most recent drift result, or None."""
    found = history(model, limit=1, project=project)
    return found[0] if found else None


def history(model: str, limit: int = 20, project: Project | None = None) -> list[DriftResult]:
    """The model's drift results, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be an integer >= 1; got {limit!r}")
    project = _project(project)
    with project.metadata.read() as session:
        rows = session.scalars(
            select(DriftResultRecord)
            .where(DriftResultRecord.model == model)
            .order_by(DriftResultRecord.created_at.desc(), DriftResultRecord.id.desc())
            .limit(limit)
        ).all()
        return [_from_record(row) for row in rows]


def get(result_id: int, project: Project | None = None) -> DriftResult:
    """One drift result by id; NotFound when there is none."""
    if isinstance(result_id, bool) or not isinstance(result_id, int):
        raise InvalidInput(f"a drift result id is an integer; got {result_id!r}")
    project = _project(project)
    with project.metadata.read() as session:
        row = session.get(DriftResultRecord, result_id)
        if row is None:
            raise NotFound(
                f"no drift result {result_id}; `shipyard drift history MODEL` lists them"
            )
        return _from_record(row)


# -- the reference ----------------------------------------------------------------------------


def reference_for(
    version: DatasetVersion, project: Project, *, kind: str = BINNING
) -> BinnedProfile | None:
    """The cached binned profile of a dataset version under `kind`, or None."""
    from shipyard.data.versions import _version_id

    with project.metadata.read() as session:
        version_id = _version_id(session, version)
        data = session.scalar(
            select(DriftReferenceRecord.profile).where(
                DriftReferenceRecord.dataset_version_id == version_id,
                DriftReferenceRecord.binning == kind,
            )
        )
    return BinnedProfile.from_dict(data) if data else None


def cached_reference(version: DatasetVersion, project: Project) -> BinnedProfile:
    """The binned profile of a dataset version: computed once (a streaming pass), then read."""
    found = reference_for(version, project)
    if found is not None:
        return found
    return _store_reference(version, project, BINNING, reference_profile(version))


def _store_reference(
    version: DatasetVersion, project: Project, kind: str, profile: BinnedProfile
) -> BinnedProfile:
    from shipyard.data.versions import _version_id

    def store(session: Any) -> BinnedProfile:
        version_id = _version_id(session, version)
        existing = session.scalar(
            select(DriftReferenceRecord).where(
                DriftReferenceRecord.dataset_version_id == version_id,
                DriftReferenceRecord.binning == kind,
            )
        )
        if existing is not None:  # another run cached it first: use theirs
            return BinnedProfile.from_dict(existing.profile)
        session.add(
            DriftReferenceRecord(
                dataset_version_id=version_id, binning=kind, profile=profile.to_dict()
            )
        )
        return profile

    result: BinnedProfile = project.metadata.write_with_retry(store)
    return result


def _prediction_reference(
    model_version: ModelVersion,
    model_version_id: int,
    dataset: DatasetVersion,
    features: list[str],
    project: Project,
) -> BinnedProfile:
    """The model version's predictions on its reference rows, binned; computed once."""
    kind = f"{BINNING}/pred/{model_version_id}"
    found = reference_for(dataset, project, kind=kind)
    if found is not None:
        return found
    loaded = model_version.load(project=project)

    def predicted() -> Iterator[pa.RecordBatch]:
        for batch in dataset.iter_batches(features):
            predictions = np.asarray(loaded.predict(batch.to_pandas()))
            if predictions.ndim != 1:
                raise InvalidInput(
                    f"the model's predictions have shape {predictions.shape}; prediction "
                    "drift compares one value per row"
                )
            yield pa.record_batch({PREDICTION: pa.array(predictions.tolist())})

    profile = reference_profile(predicted())
    return _store_reference(dataset, project, kind, profile)


# -- the current window -----------------------------------------------------------------------


@dataclass
class _Window:
    start: datetime | None
    end: datetime | None
    rows: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None


def parse_time(value: datetime | str | None, now: datetime, where: str) -> datetime | None:
    """A datetime, an ISO 8601 time, or a duration before `now` ("1h", "30m")."""
    if value is None or isinstance(value, datetime):
        return _aware(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"{where}: expected a time (ISO 8601) or a duration such as '1h'; got {value!r}"
        )
    try:
        return _aware(datetime.fromisoformat(value.strip()))
    except ValueError:
        pass
    from shipyard.release.spec import parse_duration

    try:
        return now - timedelta(seconds=parse_duration(value, where))
    except InvalidInput:
        raise InvalidInput(
            f"{where}: expected a time (ISO 8601, e.g. 2024-05-01T13:00) or a duration "
            f"before now such as '1h' or '30m'; got {value!r}"
        ) from None


def _log_batches(
    project: Project, model: str, version: int, window: _Window, last: int | None
) -> Iterator[pa.RecordBatch]:
    """(time, protocol, inputs, outputs) of the window's answered records, in batches."""
    from shipyard.predictions.query import stream

    where = [
        "model = ?",
        "version = ?",
        "coalesce(arm, '') <> 'shadow'",
        "coalesce(status, 200) < 500",
    ]
    params: list[Any] = [model, version]
    if window.start is not None:
        where.append("time >= ?")
        params.append(window.start)
    if window.end is not None:
        where.append("time < ?")
        params.append(window.end)
    sql = f"SELECT time, protocol, inputs, outputs FROM predictions WHERE {' AND '.join(where)}"
    if last is not None:
        sql += f" ORDER BY time DESC LIMIT {int(last)}"
    yield from stream(
        sql,
        params,
        model=model,
        since=window.start,
        until=window.end,
        project=project,
        batch_rows=LOG_BATCH_ROWS,
    )


def _decoded(
    batches: Iterable[pa.RecordBatch],
    window: _Window,
    reference: BinnedProfile,
    features: list[str],
    ignore: Sequence[str],
) -> Iterator[tuple[pa.RecordBatch, list[Any]]]:
    """(inputs, predictions) per log batch, decoded and typed as the reference's columns."""
    from shipyard.release.analysis import logged_predictions, logged_rows

    allowed = set(features) | set(ignore)
    for batch in batches:
        times = batch.column("time").to_pylist()
        rows: list[dict[str, Any]] = []
        predictions: list[Any] = []
        for protocol, inputs, outputs in zip(
            batch.column("protocol").to_pylist(),
            batch.column("inputs").to_pylist(),
            batch.column("outputs").to_pylist(),
            strict=True,
        ):
            decoded = logged_rows(str(protocol or ""), inputs)
            rows.extend(decoded)
            predictions.extend(
                p for p in logged_predictions(str(protocol or ""), outputs) if _scalar(p)
            )
        _check_keys(rows, allowed, reference)
        seen: list[datetime] = [t for t in times if t is not None]
        if seen:
            low, high = _aware(min(seen)) or min(seen), _aware(max(seen)) or max(seen)
            window.first_seen = low if window.first_seen is None else min(window.first_seen, low)
            window.last_seen = high if window.last_seen is None else max(window.last_seen, high)
        window.rows += len(rows)
        yield _typed_batch(rows, features, reference), predictions


def _scalar(value: Any) -> bool:
    return value is not None and isinstance(value, str | int | float | bool)


def _check_keys(rows: list[dict[str, Any]], allowed: set[str], reference: BinnedProfile) -> None:
    for row in rows:
        unknown = [key for key in row if key not in allowed]
        if unknown:
            raise InvalidInput(
                f"feature(s) {', '.join(map(repr, unknown))} of the window are not in the "
                f"reference; its columns are {', '.join(reference.names)} (add the feature to "
                "the reference data, or list it under `ignore`)"
            )


def _typed_batch(
    rows: list[dict[str, Any]], features: list[str], reference: BinnedProfile
) -> pa.RecordBatch:
    arrays = []
    for name in features:
        values = [row.get(name) for row in rows]
        if reference[name].kind == "numeric":
            arrays.append(_number_array(name, values))
        else:
            arrays.append(
                pa.array([None if v is None else level_key(v) for v in values], pa.string())
            )
    return pa.RecordBatch.from_arrays(arrays, names=features)


def _number_array(name: str, values: Sequence[Any]) -> pa.Array:
    numbers = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values):
        if value is None:
            numbers[index] = np.nan
            continue
        try:
            numbers[index] = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"column {name!r} is numeric in the reference but the window holds {value!r}; "
                "expected numbers"
            ) from None
    return pa.array(numbers)


# -- a drift run ------------------------------------------------------------------------------


def check(
    model: str,
    *,
    version: int | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    last: int | None = None,
    reference: str | None = None,
    project: Project | None = None,
    save: bool = True,
    now: datetime | None = None,
) -> DriftResult:
    """Drift of `model`'s current window against its reference; stored when `save`.

    The version is `version`, else the model's champion, else its latest. The window is
    [since, until) (times or durations before now), or the `last` N predictions, else the
    settings' window / last, else the last hour; only that version's answered records count
    (arm not shadow, status < 500). The reference is `reference`, else the settings', else
    the dataset version the model version was trained on.
    """
    project = _project(project)
    at = _aware(now) or datetime.now(UTC)
    spec = spec_for(model, project)
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise InvalidInput(f"last must be an integer >= 1; got {last!r}")
    if last is not None and (since is not None or until is not None):
        raise InvalidInput("give either a time range (since/until) or last, not both")
    window = _window(spec, since, until, last, at)
    model_version, version_id = _model_version(model, version, project)
    dataset = _reference_version(reference or spec.reference, model_version, project)
    ref_profile = cached_reference(dataset, project)
    features = _features(model_version, ref_profile, spec, dataset)
    inputs_profile = ref_profile.empty_like(features)
    notes: list[str] = []
    prediction_ref = _try_prediction_reference(
        model_version, version_id, dataset, features, project, notes
    )
    predictions_profile = prediction_ref.empty_like() if prediction_ref else None
    for inputs, predictions in _decoded(
        _log_batches(project, model, model_version.version, window, last or _last(spec, window)),
        window,
        ref_profile,
        features,
        spec.ignore,
    ):
        inputs_profile.merge(current_profile(ref_profile, inputs))
        if predictions_profile is not None and prediction_ref is not None and predictions:
            predictions_profile.merge(_predictions_profile(prediction_ref, predictions))
    if window.rows == 0:
        raise InvalidInput(
            f"the window has no predictions of {model_version.ref} to compare ({_describe(window)}"
            "); widen it (--since, --last) or check that the server logs predictions"
        )
    report = _combined(ref_profile, inputs_profile, prediction_ref, predictions_profile, spec)
    result = _result(model, model_version.version, dataset.ref, window, report, at, notes)
    previous = latest(model, project=project)
    _persist(result, previous, spec)
    if save:
        result = _save(result, project)
        _alert(result, project, at)
    return result


def _window(
    spec: DriftSpec,
    since: datetime | str | None,
    until: datetime | str | None,
    last: int | None,
    now: datetime,
) -> _Window:
    start, end = parse_time(since, now, "since"), parse_time(until, now, "until")
    if start is not None and end is not None and start >= end:
        raise InvalidInput(
            f"the window is empty: since {_iso(start)} is not before until {_iso(end)}"
        )
    if last is None and start is None and spec.last is None:
        start = (end or now) - timedelta(seconds=spec.window or DEFAULT_WINDOW_S)
    if last is None and end is None and spec.last is None:
        end = now
    return _Window(start, end)


def _last(spec: DriftSpec, window: _Window) -> int | None:
    return spec.last if window.start is None and window.end is None else None


def _describe(window: _Window) -> str:
    if window.start is None and window.end is None:
        return "the last predictions"
    return f"from {_iso(window.start) or 'the start'} to {_iso(window.end) or 'now'}"


def _model_version(model: str, version: int | None, project: Project) -> tuple[ModelVersion, int]:
    from shipyard.registry.versions import _aliases_of, _to_version, version_record

    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInput(f"version must be a version number; got {version!r}")
    with project.metadata.read() as session:
        if version is not None:
            record, name = version_record(session, f"{model}@{version}")
        else:
            try:
                record, name = version_record(session, f"{model}@champion")
            except NotFound:
                record, name = version_record(session, model)
        aliases = _aliases_of(session, [record.id])[record.id]
        return _to_version(record, name, aliases), record.id


def _reference_version(
    ref: str | None, model_version: ModelVersion, project: Project
) -> DatasetVersion:
    from shipyard.data.versions import get as get_dataset

    if ref is not None:
        return get_dataset(ref, project=project)
    if not model_version.datasets:
        raise InvalidInput(
            f"{model_version.ref} records no training dataset version to use as the drift "
            f'reference; set `reference = "NAME@VERSION"` under [drift.{model_version.name}] '
            "in shipyard.toml, or pass --reference"
        )
    inputs = model_version.signature.input_names if model_version.signature else []
    candidates = [get_dataset(r, project=project) for r in model_version.datasets]
    holding = [c for c in candidates if all(name in c.schema.names for name in inputs)]
    # What the run read, not what it wrote (its held-out rows, scored copies): a version the
    # training run itself produced is a slice of the data, never the whole training input. Of
    # what remains, the largest version is the fullest picture of the training distribution.
    read = [c for c in holding if not (c.run_id and c.run_id == model_version.run_id)]
    chosen = read or holding or candidates
    return max(chosen, key=lambda candidate: candidate.num_rows)


def _features(
    model_version: ModelVersion,
    reference: BinnedProfile,
    spec: DriftSpec,
    dataset: DatasetVersion,
) -> list[str]:
    signature = model_version.signature
    if signature is None:
        return [name for name in reference.names if name not in spec.ignore]
    wanted = [name for name in signature.input_names if name not in spec.ignore]
    missing = [name for name in wanted if name not in reference]
    if missing:
        raise InvalidInput(
            f"input(s) {', '.join(map(repr, missing))} of {model_version.ref}'s signature are not "
            f"in the reference {dataset.ref}; its columns are {', '.join(reference.names)} "
            "(choose another reference, or list them under `ignore`)"
        )
    return [name for name in reference.names if name in wanted]  # the reference's order


def _try_prediction_reference(
    model_version: ModelVersion,
    version_id: int,
    dataset: DatasetVersion,
    features: list[str],
    project: Project,
    notes: list[str],
) -> BinnedProfile | None:
    # Prediction drift needs the model itself; a model that cannot run here (a missing
    # library, inputs the reference cannot give) costs the run its prediction column only.
    try:
        return _prediction_reference(model_version, version_id, dataset, features, project)
    except Exception as exc:  # any failure of the model: noted, the inputs still checked
        notes.append(f"prediction drift skipped: {' '.join(str(exc).split())[:300]}")
        return None


def _predictions_profile(reference: BinnedProfile, predictions: list[Any]) -> BinnedProfile:
    """The logged predictions binned as the reference's predictions are."""
    if reference[PREDICTION].kind == "numeric":
        column = _number_array(PREDICTION, predictions)
    else:
        column = pa.array([level_key(v) for v in predictions], pa.string())
    return current_profile(reference, pa.record_batch({PREDICTION: column}))


def _combined(
    reference: BinnedProfile,
    inputs: BinnedProfile,
    prediction_reference: BinnedProfile | None,
    predictions: BinnedProfile | None,
    spec: DriftSpec,
) -> DriftReport:
    seen = {name: column for name, column in inputs.columns.items() if column.count}
    columns = {name: reference[name] for name in seen}
    current = dict(seen)
    roles = {}
    if (
        prediction_reference is not None
        and predictions is not None
        and predictions[PREDICTION].count
        and PREDICTION not in columns
    ):
        columns[PREDICTION] = prediction_reference[PREDICTION]
        current[PREDICTION] = predictions[PREDICTION]
        roles[PREDICTION] = "prediction"
    report = compare(BinnedProfile(columns), BinnedProfile(current), spec=spec, roles=roles)
    return report


def _result(
    model: str,
    version: int,
    reference: str,
    window: _Window,
    report: DriftReport,
    at: datetime,
    notes: list[str],
) -> DriftResult:
    stored = report.to_dict()
    settings = {**stored["settings"], "reference": reference}
    reference_rows = max((c.reference_rows for c in report.columns if c.role == "input"), default=0)
    return DriftResult(
        id=None,
        model=model,
        version=version,
        reference=reference,
        window_start=window.start or window.first_seen,
        window_end=window.end or window.last_seen,
        reference_rows=reference_rows,
        current_rows=window.rows,
        drifted=report.drifted,
        drifted_share=report.share,
        alerting=False,
        created_at=at,
        dataset=stored["dataset"],
        settings=settings,
        columns=stored["columns"],
        notes=notes,
    )


def _persist(result: DriftResult, previous: DriftResult | None, spec: DriftSpec) -> None:
    """Streaks: windows in a row drifted, continued from the previous result of the same
    reference; a column or the dataset alerts once its streak reaches `persistence`."""
    same = previous is not None and previous.reference == result.reference
    before = {}
    if previous is not None and same:
        before = {c["name"]: int(c.get("streak", 0)) for c in previous.columns}
    for column in result.columns:
        column["streak"] = before.get(column["name"], 0) + 1 if column["drifted"] else 0
        column["alerting"] = column["streak"] >= spec.persistence
    dataset_before = int(previous.dataset.get("streak", 0)) if same and previous else 0
    streak = dataset_before + 1 if result.drifted else 0
    result.alerting = streak >= spec.persistence
    result.dataset.update({"streak": streak, "alerting": result.alerting})


def _save(result: DriftResult, project: Project) -> DriftResult:
    with project.metadata.write() as session:
        row = DriftResultRecord(
            model=result.model,
            version=result.version,
            reference=result.reference,
            window_start=result.window_start,
            window_end=result.window_end,
            reference_rows=result.reference_rows,
            current_rows=result.current_rows,
            drifted=result.drifted,
            drifted_share=result.drifted_share,
            alerting=result.alerting,
            result=_json_safe(result.stored()),
            created_at=result.created_at,
            created_by=project.user,
        )
        session.add(row)
        session.flush()
        return replace(result, id=row.id)


def _alert(result: DriftResult, project: Project, at: datetime) -> None:
    from shipyard.monitoring.alerting import clear_alert, raise_alert

    # Raised or cleared by the current state, not by its change: an incident is opened once
    # (raise_alert is a no-op while one is open), and one resolved by hand reopens if drift goes on.
    key = f"drift:{result.model}"
    if not result.alerting:
        clear_alert(key, project=project, now=at)
        return
    inputs = [c for c in result.columns if c["role"] == "input"]
    drifted = [c["name"] for c in inputs if c["drifted"]]
    outputs = [c["name"] for c in result.columns if c["role"] != "input" and c["drifted"]]
    raise_alert(
        key=key,
        kind="drift",
        model=result.model,
        severity="warning",
        summary=(
            f"{result.model} v{result.version}: {len(drifted)} of {len(inputs)} input columns "
            f"drifted against {result.reference} for {result.dataset['streak']} windows in a row "
            f"({', '.join(drifted)})" + ("; its predictions drifted too" if outputs else "")
        ),
        evidence={
            "result_id": result.id,
            "drifted_share": result.drifted_share,
            "drifted_columns": drifted + outputs,
            "window_start": _iso(result.window_start),
            "window_end": _iso(result.window_end),
        },
        project=project,
        now=at,
    )


# -- small helpers ----------------------------------------------------------------------------


def _project(project: Project | None) -> Project:
    if project is not None:
        return project
    from shipyard.project import current

    return current()


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    aware = _aware(value)
    return None if aware is None else aware.astimezone(UTC).isoformat()


def _json_safe(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become None, numpy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "METHODS",
    "ColumnDrift",
    "ColumnRule",
    "DriftReport",
    "DriftResult",
    "DriftSpec",
    "cached_reference",
    "check",
    "compare",
    "default_method",
    "get",
    "history",
    "latest",
]
