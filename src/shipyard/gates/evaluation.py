"""Metric gates on the holdout: evaluation (thresholds), blessing (vs the champion), slices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.gates.context import GateContext, Subject, json_value
from shipyard.gates.metrics import METRICS, Metric, evaluate
from shipyard.gates.policy import Blessing, Evaluation, Slice, Threshold
from shipyard.gates.report import GateResult, fmt

MAX_SLICES = 200


def check(
    name: str, value: float, op: str, threshold: float | None, passed: bool
) -> dict[str, Any]:
    """One comparison a gate made, as stored in `details["checks"]`."""
    return {"name": name, "value": value, "op": op, "threshold": threshold, "passed": passed}


def threshold_checks(name: str, value: float, bound: Threshold) -> list[dict[str, Any]]:
    """One check per bound; NaN (an undefined metric) never meets a bound."""
    known = not math.isnan(value)
    found = []
    if bound.min is not None:
        found.append(check(name, value, ">=", bound.min, known and value >= bound.min))
    if bound.max is not None:
        found.append(check(name, value, "<=", bound.max, known and value <= bound.max))
    return found


def score(ctx: GateContext, subject: Subject, found: Metric) -> float:
    return evaluate(found, ctx.truth(), ctx.predictions(subject, "holdout"), subject.ref)


def run_evaluation(gate: Evaluation, ctx: GateContext) -> GateResult:
    values: dict[str, float] = {}
    checks: list[dict[str, Any]] = []
    for name, bound in gate.thresholds.items():
        values[name] = score(ctx, ctx.candidate, METRICS[name])
        checks += threshold_checks(name, values[name], bound)
    reasons = [
        f"{c['name']} = {fmt(c['value'])} on {ctx.policy.holdout}, needs {c['op']} "
        f"{fmt(c['threshold'])}: {'met' if c['passed'] else 'NOT met'}"
        for c in checks
    ]
    if ctx.dropped_unlabelled:
        reasons.append(f"{ctx.dropped_unlabelled} holdout rows without a label were left out")
    passed = all(c["passed"] for c in checks)
    details = {
        "unlabelled_rows_left_out": ctx.dropped_unlabelled,
        "holdout": ctx.policy.holdout,
        "rows": len(ctx.frame("holdout")),
        "metrics": values,
        "checks": checks,
    }
    return GateResult(gate.label, gate.kind, gate.required, passed, details, reasons)


def _fallback_threshold(gate: Blessing, ctx: GateContext) -> Threshold | None:
    """The bound a first version is held to: the gate's own, else an evaluation gate's."""
    if gate.threshold is not None:
        return (
            gate.threshold
            if isinstance(gate.threshold, Threshold)
            else Threshold(gate.threshold.get("min"), gate.threshold.get("max"))
        )
    for other in ctx.policy.gates:
        if isinstance(other, Evaluation) and gate.metric in other.thresholds:
            return other.thresholds[gate.metric]
    return None


def run_blessing(gate: Blessing, ctx: GateContext) -> GateResult:
    found = METRICS[gate.metric]
    value = score(ctx, ctx.candidate, found)
    details: dict[str, Any] = {
        "holdout": ctx.policy.holdout,
        "metric": gate.metric,
        "candidate": value,
        "margin": gate.margin,
    }
    if ctx.champion is None:
        bound = _fallback_threshold(gate, ctx)
        details["champion"] = None
        if bound is None:
            details["checks"] = [check(gate.metric, value, "", None, True)]
            reasons = [
                f"no champion to compare with and no threshold for {gate.metric}: "
                f"judged by thresholds alone, of which there are none ({gate.metric} = "
                f"{fmt(value)})"
            ]
            return GateResult(gate.label, gate.kind, gate.required, True, details, reasons)
        checks = threshold_checks(gate.metric, value, bound)
        passed = all(c["passed"] for c in checks)
        details["checks"] = checks
        reasons = [
            f"no champion to compare with: judged by thresholds alone; {gate.metric} = "
            f"{fmt(value)}, needs {bound.describe()}: {'met' if passed else 'NOT met'}"
        ]
        return GateResult(gate.label, gate.kind, gate.required, passed, details, reasons)
    champion_value = score(ctx, ctx.champion, found)
    needed = (
        champion_value + gate.margin if found.higher_is_better else (champion_value - gate.margin)
    )
    passed = not math.isnan(value) and found.better(value, champion_value, gate.margin)
    op = ">=" if found.higher_is_better else "<="
    details.update(
        champion=champion_value,
        champion_version=ctx.champion.ref,
        checks=[check(gate.metric, value, op, needed, passed)],
    )
    direction = "higher" if found.higher_is_better else "lower"
    reasons = [
        f"{gate.metric}: candidate {ctx.candidate.ref} {fmt(value)} vs champion "
        f"{ctx.champion.ref} {fmt(champion_value)} ({direction} is better, margin "
        f"{fmt(gate.margin)}, needs {op} {fmt(needed)}): "
        f"{'beats the champion' if passed else 'does NOT beat the champion'}"
    ]
    return GateResult(gate.label, gate.kind, gate.required, passed, details, reasons)


def run_slice(gate: Slice, ctx: GateContext) -> GateResult:
    frame = ctx.frame("holdout")
    if gate.column not in frame.columns:
        raise InvalidInput(
            f"policy {ctx.policy.name!r}, gate {gate.label!r} (slice), field 'column': the "
            f"holdout {ctx.policy.holdout} has no column {gate.column!r} (columns: "
            f"{', '.join(map(str, frame.columns))})"
        )
    column = frame[gate.column]
    levels = column.dropna().unique()
    if len(levels) > MAX_SLICES:
        raise InvalidInput(
            f"policy {ctx.policy.name!r}, gate {gate.label!r} (slice): column {gate.column!r} "
            f"has {len(levels)} distinct values (at most {MAX_SLICES}); slice by a coarser "
            "column, e.g. a binned copy of it"
        )
    found = METRICS[gate.metric]
    truth = ctx.truth()
    predictions = ctx.predictions(ctx.candidate, "holdout")
    overall = evaluate(found, truth, predictions, ctx.candidate.ref)
    slices: list[dict[str, Any]] = []
    keys = column.to_numpy(dtype=object)
    for level in sorted(levels, key=str):
        mask = np.asarray(keys == level, dtype=bool)
        rows = int(mask.sum())
        value = evaluate(found, truth[mask], predictions.take(mask), ctx.candidate.ref)
        gap = found.gap(overall, value)
        judged = rows >= gate.min_rows and not math.isnan(value)
        passed = not judged or gap <= gate.max_gap
        slices.append(
            {
                "value": json_value(level),
                "rows": rows,
                "metric": value,
                "gap": gap,
                "judged": judged,
                "passed": passed,
            }
        )
    failing = [s for s in slices if not s["passed"]]
    worst = max((s for s in slices if s["judged"]), key=lambda s: s["gap"], default=None)
    checks = [
        check(
            f"largest {gate.metric} gap",
            worst["gap"] if worst else 0.0,
            "<=",
            gate.max_gap,
            not failing,
        )
    ]
    unjudged = [s for s in slices if not s["judged"]]
    reasons = [
        f"overall {gate.metric} = {fmt(overall)} on {ctx.policy.holdout}; "
        f"{len(slices)} slices of {gate.column!r}, each may be at most "
        f"{fmt(gate.max_gap)} worse"
    ]
    reasons += [
        f"{gate.column} = {s['value']} ({s['rows']} rows): {gate.metric} "
        f"{fmt(s['metric'])}, {fmt(s['gap'])} worse than overall"
        for s in failing
    ]
    if unjudged:
        reasons.append(
            f"not judged (fewer than {gate.min_rows} rows or metric undefined): "
            + ", ".join(str(s["value"]) for s in unjudged)
        )
    details = {
        "holdout": ctx.policy.holdout,
        "column": gate.column,
        "metric": gate.metric,
        "overall": overall,
        "max_gap": gate.max_gap,
        "min_rows": gate.min_rows,
        "slices": slices,
        "checks": checks,
    }
    return GateResult(gate.label, gate.kind, gate.required, not failing, details, reasons)
