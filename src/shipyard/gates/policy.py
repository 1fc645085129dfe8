"""Promotion policies: the gates a version must pass before it may take an alias.

A policy is named for the alias it guards. It is written in `shipyard.toml`

    [policies.champion]
    holdout = "customers-test@1"
    target = "churned"
    [[policies.champion.gates]]
    kind = "evaluation"
    metrics = { auc = { min = 0.70 } }

or in Python, `Policy("champion", [Evaluation(metrics={"auc": Threshold(min=0.7)})], ...)`.
Either way it is checked whole before any gate runs: every mistake is an `InvalidInput` naming
the policy, the gate and the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shipyard.errors import InvalidInput, NotFound
from shipyard.gates.metrics import metric

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class Threshold:
    """An absolute bound on a metric: `min` (value >= min) and/or `max` (value <= max)."""

    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        parts = [f">= {self.min:g}"] if self.min is not None else []
        parts += [f"<= {self.max:g}"] if self.max is not None else []
        return " and ".join(parts) or "any"


@dataclass(frozen=True, kw_only=True)
class Gate:
    """What every gate has: a name (default: its kind), and whether it is required."""

    kind: ClassVar[str] = ""
    needs_holdout: ClassVar[bool] = False
    name: str = ""
    required: bool = True

    @property
    def label(self) -> str:
        return self.name or self.kind

    def check(self, where: str) -> None:
        """Raise `InvalidInput` (prefixed with `where`) when a field is wrong."""


@dataclass(frozen=True, kw_only=True)
class Evaluation(Gate):
    """Metrics on the holdout against absolute thresholds."""

    kind: ClassVar[str] = "evaluation"
    needs_holdout: ClassVar[bool] = True
    metrics: Mapping[str, Threshold | Mapping[str, float]] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, Threshold]:
        return {k: _threshold(v, "") for k, v in self.metrics.items()}

    def check(self, where: str) -> None:
        if not isinstance(self.metrics, Mapping) or not self.metrics:
            raise InvalidInput(
                f"{where}: field 'metrics' needs at least one metric, e.g. "
                "metrics = { auc = { min = 0.7 } }"
            )
        for name, bound in self.metrics.items():
            metric(name, f"{where}, field 'metrics'")
            _threshold(bound, f"{where}, field 'metrics.{name}'")


@dataclass(frozen=True, kw_only=True)
class Blessing(Gate):
    """The candidate beats the champion on `metric` by `margin` (or, with no champion,
    meets `threshold` / the evaluation gate's threshold for that metric)."""

    kind: ClassVar[str] = "blessing"
    needs_holdout: ClassVar[bool] = True
    metric: str = "auc"
    margin: float = 0.0
    threshold: Threshold | Mapping[str, float] | None = None

    def check(self, where: str) -> None:
        metric(self.metric, f"{where}, field 'metric'")
        _number(self.margin, f"{where}, field 'margin'", low=0.0)
        if self.threshold is not None:
            _threshold(self.threshold, f"{where}, field 'threshold'")


@dataclass(frozen=True, kw_only=True)
class Differential(Gate):
    """Prediction differences against the champion on the standard rows."""

    kind: ClassVar[str] = "differential"
    max_mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    max_flip_share: float | None = None
    top: int = 10

    def check(self, where: str) -> None:
        for name in ("max_mean_abs_diff", "max_abs_diff"):
            if getattr(self, name) is not None:
                _number(getattr(self, name), f"{where}, field '{name}'", low=0.0)
        if self.max_flip_share is not None:
            _number(self.max_flip_share, f"{where}, field 'max_flip_share'", low=0.0, high=1.0)
        _count(self.top, f"{where}, field 'top'", low=0)


@dataclass(frozen=True, kw_only=True)
class Benchmark(Gate):
    """Latency and throughput against the champion, interleaved, on this machine."""

    kind: ClassVar[str] = "benchmark"
    max_latency_ratio: float = 1.5
    rows: int = 200
    batch_repeats: int = 5
    max_seconds: float = 20.0

    def check(self, where: str) -> None:
        _number(self.max_latency_ratio, f"{where}, field 'max_latency_ratio'", low=0.0, strict=True)
        _count(self.rows, f"{where}, field 'rows'", low=1)
        _count(self.batch_repeats, f"{where}, field 'batch_repeats'", low=1)
        _number(self.max_seconds, f"{where}, field 'max_seconds'", low=0.0, strict=True)


@dataclass(frozen=True, kw_only=True)
class DataValidation(Gate):
    """The version's training data meets the expectations (a file, or the holdout's)."""

    kind: ClassVar[str] = "data_validation"
    expectations: str | None = None

    def check(self, where: str) -> None:
        if self.expectations is not None and (
            not isinstance(self.expectations, str) or not self.expectations
        ):
            raise InvalidInput(
                f"{where}, field 'expectations': expected a file path, got {self.expectations!r}"
            )


@dataclass(frozen=True, kw_only=True)
class Slice(Gate):
    """The metric on each value of `column` stays within `max_gap` of the overall metric."""

    kind: ClassVar[str] = "slice"
    needs_holdout: ClassVar[bool] = True
    column: str = ""
    metric: str = "auc"
    max_gap: float = 0.05
    min_rows: int = 30

    def check(self, where: str) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise InvalidInput(
                f"{where}, field 'column': name the holdout column to slice by, "
                'e.g. column = "city"'
            )
        metric(self.metric, f"{where}, field 'metric'")
        _number(self.max_gap, f"{where}, field 'max_gap'", low=0.0)
        _count(self.min_rows, f"{where}, field 'min_rows'", low=1)


@dataclass(frozen=True, kw_only=True)
class Approval(Gate):
    """A person approved this version for this policy (`shipyard approve`)."""

    kind: ClassVar[str] = "approval"


GATE_KINDS: dict[str, type[Gate]] = {
    g.kind: g
    for g in (Evaluation, Blessing, Differential, Benchmark, DataValidation, Slice, Approval)
}


@dataclass(frozen=True)
class Policy:
    """The gates guarding alias `name`, and the datasets they judge on.

    `holdout` is a dataset version with the `target` column (needed by evaluation, blessing and
    slice gates); `standard` holds the rows of the differential and benchmark tests (default:
    the holdout).
    """

    name: str
    gates: Sequence[Gate]
    holdout: str | None = None
    target: str | None = None
    standard: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not set(self.name) <= _NAME_CHARS:
            raise InvalidInput(
                f"policy name {self.name!r} is not valid: it is the alias it "
                "guards (letters, digits, '_', '-'), e.g. champion"
            )
        where = f"policy {self.name!r}"
        if isinstance(self.gates, (str, bytes)) or not isinstance(self.gates, Sequence):
            raise InvalidInput(f"{where}: 'gates' must be a list of gates")
        if not self.gates:
            raise InvalidInput(
                f"{where} lists no gates; add at least one [[policies.{self.name}.gates]] table"
            )
        for key in ("holdout", "target", "standard"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(
                    f"{where}, field {key!r}: expected a non-empty text, got {value!r}"
                )
        seen: set[str] = set()
        for position, gate in enumerate(self.gates, 1):
            if not isinstance(gate, Gate):
                raise InvalidInput(f"{where}: gate {position} is not a gate ({gate!r})")
            gate_where = f"{where}, gate {gate.label!r} ({gate.kind})"
            if gate.label in seen:
                raise InvalidInput(
                    f"{gate_where}: the name is used twice; give each gate of "
                    'the same kind its own name = "..."'
                )
            seen.add(gate.label)
            if not isinstance(gate.required, bool):
                raise InvalidInput(
                    f"{gate_where}, field 'required': expected true or false, got {gate.required!r}"
                )
            needs = gate.needs_holdout or (
                isinstance(gate, DataValidation) and gate.expectations is None
            )
            if needs and self.holdout is None:
                raise InvalidInput(
                    f"{gate_where} needs a holdout dataset version: set "
                    f'holdout = "NAME@VERSION" in [policies.{self.name}]'
                )
            if gate.needs_holdout and self.target is None:
                raise InvalidInput(
                    f"{gate_where} needs the label column: set target = "
                    f'"COLUMN" in [policies.{self.name}]'
                )
            gate.check(gate_where)

    @property
    def standard_rows(self) -> str | None:
        return self.standard or self.holdout

    @classmethod
    def from_dict(cls, name: str, table: Mapping[str, Any]) -> Policy:
        """A policy from its `[policies.NAME]` table."""
        where = f"policy {name!r}"
        if not isinstance(table, Mapping):
            raise InvalidInput(f"{where}: expected a table, got {table!r}")
        known = {"holdout", "target", "standard", "gates"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise InvalidInput(
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        raw_gates = table.get("gates", [])
        if not isinstance(raw_gates, Sequence) or isinstance(raw_gates, (str, bytes)):
            raise InvalidInput(
                f"{where}: 'gates' must be a list of [[policies.{name}.gates]] tables"
            )
        gates = [_gate_from_dict(where, position, raw) for position, raw in enumerate(raw_gates, 1)]
        return cls(name, gates, table.get("holdout"), table.get("target"), table.get("standard"))


def _gate_from_dict(where: str, position: int, raw: Any) -> Gate:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: gate {position} must be a table, got {raw!r}")
    kind = raw.get("kind")
    gate_where = f"{where}, gate {raw.get('name') or kind or position!r}"
    if kind not in GATE_KINDS:
        raise InvalidInput(
            f"{gate_where}: unknown kind {kind!r}; known kinds: {', '.join(GATE_KINDS)}"
        )
    gate_class = GATE_KINDS[kind]
    fields = {f.name for f in dataclasses.fields(gate_class)}
    options = {k: v for k, v in raw.items() if k != "kind"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InvalidInput(
            f"{gate_where} ({kind}): unknown field {unknown[0]!r} (known: "
            f"{', '.join(sorted(fields))})"
        )
    return gate_class(**options)


def load_policy(name: str, policies: Mapping[str, Mapping[str, Any]]) -> Policy:
    """The policy `name` from the project's `[policies.*]` settings."""
    if name not in policies:
        listed = ", ".join(sorted(policies)) or "none configured"
        raise NotFound(
            f"no promotion policy {name!r} (policies: {listed}); add a "
            f"[policies.{name}] table to .shipyard/shipyard.toml (see docs/gates.md)"
        )
    return Policy.from_dict(name, policies[name])


def _threshold(value: Any, where: str) -> Threshold:
    if isinstance(value, Threshold):
        bound = value
    elif isinstance(value, Mapping) and set(value) <= {"min", "max"} and value:
        bound = Threshold(value.get("min"), value.get("max"))
    else:
        raise InvalidInput(f"{where}: expected {{ min = N }} and/or {{ max = N }}, got {value!r}")
    for key in ("min", "max"):
        if getattr(bound, key) is not None:
            _number(getattr(bound, key), f"{where}.{key}")
    if bound.min is not None and bound.max is not None and bound.min > bound.max:
        raise InvalidInput(f"{where}: min {bound.min} is above max {bound.max}")
    return bound


def _number(
    value: Any,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        limits = []
        if low is not None:
            limits.append(f"{'>' if strict else '>='} {low:g}")
        if high is not None:
            limits.append(f"<= {high:g}")
        wanted = "a number" + (f" {' and '.join(limits)}" if limits else "")
        raise InvalidInput(f"{where}: expected {wanted}, got {value!r}")


def _count(value: Any, where: str, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{where}: expected a whole number >= {low}, got {value!r}")
