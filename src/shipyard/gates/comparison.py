"""Gates that compare the candidate with the champion on the standard rows: the differential
test (how much the predictions move) and the benchmark test (how fast each one answers)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.gates.context import GateContext, Subject, json_value
from shipyard.gates.evaluation import check
from shipyard.gates.metrics import Array, Predictions
from shipyard.gates.policy import Benchmark, Differential
from shipyard.gates.report import GateResult, fmt

if TYPE_CHECKING:
    import pandas as pd

NO_CHAMPION = "no champion to compare with"


def _scores(p: Predictions) -> Array:
    """What is compared row by row: the positive-class probability, all class probabilities,
    or the predicted value."""
    if p.proba is not None:
        proba: Array = p.proba[:, -1] if p.proba.shape[1] == 2 else p.proba
        return proba
    if p.task == "regressor":
        values: Array = p.values.astype(np.float64)
        return values
    return p.values


def _row_differences(candidate: Predictions, champion: Predictions, ref: str) -> Array:
    if candidate.task != champion.task:
        raise InvalidInput(
            f"{ref} is a {candidate.task} but the champion is a {champion.task}: their "
            "predictions cannot be compared; register a model of the same kind"
        )
    a, b = _scores(candidate), _scores(champion)
    if a.shape != b.shape:
        raise InvalidInput(
            f"{ref} predicts {a.shape[1:] or 'one value'} per row but the champion "
            f"{b.shape[1:] or 'one value'}: they know different classes"
        )
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        return diff.max(axis=1) if diff.ndim == 2 else diff
    changed: Array = np.asarray(a != b, dtype=np.float64)  # labels only: changed or not
    return changed


def run_differential(gate: Differential, ctx: GateContext) -> GateResult:
    if ctx.champion is None:
        return GateResult(
            gate.label,
            gate.kind,
            gate.required,
            True,
            {"champion": None, "checks": []},
            [NO_CHAMPION],
        )
    candidate = ctx.predictions(ctx.candidate, "standard")
    champion = ctx.predictions(ctx.champion, "standard")
    diff = _row_differences(candidate, champion, ctx.candidate.ref)
    rows = len(diff)
    mean = float(diff.mean()) if rows else 0.0
    largest = float(diff.max()) if rows else 0.0
    numbers: dict[str, float] = {"mean_abs_diff": mean, "max_abs_diff": largest}
    if candidate.task == "classifier":
        numbers["flip_share"] = float((candidate.values != champion.values).mean()) if rows else 0.0
    limits = {
        "mean_abs_diff": gate.max_mean_abs_diff,
        "max_abs_diff": gate.max_abs_diff,
        "flip_share": gate.max_flip_share,
    }
    checks = [
        check(
            name,
            value,
            "<=",
            limits[name],
            limits[name] is None or value <= float(limits[name] or 0.0),
        )
        for name, value in numbers.items()
    ]
    checks = [c if c["threshold"] is not None else {**c, "op": ""} for c in checks]
    passed = all(c["passed"] for c in checks)
    compared = (
        "probability of the positive class"
        if candidate.proba is not None and (candidate.proba.shape[1] == 2)
        else "predictions"
    )
    reasons = [
        f"{rows} rows of {ctx.policy.standard_rows}: {ctx.candidate.ref} vs champion "
        f"{ctx.champion.ref}, absolute difference of the {compared}"
    ]
    reasons += [
        f"{c['name']} = {fmt(c['value'])}, allowed <= {fmt(c['threshold'])}: "
        f"{'within' if c['passed'] else 'EXCEEDED'}"
        for c in checks
        if c["threshold"] is not None
    ]
    if all(limit is None for limit in limits.values()):
        reasons.append("no threshold set: reported, not judged")
    details: dict[str, Any] = {
        "standard": ctx.policy.standard_rows,
        "rows": rows,
        "champion": ctx.champion.ref,
        **numbers,
        "checks": checks,
        "most_changed": _most_changed(gate.top, diff, ctx, candidate, champion),
    }
    return GateResult(gate.label, gate.kind, gate.required, passed, details, reasons)


def _most_changed(
    top: int, diff: Array, ctx: GateContext, candidate: Predictions, champion: Predictions
) -> list[dict[str, Any]]:
    """The `top` rows whose predictions moved most: index, inputs, both predictions."""
    features = ctx.features("standard")
    order = np.argsort(-diff, kind="stable")[:top]
    a, b = _scores(candidate), _scores(champion)
    found = []
    for position in order:
        i = int(position)
        row: dict[str, Any] = {
            "index": json_value(features.index[i]),
            "abs_diff": float(diff[i]),
            "candidate": _cell(a[i]),
            "champion": _cell(b[i]),
            "inputs": {str(k): json_value(v) for k, v in features.iloc[i].items()},
        }
        if candidate.task == "classifier":
            row["candidate_label"] = json_value(candidate.values[i])
            row["champion_label"] = json_value(champion.values[i])
        found.append(row)
    return found


def _cell(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value]
    return json_value(value)


# -- benchmark --------------------------------------------------------------------------------


def _timed(subject: Subject, frame: pd.DataFrame) -> float:
    start = time.perf_counter()
    subject.model.predict(frame)
    return time.perf_counter() - start


def _summary(
    subject: Subject, single: list[float], batch: list[float], rows: int
) -> dict[str, Any]:
    latencies = np.asarray(single) * 1000
    return {
        "version": subject.ref,
        "calls": len(single),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "batch_rows": rows,
        "batch_ms": float(np.median(batch) * 1000),
        "rows_per_s": float(rows / np.median(batch)) if np.median(batch) > 0 else float("inf"),
    }


def run_benchmark(gate: Benchmark, ctx: GateContext) -> GateResult:
    features = ctx.features("standard").iloc[: gate.rows]
    if features.empty:
        raise InvalidInput(
            f"policy {ctx.policy.name!r}, gate {gate.label!r} (benchmark): the "
            f"standard dataset {ctx.policy.standard_rows} has no rows"
        )
    subjects = [ctx.candidate] + ([ctx.champion] if ctx.champion is not None else [])
    singles = [features.iloc[[i]] for i in range(len(features))]  # sliced before timing
    for subject in subjects:  # warm-up: first calls pay for imports and caches
        _timed(subject, singles[0])
    single: dict[str, list[float]] = {s.ref: [] for s in subjects}
    batch: dict[str, list[float]] = {s.ref: [] for s in subjects}
    deadline = time.perf_counter() + gate.max_seconds
    # Interleaved, and alternating who goes first, so both share the machine's noise.
    for i, row in enumerate(singles):
        for subject in subjects if i % 2 == 0 else subjects[::-1]:
            single[subject.ref].append(_timed(subject, row))
        if time.perf_counter() > deadline and i >= 1:
            break
    for r in range(gate.batch_repeats):
        for subject in subjects if r % 2 == 0 else subjects[::-1]:
            batch[subject.ref].append(_timed(subject, features))
        if time.perf_counter() > deadline:
            break
    cand = _summary(
        ctx.candidate, single[ctx.candidate.ref], batch[ctx.candidate.ref], len(features)
    )
    details: dict[str, Any] = {
        "standard": ctx.policy.standard_rows,
        "candidate": cand,
        "max_latency_ratio": gate.max_latency_ratio,
    }
    if ctx.champion is None:
        details.update(champion=None, checks=[check("p99 ms", cand["p99_ms"], "", None, True)])
        reasons = [
            f"{NO_CHAMPION}; {ctx.candidate.ref}: p50 {fmt(cand['p50_ms'])} ms, p99 "
            f"{fmt(cand['p99_ms'])} ms, {fmt(cand['rows_per_s'])} rows/s"
        ]
        return GateResult(gate.label, gate.kind, gate.required, True, details, reasons)
    champ = _summary(ctx.champion, single[ctx.champion.ref], batch[ctx.champion.ref], len(features))
    ratio = cand["p99_ms"] / champ["p99_ms"] if champ["p99_ms"] > 0 else float("inf")
    passed = ratio <= gate.max_latency_ratio
    details.update(
        champion=champ,
        p99_ratio=ratio,
        throughput_ratio=cand["rows_per_s"] / champ["rows_per_s"],
        checks=[check("p99 ratio", ratio, "<=", gate.max_latency_ratio, passed)],
    )
    reasons = [
        f"{cand['calls']} single-row calls each and {len(batch[ctx.candidate.ref])} batches of "
        f"{len(features)} rows, interleaved on this machine",
        f"p99 per row: candidate {fmt(cand['p99_ms'])} ms vs champion {fmt(champ['p99_ms'])} ms"
        f" = {fmt(ratio)}x, allowed <= {fmt(gate.max_latency_ratio)}x: "
        f"{'within' if passed else 'TOO SLOW'}",
        f"throughput: candidate {fmt(cand['rows_per_s'])} rows/s vs champion "
        f"{fmt(champ['rows_per_s'])} rows/s",
    ]
    return GateResult(gate.label, gate.kind, gate.required, passed, details, reasons)
