"""What changed between two dataset versions: schema changes and per-column statistics.

Distributions are compared with the Jensen-Shannon distance (0 = identical, 1 = disjoint):
numbers on a common set of fixed edges spanning both versions' ranges, re-binned from each
version's quantile sketch, and categories over the union of their levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.data.profile import (
    HISTOGRAM_BINS,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
)
from shipyard.data.schema import ColumnSchema
from shipyard.data.versions import DatasetVersion


@dataclass
class ColumnChange:
    """One column's schema change, if any, and how its statistics moved."""

    name: str
    schema_changes: list[str] = field(default_factory=list)
    statistics: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    distance: float | None = None


@dataclass
class DatasetDiff:
    old: str
    new: str
    rows: tuple[int, int]
    added: list[str]
    removed: list[str]
    columns: list[ColumnChange]

    @property
    def schema_changed(self) -> bool:
        return bool(self.added or self.removed or any(c.schema_changes for c in self.columns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "rows": list(self.rows),
            "added": self.added,
            "removed": self.removed,
            "columns": [
                {
                    "name": c.name,
                    "schema_changes": c.schema_changes,
                    "statistics": {k: list(v) for k, v in c.statistics.items()},
                    "distance": c.distance,
                }
                for c in self.columns
            ],
        }


def diff(old: DatasetVersion, new: DatasetVersion) -> DatasetDiff:
    """Compare two versions (of one dataset or of two)."""
    old_names, new_names = old.schema.names, new.schema.names
    old_profile, new_profile = old.profile, new.profile
    changes = [
        _column_change(
            old.schema.column(name),
            new.schema.column(name),
            old_profile.columns[name],
            new_profile.columns[name],
        )
        for name in old_names
        if name in new_names
    ]
    return DatasetDiff(
        old=old.ref,
        new=new.ref,
        rows=(old.num_rows, new.num_rows),
        added=[name for name in new_names if name not in old_names],
        removed=[name for name in old_names if name not in new_names],
        columns=changes,
    )


def _column_change(
    old: ColumnSchema, new: ColumnSchema, old_stats: ColumnProfile, new_stats: ColumnProfile
) -> ColumnChange:
    change = ColumnChange(old.name, schema_changes=_schema_changes(old, new))
    change.statistics["null_share"] = (
        round(old_stats.null_share, 6),
        round(new_stats.null_share, 6),
    )
    if isinstance(old_stats, NumericProfile) and isinstance(new_stats, NumericProfile):
        for key in ("min", "max", "mean", "std", "p50"):
            change.statistics[key] = (old_stats.summary()[key], new_stats.summary()[key])
        change.distance = numeric_distance(old_stats, new_stats)
    elif isinstance(old_stats, CategoricalProfile) and isinstance(new_stats, CategoricalProfile):
        change.statistics["distinct"] = (old_stats.distinct, new_stats.distinct)
        change.distance = categorical_distance(old_stats, new_stats)
    return change


def _schema_changes(old: ColumnSchema, new: ColumnSchema) -> list[str]:
    changes = []
    # Storage types (string vs large_string, us vs ns) differ between writers; only the
    # logical type is a change a model would notice.
    if old.type != new.type:
        changes.append(
            f"type {old.type.value} ({old.arrow_type}) -> {new.type.value} ({new.arrow_type})"
        )
    if old.nullable != new.nullable:
        changes.append("now nullable" if new.nullable else "no longer nullable")
    if old.levels is not None and new.levels is not None:
        added = sorted(set(new.levels) - set(old.levels))
        removed = sorted(set(old.levels) - set(new.levels))
        if added:
            changes.append(
                f"new levels: {', '.join(added[:10])}{' ...' if len(added) > 10 else ''}"
            )
        if removed:
            changes.append(
                f"levels gone: {', '.join(removed[:10])}{' ...' if len(removed) > 10 else ''}"
            )
    return changes


def numeric_distance(old: NumericProfile, new: NumericProfile) -> float | None:
    """Jensen-Shannon distance of two numeric columns over shared fixed edges."""
    if old.minimum is None or new.minimum is None or old.maximum is None or new.maximum is None:
        return None
    low, high = min(old.minimum, new.minimum), max(old.maximum, new.maximum)
    if low == high:
        return 0.0
    edges = [float(x) for x in np.linspace(low, high, HISTOGRAM_BINS + 1)]
    return _js(old.histogram(edges)["counts"], new.histogram(edges)["counts"])


def categorical_distance(old: CategoricalProfile, new: CategoricalProfile) -> float | None:
    """Jensen-Shannon distance of two level distributions over the union of their levels."""
    if old.overflow or new.overflow:
        return None
    levels = sorted(set(old.frequencies) | set(new.frequencies))
    if not levels:
        return None
    return _js(
        [old.frequencies.get(level, 0) for level in levels],
        [new.frequencies.get(level, 0) for level in levels],
    )


def _js(p: list[int], q: list[int]) -> float | None:
    from scipy.spatial.distance import jensenshannon  # scipy is slow to import

    p_array, q_array = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p_array.sum() == 0 or q_array.sum() == 0:
        return None
    return round(float(jensenshannon(p_array, q_array, base=2)), 6)
