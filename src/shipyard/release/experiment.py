"""Statistics of online experiments (A/B/n tests): how many requests an arm needs, whether the
difference between two arms is real, and how to share traffic between arms.

Why a sequential test by default: a rollout looks at its experiment after every batch and
stops as soon as the result is significant. A fixed-horizon test (z, Welch) read that way
rejects a true null far more often than `alpha` (with 50 looks, about one A/A test in four).
The always-valid test here is the mixture sequential probability ratio test (mSPRT) of Johari,
Koomen, Pekelis and Walsh, "Always valid inference: continuous monitoring of A/B tests" (2017;
Operations Research 2022), with a normal mixture over the effect:

    effect estimate  d = estimate_b - estimate_a,  its variance  v = s_a^2/n_a + s_b^2/n_b
    mixture likelihood ratio against effect = theta0, mixing distribution N(theta0, tau^2):
        Lambda(theta0) = sqrt(v / (v + tau^2)) * exp(tau^2 (d - theta0)^2 / (2 v (v + tau^2)))
    always-valid p-value      p = min(1, 1 / Lambda(0))
    confidence sequence       d +- sqrt(2 v (v + tau^2) / tau^2 * (ln(1/alpha) + ln(1 + tau^2/v)/2))

(with v = 2 sigma^2 / n this is the paper's two-stream formula). Whatever the number and timing
of looks, P(some look has p <= alpha | no effect) <= alpha, and the confidence sequence covers
the true effect at every look at once with probability >= 1 - alpha. Rejecting the first time
p <= alpha is therefore safe; a caller that wants a monotone p-value keeps the running minimum
over looks (the paper's definition), which rejects at exactly the same looks. The per-arm
variances are plug-in estimates (as in Optimizely's Stats Engine, which this test underlies):
exact for known variances, a normal approximation otherwise, as the fixed tests are.

The price of peeking safely is power: at a fixed sample size the mSPRT detects less than the
z-test. `minimum_sample_size(..., sequential=True)` gives the size at which it still has the
requested power at the last look (looking earlier only adds chances to stop).

tau, the mixing standard deviation, is the effect size the test is tuned for: the boundary is
tightest around the sample size at which an effect of about tau becomes detectable. It is
`tau` if given, else the minimum detectable effect `mde` if given (the effect the experiment is
sized for; the recommended way), else 0.1 per-observation standard deviations of the pooled
arms (a "small" standardised effect, Cohen's d = 0.1, typical of product changes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from shipyard.errors import InvalidInput

Metric = Literal["proportion", "mean"]

DEFAULT_STANDARDISED_TAU = 0.1
"""tau in per-observation standard deviations when neither `tau` nor `mde` is given."""


@dataclass(frozen=True)
class TestResult:
    """One comparison of arm b (candidate) with arm a (control or champion)."""

    __test__ = False  # not a pytest test class, whatever its name

    metric: Metric
    n_a: int
    n_b: int
    estimate_a: float
    estimate_b: float
    effect: float
    """estimate_b - estimate_a"""
    relative_effect: float | None
    """effect / estimate_a; None when estimate_a is 0"""
    ci: tuple[float, float]
    """confidence interval of the effect (a confidence sequence when sequential)"""
    p_value: float
    significant: bool
    method: str
    alpha: float
    sequential: bool
    required_n: int | None = None
    """per-arm sample size for the requested power at `mde`; None when no mde was given"""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci"] = list(self.ci)
        return data


# -- sample size ------------------------------------------------------------------------------


def minimum_sample_size(
    kind: Metric,
    *,
    baseline: float,
    effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    sd: float | None = None,
    sequential: bool = False,
    tau: float | None = None,
) -> int:
    """Per-arm sample size for a two-sided test to detect `effect` with probability `power`.

    Fixed horizon (`sequential=False`), the classical normal-approximation formulas, with
    z_a = z_(1 - alpha/2), z_b = z_(power), p1 = baseline, p2 = baseline + effect:

        proportion: n = (z_a sqrt(2 pbar (1 - pbar)) + z_b sqrt(p1 (1-p1) + p2 (1-p2)))^2 / effect^2
                    with pbar = (p1 + p2) / 2 (Fleiss, Levin, Paik, "Statistical Methods for Rates
                    and Proportions", 3rd ed., eq. 4.14, without continuity correction);
        mean:       n = 2 (z_a + z_b)^2 sd^2 / effect^2 (`baseline` is the control mean, only
                    checked: the formula does not depend on it).

    Sequential (`sequential=True`): the smallest n at which the mSPRT of this module, looked at
    only once at n, rejects with probability `power` (normal approximation, unpooled variance
    v = (p1 (1-p1) + p2 (1-p2)) / n or 2 sd^2 / n, tau = `tau` or |effect|). Looking more often
    only adds chances to stop early, so this is enough for monitoring after every batch.

    The result is rounded up and at least 2 (a variance needs two observations).
    """
    _check_unit("alpha", alpha)
    _check_unit("power", power)
    if not math.isfinite(effect) or effect == 0:
        raise InvalidInput(f"effect must be a non-zero finite number (got {effect!r})")
    per_observation = _per_observation_variance(kind, baseline=baseline, effect=effect, sd=sd)
    z_a = float(special.ndtri(1 - alpha / 2))
    z_b = float(special.ndtri(power))
    if sequential:
        tau2 = _positive("tau", tau) ** 2 if tau is not None else effect**2
        n = _sequential_n(abs(effect), per_observation, tau2, alpha, z_b)
    elif kind == "proportion":
        pbar = baseline + effect / 2
        spread = z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(per_observation)
        n = spread**2 / effect**2
    else:
        n = (z_a + z_b) ** 2 * per_observation / effect**2
    # 1e-9 absorbs rounding noise so that an exact integer is not bumped up by one
    return max(2, math.ceil(n - 1e-9))


def _per_observation_variance(
    kind: str, *, baseline: float, effect: float, sd: float | None
) -> float:
    """Variance of (one observation of b) - (one of a) under the alternative."""
    if kind == "proportion":
        if sd is not None:
            raise InvalidInput(
                "sd is for kind 'mean'; a proportion's variance follows from its rate"
            )
        p1, p2 = baseline, baseline + effect
        if not (0 < p1 < 1 and 0 < p2 < 1):
            raise InvalidInput(
                f"baseline ({baseline!r}) and baseline + effect ({p2!r}) must be rates strictly "
                "between 0 and 1 for kind 'proportion'"
            )
        return p1 * (1 - p1) + p2 * (1 - p2)
    if kind == "mean":
        if not math.isfinite(baseline):
            raise InvalidInput(f"baseline must be a finite number (got {baseline!r})")
        if sd is None:
            raise InvalidInput("kind 'mean' needs sd, the per-observation standard deviation")
        return 2 * _positive("sd", sd) ** 2
    raise InvalidInput(f"kind must be 'proportion' or 'mean' (got {kind!r})")


def _sequential_n(
    effect: float, per_observation: float, tau2: float, alpha: float, z_b: float
) -> float:
    """Solve effect = half_width(v_n) + z_b sqrt(v_n) for n, with v_n = per_observation / n.

    The right-hand side decreases in n, so the root is unique; brentq finds it once a bracket
    is found by doubling.
    """

    def margin(n: float) -> float:
        v = per_observation / n
        return effect - _half_width(v, tau2, alpha) - z_b * math.sqrt(v)

    if margin(1.0) >= 0:
        return 1.0
    high = 2.0
    while margin(high) < 0:
        high *= 2
    return float(optimize.brentq(margin, high / 2, high, xtol=1e-6))


# -- two-arm tests ----------------------------------------------------------------------------


def two_proportion(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    mde: float | None = None,
    tau: float | None = None,
    power: float = 0.8,
) -> TestResult:
    """Compare two conversion rates: arm b (candidate) against arm a (control).

    `sequential=True`: the mSPRT (see the module docstring), valid however often it is looked
    at. `sequential=False`: the fixed-horizon two-sided z-test with the pooled rate (identical
    to the chi-square test of the 2x2 table without continuity correction), valid for one look
    only; its interval is the unpooled Wald interval. Intervals are clipped to [-1, 1].

    `mde` (absolute change of the rate) sets tau and `required_n`; `power` only the latter.
    When both arms are all failures (or all successes) there is no information: p = 1 and the
    interval is [-1, 1].
    """
    _check_unit("alpha", alpha)
    _check_counts("a", successes_a, n_a)
    _check_counts("b", successes_b, n_b)
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    effect = rate_b - rate_a
    pooled_rate = (successes_a + successes_b) / (n_a + n_b)
    pooled = pooled_rate * (1 - pooled_rate) * (1 / n_a + 1 / n_b)
    unpooled = rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b
    # one arm at 0 and the other at 1 leaves no unpooled spread; the pooled one still measures it
    variance = unpooled if unpooled > 0 else pooled
    sd = math.sqrt(pooled_rate * (1 - pooled_rate))
    if pooled == 0:
        p_value, ci, method = 1.0, (-1.0, 1.0), "no information (both arms constant)"
    elif sequential:
        tau_ = _tau(tau, mde, sd)
        p_value, ci = _msprt(effect, variance, tau_**2, alpha)
        method = f"mSPRT two-proportion (normal mixture, tau={tau_:.4g})"
    else:
        p_value = float(2 * special.ndtr(-abs(effect) / math.sqrt(pooled)))
        ci = _wald(effect, variance, alpha)
        method = "two-proportion z-test (pooled)"
    required_n = None
    if mde is not None:
        required_n = _required_n("proportion", rate_a, mde, alpha, power, None, sequential, tau)
    return TestResult(
        metric="proportion",
        n_a=int(n_a),
        n_b=int(n_b),
        estimate_a=rate_a,
        estimate_b=rate_b,
        effect=effect,
        relative_effect=effect / rate_a if rate_a else None,
        ci=(max(-1.0, ci[0]), min(1.0, ci[1])),
        p_value=p_value,
        significant=p_value <= alpha,
        method=method,
        alpha=alpha,
        sequential=sequential,
        required_n=required_n,
    )


def welch(
    mean_a: float,
    var_a: float,
    n_a: int,
    mean_b: float,
    var_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    mde: float | None = None,
    tau: float | None = None,
    power: float = 0.8,
) -> TestResult:
    """Compare two means from summary statistics (var_* are sample variances, ddof=1).

    `sequential=True`: the mSPRT with v = var_a/n_a + var_b/n_b (normal approximation).
    `sequential=False`: Welch's unequal-variance t-test (scipy.stats.ttest_ind_from_stats) and
    its interval with the Welch-Satterthwaite degrees of freedom.

    Both variances 0 (a constant metric in both arms): p is 0 if the means differ, else 1, and
    the interval is the single point `effect`; the t statistic is undefined there.
    """
    _check_unit("alpha", alpha)
    for arm, mean, var, n in (("a", mean_a, var_a, n_a), ("b", mean_b, var_b, n_b)):
        _check_summary(arm, mean, var, n)
    effect = mean_b - mean_a
    se_a2, se_b2 = var_a / n_a, var_b / n_b
    variance = se_a2 + se_b2
    if variance == 0:
        p_value = 1.0 if effect == 0 else 0.0
        ci, method = (effect, effect), "no spread (both arms constant)"
    elif sequential:
        tau_ = _tau(tau, mde, math.sqrt((var_a + var_b) / 2))
        p_value, ci = _msprt(effect, variance, tau_**2, alpha)
        method = f"mSPRT Welch (normal mixture, tau={tau_:.4g})"
    else:
        result = stats.ttest_ind_from_stats(
            mean_b, math.sqrt(var_b), n_b, mean_a, math.sqrt(var_a), n_a, equal_var=False
        )
        p_value = float(result.pvalue)
        df = variance**2 / (se_a2**2 / (n_a - 1) + se_b2**2 / (n_b - 1))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(variance)
        ci, method = (effect - half, effect + half), "Welch t-test"
    required_n = None
    if mde is not None:
        sd = math.sqrt((var_a + var_b) / 2)
        required_n = _required_n("mean", mean_a, mde, alpha, power, sd, sequential, tau)
    return TestResult(
        metric="mean",
        n_a=int(n_a),
        n_b=int(n_b),
        estimate_a=float(mean_a),
        estimate_b=float(mean_b),
        effect=float(effect),
        relative_effect=float(effect / mean_a) if mean_a else None,
        ci=(float(ci[0]), float(ci[1])),
        p_value=p_value,
        significant=p_value <= alpha,
        method=method,
        alpha=alpha,
        sequential=sequential,
        required_n=required_n,
    )


def welch_from_samples(
    a: ArrayLike,
    b: ArrayLike,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    mde: float | None = None,
    tau: float | None = None,
    power: float = 0.8,
) -> TestResult:
    """`welch` on raw observations: one number per request and arm, NaN not allowed."""
    summaries = [_summary(name, values) for name, values in (("a", a), ("b", b))]
    (mean_a, var_a, n_a), (mean_b, var_b, n_b) = summaries
    return welch(
        mean_a,
        var_a,
        n_a,
        mean_b,
        var_b,
        n_b,
        alpha=alpha,
        sequential=sequential,
        mde=mde,
        tau=tau,
        power=power,
    )


def _summary(name: str, values: ArrayLike) -> tuple[float, float, int]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"sample {name} must hold numbers only: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInput(f"sample {name} must be one-dimensional (got shape {array.shape})")
    if array.size < 2:
        raise InvalidInput(f"sample {name} needs at least 2 observations (got {array.size})")
    if not np.isfinite(array).all():
        raise InvalidInput(f"sample {name} holds NaN or infinite values; drop them first")
    return float(array.mean()), float(array.var(ddof=1)), int(array.size)


# -- the mSPRT --------------------------------------------------------------------------------


def _msprt(
    effect: float, variance: float, tau2: float, alpha: float
) -> tuple[float, tuple[float, float]]:
    """Always-valid p-value and confidence sequence (formulas in the module docstring).

    Computed in logs: the likelihood ratio overflows a float long before the p-value
    underflows to 0.
    """
    log_ratio = 0.5 * math.log(variance / (variance + tau2)) + tau2 * effect**2 / (
        2 * variance * (variance + tau2)
    )
    p_value = math.exp(-log_ratio) if log_ratio > 0 else 1.0
    half = _half_width(variance, tau2, alpha)
    return p_value, (effect - half, effect + half)


def _half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the mSPRT confidence sequence: where Lambda(theta0) = 1/alpha."""
    log_term = math.log(1 / alpha) + 0.5 * math.log1p(tau2 / variance)
    return math.sqrt(2 * variance * (variance + tau2) / tau2 * log_term)


def _tau(tau: float | None, mde: float | None, sd: float) -> float:
    """The mixing standard deviation: explicit, else the mde, else 0.1 sd (module docstring)."""
    if tau is not None:
        return _positive("tau", tau)
    if mde is not None:
        return abs(_nonzero("mde", mde))
    return DEFAULT_STANDARDISED_TAU * sd


def _wald(effect: float, variance: float, alpha: float) -> tuple[float, float]:
    half = float(special.ndtri(1 - alpha / 2)) * math.sqrt(variance)
    return effect - half, effect + half


def _required_n(
    kind: Metric,
    baseline: float,
    mde: float,
    alpha: float,
    power: float,
    sd: float | None,
    sequential: bool,
    tau: float | None,
) -> int | None:
    """The sample size for `mde` around the observed control; None where it is undefined
    (a control rate of 0 or 1, a zero spread)."""
    _nonzero("mde", mde)
    _check_unit("power", power)
    try:
        return minimum_sample_size(
            kind,
            baseline=baseline,
            effect=mde,
            alpha=alpha,
            power=power,
            sd=sd,
            sequential=sequential,
            tau=tau,
        )
    except InvalidInput:
        return None


# -- traffic ----------------------------------------------------------------------------------


def thompson_weights(
    arms: Mapping[str, tuple[int, int]],
    *,
    draws: int = 10_000,
    seed: int | None = None,
    floor: float = 0.0,
) -> dict[str, float]:
    """Traffic weights by Thompson sampling for Bernoulli rewards (arm -> (successes, trials)).

    Each arm's weight is the posterior probability that it is the best arm, under independent
    Beta(1 + successes, 1 + failures) posteriors (uniform priors), estimated from `draws` joint
    draws of numpy's Generator (`seed` makes it reproducible). Sending traffic in proportion to
    it explores arms while they might still be best and exploits the best one as evidence grows.

    `floor` keeps exploring: every arm gets at least `floor` of the traffic, the rest is shared
    by the Thompson probabilities: w = floor + (1 - k floor) p. It must be at most 1/k.
    """
    if not arms:
        raise InvalidInput("thompson_weights needs at least one arm (got none)")
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise InvalidInput(f"draws must be a positive integer (got {draws!r})")
    if not (math.isfinite(floor) and 0 <= floor <= 1 / len(arms)):
        raise InvalidInput(
            f"floor must be between 0 and 1/{len(arms)} (one over the number of arms), "
            f"got {floor!r}"
        )
    for name, counts in arms.items():
        if not (isinstance(counts, tuple | list) and len(counts) == 2):
            raise InvalidInput(f"arm {name!r} must map to (successes, trials), got {counts!r}")
        _check_counts(repr(name), counts[0], counts[1], allow_empty=True)
    successes = np.array([counts[0] for counts in arms.values()], dtype=np.float64)
    trials = np.array([counts[1] for counts in arms.values()], dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = rng.beta(1 + successes, 1 + trials - successes, size=(draws, len(arms)))
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    weights = floor + (1 - len(arms) * floor) * best
    return {name: float(weight) for name, weight in zip(arms, weights, strict=True)}


# -- input checks -----------------------------------------------------------------------------


def _check_unit(name: str, value: float) -> None:
    if not (isinstance(value, int | float | np.floating) and 0 < value < 1):
        raise InvalidInput(f"{name} must be a number strictly between 0 and 1 (got {value!r})")


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"{name} must be a positive finite number (got {value!r})")
    return float(value)


def _nonzero(name: str, value: float) -> float:
    if not (math.isfinite(value) and value != 0):
        raise InvalidInput(f"{name} must be a non-zero finite number (got {value!r})")
    return float(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_counts(arm: str, successes: int, trials: int, *, allow_empty: bool = False) -> None:
    """Whole, non-negative counts with successes <= trials (and trials >= 1 for a test)."""
    if not (_is_count(successes) and _is_count(trials)):
        raise InvalidInput(
            f"arm {arm}: successes and trials must be integers (got {successes!r}, {trials!r})"
        )
    least = 0 if allow_empty else 1
    if trials < least or successes < 0 or successes > trials:
        raise InvalidInput(
            f"arm {arm}: expected 0 <= successes <= trials and trials >= {least} "
            f"(got successes={successes}, trials={trials})"
        )


def _check_summary(arm: str, mean: float, var: float, n: int) -> None:
    if not _is_count(n) or n < 2:
        raise InvalidInput(f"arm {arm}: n must be an integer >= 2 for a variance (got {n!r})")
    if not math.isfinite(mean):
        raise InvalidInput(f"arm {arm}: mean must be a finite number (got {mean!r})")
    if not (math.isfinite(var) and var >= 0):
        raise InvalidInput(f"arm {arm}: variance must be a finite number >= 0 (got {var!r})")
