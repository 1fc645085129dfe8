"""The experiment of an A/B/n rollout: does another arm do better than the champion?

An A/B rollout (`strategy = "ab"`) splits traffic between the champion and other versions by
its `arms`. Its guardrails (the `analysis` checks) keep it safe; this module answers the
experiment's own question on the outcome declared by `ab_metric` (spec.AB_METRICS):

- conversion: a request succeeds when its reward (feedback) is > 0; the share of successes
  per arm, compared by the two-proportion test;
- reward: the mean reward per request, compared by Welch's test;
- accuracy: the share of labelled predictions equal to their label (two-proportion test;
  numbers by value, "1" == 1, as in the analysis).

What counts
-----------
An arm's records are those its version answered under its A/B arm (`Rollout.arm_of`:
"champion", "v3") from the rollout's start (`created_at`) to `end`. Shadow copies and requests
routed by a flag (arm "flag-v3") were not randomised and are left out. A failed request (5xx)
counts for conversion and reward when an outcome was reported for it (failing is part of what
an arm does to its users); accuracy needs a prediction. Outcomes are joined from
`predictions.feedback` by request id. A request without one is not an observation, so a
conversion feed reports the non-conversions too (reward 0): `coverage` is the share of an
arm's requests (accuracy: predictions) with an outcome, and the report notes when the arms'
coverages differ by more than COVERAGE_GAP, which can bias the comparison.

The test
--------
Each other arm is compared with the champion by the always-valid mSPRT of `experiment`, with
tau = `mde`: the controller looks at every interval, and a result may be acted on at the first
look where it is significant. With several challengers each comparison gets alpha / (arms - 1)
(Bonferroni), so the chance that any is wrongly significant stays at most `alpha`.

`required_n` is the per-arm number of outcomes at which an effect of `mde` is detected with
80% power (`experiment.minimum_sample_size`, sequential), from the baseline: for rates the
champion's estimate (UNKNOWN_BASELINE while it has none, or an estimate of exactly 0 or 1);
for rewards the champion's mean and standard deviation (all arms' pooled while the champion's
is unknown; None while nobody's is). A comparison has `reached` it when both arms have.

The bandit
----------
With `bandit = true` the controller shares traffic by Thompson sampling (`bandit_weights`,
`experiment.thompson_weights`) on each arm's successes and outcomes (reward: reward > 0 is a
success), every arm keeping at least spec.BANDIT_FLOOR, once every arm has
BANDIT_MIN_OUTCOMES outcomes. Weights move users between arms (the split is sticky only while
the weights stay), and adaptive allocation makes the per-arm estimates less exact than a fixed
split's; the tests stay valid as the mSPRT's plug-in variances follow each arm's own n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from shipyard.errors import InvalidInput
from shipyard.predictions.feedback import same_label
from shipyard.release.analysis import _json_object, _load, _scored
from shipyard.release.experiment import (
    TestResult,
    minimum_sample_size,
    thompson_weights,
    two_proportion,
    welch,
)
from shipyard.release.spec import AB_METRICS, BANDIT_FLOOR

if TYPE_CHECKING:
    from shipyard.project import Project
    from shipyard.release.rollouts import Rollout

ALPHA = 0.05
POWER = 0.8
UNKNOWN_BASELINE = 0.1  # the champion's rate while it has no outcomes
COVERAGE_GAP = 0.05  # arms whose outcome coverages differ by more are noted
BANDIT_MIN_OUTCOMES = 20  # per arm, before the bandit moves any traffic
REWEIGHT_MIN_CHANGE = 1.0  # percentage points: smaller moves are sampling noise, not applied


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmReport:
    """One arm of the experiment, and (unless it is the champion) its comparison with it."""

    version: int
    arm: str  # "champion" or "v3": the arm its answers are logged under
    weight: float | None  # percent of the traffic now (None: not in the live split)
    requests: int  # answered by the arm in the window, failed ones included
    failed: int
    units: int  # what coverage is out of: requests, or predictions for accuracy
    outcomes: int  # observations: units with an outcome
    successes: int  # outcomes > 0 (a conversion, a right prediction, a positive reward)
    estimate: float | None  # the rate, or the mean reward; None without outcomes
    sd: float | None  # the reward's standard deviation (reward only, 2 outcomes or more)
    required_n: int | None
    reached: bool
    vs_champion: TestResult | None = None

    @property
    def coverage(self) -> float | None:
        return self.outcomes / self.units if self.units else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "arm": self.arm,
            "weight": self.weight,
            "requests": self.requests,
            "failed": self.failed,
            "units": self.units,
            "outcomes": self.outcomes,
            "coverage": self.coverage,
            "successes": self.successes,
            "estimate": self.estimate,
            "sd": self.sd,
            "required_n": self.required_n,
            "reached": self.reached,
            "vs_champion": self.vs_champion.to_dict() if self.vs_champion else None,
        }


@dataclass(frozen=True)
class ExperimentReport:
    """Every arm of an A/B/n experiment over one window; the champion's arm first."""

    metric: str
    champion: int
    mde: float
    alpha: float
    arms: tuple[ArmReport, ...]
    required_n: int | None
    baseline: float | None  # what required_n was computed from (rates: 0.1 while unknown)
    rollout: str = ""
    model: str = ""
    start: datetime | None = None
    end: datetime | None = None
    notes: tuple[str, ...] = ()

    def arm(self, version: int) -> ArmReport:
        for arm in self.arms:
            if arm.version == version:
                return arm
        raise KeyError(version)

    @property
    def challengers(self) -> tuple[ArmReport, ...]:
        return tuple(arm for arm in self.arms if arm.version != self.champion)

    def summary(self) -> str:
        """One line per challenger, e.g. "v2 vs champion: +3.1 pts [1.2, 5.0], significant"."""
        return "; ".join(self._line(arm) for arm in self.challengers) or "no challenger arm"

    def _line(self, arm: ArmReport) -> str:
        head = f"v{arm.version} vs champion"
        test = arm.vs_champion
        champion = self.arm(self.champion)
        if test is None:
            least = 1 if self.metric != "reward" else 2
            return (
                f"{head}: too few outcomes to compare (v{arm.version} {arm.outcomes}, "
                f"champion {champion.outcomes}; {least} each needed)"
            )
        if self.metric == "reward":
            low, high = test.ci
            effect = f"{test.effect:+.4g} [{low:.4g}, {high:.4g}]"
        else:
            low, high = (100 * bound for bound in test.ci)
            effect = f"{100 * test.effect:+.1f} pts [{low:.1f}, {high:.1f}]"
        n = min(test.n_a, test.n_b)
        if test.significant:
            return f"{head}: {effect}, significant (p {test.p_value:.2g})"
        if self.required_n is None:
            return f"{head}: {effect}, not significant yet, n {n}"
        if arm.reached:
            return f"{head}: {effect}, not significant, n {n} of {self.required_n} reached"
        return f"{head}: {effect}, not significant yet, n {n} of {self.required_n}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (no NaN, no numpy, times as ISO text): the decision's evidence."""
        return _json_object(
            {
                "rollout": self.rollout,
                "model": self.model,
                "metric": self.metric,
                "champion": self.champion,
                "mde": self.mde,
                "alpha": self.alpha,
                "baseline": self.baseline,
                "required_n": self.required_n,
                "window": {
                    "start": self.start.isoformat() if self.start else None,
                    "end": self.end.isoformat() if self.end else None,
                },
                "arms": [arm.to_dict() for arm in self.arms],
                "summary": self.summary(),
                "notes": list(self.notes),
            }
        )


# -- from the log -----------------------------------------------------------------------------


def report(
    rollout: Rollout,
    *,
    end: datetime | None = None,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> ExperimentReport:
    """The experiment of an A/B rollout over its life so far: from `created_at` to `end` (now).

    `folder` is the prediction log (default: the project's); outcomes are read from the
    project's feedback. See the module docstring for what counts and how arms are compared.
    """
    from shipyard.predictions.feedback import labels_for

    if rollout.strategy != "ab":
        raise InvalidInput(
            f"rollout {rollout.name!r} is a {rollout.strategy}; only an A/B rollout "
            "(strategy 'ab') has an experiment"
        )
    end = end if end is not None else datetime.now(UTC)
    if not isinstance(end, datetime) or end.tzinfo is None:
        raise InvalidInput(f"end must be an aware UTC datetime; got {end!r}")
    start, end = rollout.created_at.astimezone(UTC), end.astimezone(UTC)
    metric = rollout.spec.ab_metric
    versions = [rollout.champion, *(v for v in rollout.candidates if v != rollout.champion)]
    records = {}
    for version in versions:
        logged = _load(folder, project, rollout.model, (version, version), start, end)
        records[version] = [r for r in logged if r.arm == rollout.arm_of(version)]
    ids = [r.request_id for found in records.values() for r in found]
    known = labels_for(ids, project=project) if ids else {}
    observed = []
    for version, found in records.items():
        failed = sum(r.failed for r in found)
        if metric == "accuracy":
            labels = {rid: item.label for rid, item in known.items() if item.label is not None}
            scored, predicted, _ = _scored([r for r in found if not r.failed], labels, False)
            values = [1.0 if same_label(s.prediction, s.label) else 0.0 for s in scored]
            units = len(predicted)
        else:
            rewards = (known[r.request_id].reward for r in found if r.request_id in known)
            values = [reward for reward in rewards if reward is not None]
            units = len(found)
        observed.append(_Observed(version, np.asarray(values, float), len(found), failed, units))
    return _build(
        observed,
        champion=rollout.champion,
        metric=metric,
        mde=rollout.spec.mde,
        alpha=ALPHA,
        weights=rollout.weights,
        rollout=rollout.name,
        model=rollout.model,
        start=start,
        end=end,
    )


# -- from numbers -----------------------------------------------------------------------------


def compare(
    outcomes: Mapping[int, ArrayLike],
    *,
    champion: int,
    metric: str = "conversion",
    mde: float = 0.02,
    alpha: float = ALPHA,
    units: Mapping[int, int] | None = None,
    weights: Mapping[str, float] | None = None,
) -> ExperimentReport:
    """The experiment on outcomes in memory: version -> one number per observation.

    conversion: the rewards (> 0 is a success); reward: the rewards; accuracy: 1 for a right
    prediction, 0 for a wrong one. `units` (default: the outcomes) is what each arm's coverage
    is out of. Used by `report`, and for simulations and offline data.
    """
    if not isinstance(metric, str) or metric not in AB_METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(AB_METRICS)}; got {metric!r}")
    if champion not in outcomes:
        raise InvalidInput(f"no outcomes given for the champion v{champion}")
    observed = []
    for version, values in outcomes.items():
        array = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(array).all():
            raise InvalidInput(f"the outcomes of v{version} hold NaN or infinite values")
        count = array.size if units is None else int(units.get(version, array.size))
        observed.append(_Observed(int(version), array, count, 0, count))
    observed.sort(key=lambda o: (o.version != champion, o.version))
    return _build(
        observed, champion=champion, metric=metric, mde=mde, alpha=alpha, weights=weights or {}
    )


@dataclass(frozen=True)
class _Observed:
    version: int
    values: np.ndarray  # one per outcome
    requests: int
    failed: int
    units: int


def _build(
    observed: list[_Observed],
    *,
    champion: int,
    metric: str,
    mde: float,
    alpha: float,
    weights: Mapping[str, float],
    **about: Any,
) -> ExperimentReport:
    binary = metric != "reward"
    (base,) = [o for o in observed if o.version == champion]
    comparisons = max(1, len(observed) - 1)
    each_alpha = alpha / comparisons
    baseline, required = _required(metric, base, observed, mde, each_alpha)
    arms = []
    for item in observed:
        n = int(item.values.size)
        successes = int((item.values > 0).sum())
        estimate: float | None = None
        if n:
            estimate = successes / n if binary else float(item.values.mean())
        sd = float(item.values.std(ddof=1)) if not binary and n >= 2 else None
        test = None
        if item.version != champion:
            test = _test(binary, base.values, item.values, each_alpha, mde)
            if test is not None:
                test = replace(test, required_n=required)
        least = n if item.version == champion else min(n, int(base.values.size))
        arms.append(
            ArmReport(
                version=item.version,
                arm="champion" if item.version == champion else f"v{item.version}",
                weight=weights.get(f"v{item.version}"),
                requests=item.requests,
                failed=item.failed,
                units=item.units,
                outcomes=n,
                successes=successes,
                estimate=estimate,
                sd=sd,
                required_n=required,
                reached=required is not None and least >= required,
                vs_champion=test,
            )
        )
    return ExperimentReport(
        metric=metric,
        champion=champion,
        mde=mde,
        alpha=alpha,
        arms=tuple(arms),
        required_n=required,
        baseline=baseline,
        notes=tuple(_notes(arms, comparisons, alpha)),
        **about,
    )


def _test(
    binary: bool, control: np.ndarray, treated: np.ndarray, alpha: float, mde: float
) -> TestResult | None:
    """The mSPRT of `treated` against `control`; None while either has too few outcomes."""
    if binary:
        if control.size < 1 or treated.size < 1:
            return None
        return two_proportion(
            int((control > 0).sum()),
            int(control.size),
            int((treated > 0).sum()),
            int(treated.size),
            alpha=alpha,
            sequential=True,
            mde=mde,
        )
    if control.size < 2 or treated.size < 2:
        return None
    return welch(
        float(control.mean()),
        float(control.var(ddof=1)),
        int(control.size),
        float(treated.mean()),
        float(treated.var(ddof=1)),
        int(treated.size),
        alpha=alpha,
        sequential=True,
        mde=mde,
    )


def _required(
    metric: str, base: _Observed, observed: list[_Observed], mde: float, alpha: float
) -> tuple[float | None, int | None]:
    """(the baseline, the per-arm outcomes needed to detect `mde`); see the module docstring."""
    if metric != "reward":
        rate = float((base.values > 0).mean()) if base.values.size else None
        baseline = rate if rate is not None and 0 < rate < 1 else UNKNOWN_BASELINE
        effect = mde if baseline + mde < 1 else -mde
        try:
            n = minimum_sample_size(
                "proportion",
                baseline=baseline,
                effect=effect,
                alpha=alpha,
                power=POWER,
                sequential=True,
            )
        except InvalidInput:
            return baseline, None
        return baseline, n
    if base.values.size >= 2 and base.values.std(ddof=1) > 0:
        mean, sd = float(base.values.mean()), float(base.values.std(ddof=1))
    else:
        pooled = np.concatenate([o.values for o in observed])
        if pooled.size < 2 or not pooled.std(ddof=1) > 0:
            return (float(base.values.mean()) if base.values.size else None), None
        mean = float(base.values.mean()) if base.values.size else float(pooled.mean())
        sd = float(pooled.std(ddof=1))
    n = minimum_sample_size(
        "mean", baseline=mean, effect=mde, alpha=alpha, power=POWER, sd=sd, sequential=True
    )
    return mean, n


def _notes(arms: list[ArmReport], comparisons: int, alpha: float) -> list[str]:
    notes = []
    if comparisons > 1:
        notes.append(
            f"{comparisons} challengers: each compared at alpha {alpha / comparisons:.4g} "
            f"(Bonferroni), {alpha:g} for the whole experiment"
        )
    covered = {arm.arm: arm.coverage for arm in arms if arm.coverage is not None}
    if len(covered) > 1 and max(covered.values()) - min(covered.values()) > COVERAGE_GAP:
        shown = ", ".join(f"{name} {share:.0%}" for name, share in covered.items())
        notes.append(
            f"outcome coverage differs between arms ({shown}): if outcomes are missing for "
            "a reason the arm affects, the comparison is biased"
        )
    empty = [arm.arm for arm in arms if arm.requests and not arm.outcomes]
    if empty:
        notes.append(f"no outcomes yet for {', '.join(empty)}: send them with `feedback add`")
    return notes


# -- the bandit -------------------------------------------------------------------------------


def bandit_weights(
    experiment: ExperimentReport,
    current: Mapping[str, float],
    *,
    seed: int | None = None,
    floor: float = BANDIT_FLOOR,
    min_outcomes: int = BANDIT_MIN_OUTCOMES,
) -> dict[str, float] | None:
    """The arms' next weights in percent by Thompson sampling on successes / outcomes, for
    the arms of `current` (the live split, "v3" -> percent), in its order.

    Every arm keeps at least `floor`; weights are rounded to 0.01 and the remainder goes to
    the champion's arm (the first arm when the champion has none), so they sum to exactly 100.
    None while an arm has fewer than `min_outcomes` outcomes: the first posteriors are noise.
    """
    counts: dict[str, tuple[int, int]] = {}
    for arm in experiment.arms:
        label = f"v{arm.version}"
        if label in current:
            counts[label] = (arm.successes, arm.outcomes)
    if not counts or any(trials < min_outcomes for _, trials in counts.values()):
        return None
    order = [label for label in current if label in counts]
    shares = thompson_weights({label: counts[label] for label in order}, seed=seed, floor=floor)
    anchor = f"v{experiment.champion}" if f"v{experiment.champion}" in counts else order[0]
    least = round(100 * floor, 2)
    percents = {
        label: max(round(100 * shares[label], 2), least) for label in order if label != anchor
    }
    rest = round(100 - math.fsum(percents.values()), 2)
    if rest < least and percents:  # rounding up to the floor took it from the anchor
        largest = max(percents, key=lambda label: percents[label])
        percents[largest] = round(percents[largest] - (least - rest), 2)
        rest = round(100 - math.fsum(percents.values()), 2)
    return {label: rest if label == anchor else percents[label] for label in order}


def moved(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """The largest change of one arm's weight, in percentage points."""
    labels = set(before) | set(after)
    return max((abs(after.get(k, 0.0) - before.get(k, 0.0)) for k in labels), default=0.0)
