"""The A/B test statistics: exact agreement with scipy on the fixed-horizon tests, a textbook
sample size, and seeded simulations of peeking (why the sequential test is the default)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from shipyard.errors import InvalidInput
from shipyard.release.experiment import (
    minimum_sample_size,
    thompson_weights,
    two_proportion,
    welch,
    welch_from_samples,
)

ALPHA = 0.05
SIMULATIONS = 300
# the simulated error rates may exceed their nominal value by binomial noise: two standard errors
NOISE = 2 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


# -- fixed horizon: scipy agreement -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sa", "na", "sb", "nb"),
    [(100, 1000, 130, 1000), (5, 40, 9, 37), (480, 5000, 455, 5100), (0, 20, 3, 20)],
)
def test_fixed_two_proportion_matches_scipy_chi_square(sa: int, na: int, sb: int, nb: int) -> None:
    # the pooled z-test is the 2x2 chi-square test without continuity correction (chi2 = z^2)
    result = two_proportion(sa, na, sb, nb, sequential=False)
    table = [[sa, na - sa], [sb, nb - sb]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert result.p_value == pytest.approx(expected, abs=1e-9)
    wald = stats.norm.ppf(1 - ALPHA / 2) * math.sqrt(
        sa / na * (1 - sa / na) / na + sb / nb * (1 - sb / nb) / nb
    )
    assert result.ci[0] == pytest.approx(max(-1.0, result.effect - wald), abs=1e-9)
    assert result.ci[1] == pytest.approx(min(1.0, result.effect + wald), abs=1e-9)
    assert result.effect == pytest.approx(sb / nb - sa / na)
    assert result.significant == (result.p_value <= ALPHA)
    assert not result.sequential


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_fixed_welch_matches_scipy(alpha: float) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(10.0, 2.0, size=40), rng.normal(11.0, 3.5, size=55)
    result = welch_from_samples(a, b, alpha=alpha, sequential=False)
    expected = stats.ttest_ind(b, a, equal_var=False)
    interval = expected.confidence_interval(confidence_level=1 - alpha)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-9)
    assert result.ci[0] == pytest.approx(interval.low, abs=1e-9)
    assert result.ci[1] == pytest.approx(interval.high, abs=1e-9)
    assert result.effect == pytest.approx(b.mean() - a.mean())
    assert (result.n_a, result.n_b) == (40, 55)


# -- sample size ------------------------------------------------------------------------------


def test_minimum_sample_size_proportion_textbook() -> None:
    # Fleiss, Levin & Paik (2003), eq. 4.14 without continuity correction: p1 = 0.10, p2 = 0.12,
    # pbar = 0.11: (1.95996 sqrt(2 * 0.11 * 0.89) + 0.84162 sqrt(0.09 + 0.1056))^2 / 0.02^2
    # = (0.86726 + 0.37222)^2 / 0.0004 = 3840.8 -> 3841 per arm
    assert minimum_sample_size("proportion", baseline=0.10, effect=0.02) == 3841
    z_a, z_b = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    by_hand = (z_a * math.sqrt(2 * 0.11 * 0.89) + z_b * math.sqrt(0.09 + 0.12 * 0.88)) ** 2 / 4e-4
    assert math.ceil(by_hand) == 3841
    # a decrease needs the same formula mirrored
    assert minimum_sample_size("proportion", baseline=0.12, effect=-0.02) == 3841


def test_minimum_sample_size_mean_textbook() -> None:
    # 2 (z_.975 + z_.8)^2 / d^2 with d = 0.5: 2 * 2.8016^2 / 0.25 = 62.8 -> 63 per arm
    assert minimum_sample_size("mean", baseline=100.0, effect=5.0, sd=10.0) == 63


def test_sequential_sample_size_is_larger() -> None:
    fixed = minimum_sample_size("proportion", baseline=0.10, effect=0.03)
    sequential = minimum_sample_size("proportion", baseline=0.10, effect=0.03, sequential=True)
    assert fixed == 1774
    assert 1.3 * fixed < sequential < 3 * fixed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "proportion", "baseline": 0.0, "effect": 0.02},
        {"kind": "proportion", "baseline": 0.99, "effect": 0.02},
        {"kind": "proportion", "baseline": 0.1, "effect": 0.0},
        {"kind": "proportion", "baseline": 0.1, "effect": 0.02, "alpha": 1.0},
        {"kind": "proportion", "baseline": 0.1, "effect": 0.02, "power": 0.0},
        {"kind": "proportion", "baseline": 0.1, "effect": 0.02, "sd": 1.0},
        {"kind": "mean", "baseline": 0.0, "effect": 1.0},
        {"kind": "mean", "baseline": 0.0, "effect": 1.0, "sd": -1.0},
        {"kind": "median", "baseline": 0.0, "effect": 1.0, "sd": 1.0},
        {"kind": "mean", "baseline": 0.0, "effect": 1.0, "sd": 1.0, "sequential": True, "tau": 0},
    ],
)
def test_minimum_sample_size_rejects_bad_input(kwargs: dict[str, object]) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(InvalidInput):
        minimum_sample_size(kind, **kwargs)  # type: ignore[arg-type]


# -- the mSPRT --------------------------------------------------------------------------------


def test_msprt_matches_the_papers_formula() -> None:
    # Johari et al. (2017), two streams with known variance sigma^2 and n per arm:
    # Lambda = sqrt(2 s2 / (2 s2 + n tau^2)) exp(n^2 tau^2 d^2 / (4 s2 (2 s2 + n tau^2)))
    s2, n, d, tau = 4.0, 500, 0.45, 0.3
    result = welch(0.0, s2, n, d, s2, n, tau=tau)
    ratio = math.sqrt(2 * s2 / (2 * s2 + n * tau**2)) * math.exp(
        n**2 * tau**2 * d**2 / (4 * s2 * (2 * s2 + n * tau**2))
    )
    assert result.p_value == pytest.approx(min(1.0, 1 / ratio), rel=1e-12)
    assert result.sequential and result.method.startswith("mSPRT")


def test_sequential_interval_is_consistent_and_wider() -> None:
    for sb in range(80, 181, 5):
        sequential = two_proportion(100, 1000, sb, 1000, mde=0.03)
        fixed = two_proportion(100, 1000, sb, 1000, sequential=False)
        excludes_zero = sequential.ci[0] > 0 or sequential.ci[1] < 0
        assert sequential.significant == excludes_zero
        assert sequential.ci[0] <= sequential.effect <= sequential.ci[1]
        assert sequential.ci[1] - sequential.ci[0] > fixed.ci[1] - fixed.ci[0]
        assert sequential.p_value >= fixed.p_value


def test_result_fields_and_to_dict() -> None:
    result = two_proportion(100, 1000, 150, 1000, mde=0.03)
    assert (result.metric, result.n_a, result.n_b) == ("proportion", 1000, 1000)
    assert result.estimate_a == pytest.approx(0.10)
    assert result.relative_effect == pytest.approx(0.5)
    assert result.significant
    assert result.required_n == minimum_sample_size(
        "proportion", baseline=0.10, effect=0.03, sequential=True
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ci"] == list(result.ci)
    assert data["p_value"] == result.p_value
    assert two_proportion(100, 1000, 150, 1000).required_n is None


def test_degenerate_arms() -> None:
    empty = two_proportion(0, 50, 0, 60)
    assert (empty.p_value, empty.ci, empty.significant) == (1.0, (-1.0, 1.0), False)
    assert empty.relative_effect is None
    opposite = two_proportion(0, 50, 50, 50, sequential=False)
    # no spread within either arm: the interval falls back to the pooled variance, clipped at 1
    assert opposite.significant and 0 < opposite.ci[0] < 1 and opposite.ci[1] == 1.0
    constant = welch(3.0, 0.0, 10, 3.0, 0.0, 10)
    assert constant.p_value == 1.0 and constant.ci == (0.0, 0.0)
    assert welch(3.0, 0.0, 10, 4.0, 0.0, 10).significant


@pytest.mark.parametrize(
    "args",
    [
        (-1, 10, 1, 10),
        (11, 10, 1, 10),
        (1, 0, 1, 10),
        (1, 10, 1, -10),
        (1.0, 10, 1, 10),
        (True, 10, 1, 10),
    ],
)
def test_two_proportion_rejects_bad_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidInput):
        two_proportion(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0, float("nan")])
def test_alpha_must_be_inside_zero_one(alpha: float) -> None:
    with pytest.raises(InvalidInput, match="alpha"):
        two_proportion(1, 10, 2, 10, alpha=alpha)
    with pytest.raises(InvalidInput, match="alpha"):
        welch(0.0, 1.0, 10, 0.0, 1.0, 10, alpha=alpha)


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1.0, 1, 0.0, 1.0, 10),  # one observation: no variance
        (0.0, 0.0, 1, 0.0, 0.0, 1),
        (0.0, -1.0, 10, 0.0, 1.0, 10),
        (float("nan"), 1.0, 10, 0.0, 1.0, 10),
        (0.0, 1.0, 10.5, 0.0, 1.0, 10),
    ],
)
def test_welch_rejects_bad_summaries(args: tuple[float, float, int, float, float, int]) -> None:
    with pytest.raises(InvalidInput):
        welch(*args)


def test_welch_from_samples_rejects_bad_samples() -> None:
    with pytest.raises(InvalidInput, match="at least 2"):
        welch_from_samples([1.0], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="NaN"):
        welch_from_samples([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="numbers"):
        welch_from_samples(["x", "y"], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="mde"):
        welch_from_samples([1.0, 2.0], [1.0, 2.0], mde=0.0)
    with pytest.raises(InvalidInput, match="power"):
        welch_from_samples([1.0, 2.0], [1.0, 2.0], mde=0.5, power=1.5)


# -- simulations: peeking ---------------------------------------------------------------------


def _batches(rng: np.random.Generator, rate: float, sizes: np.ndarray) -> np.ndarray:
    """Cumulative successes per simulation (rows) at every look (columns)."""
    return np.cumsum(rng.binomial(sizes, rate, size=(SIMULATIONS, len(sizes))), axis=1)


def _rejected_at_some_look(
    a: np.ndarray, b: np.ndarray, looks: np.ndarray, **kwargs: object
) -> float:
    """Share of simulations stopped for significance at some look (stopping at the first)."""
    rejected = 0
    for row_a, row_b in zip(a, b, strict=True):
        for sa, sb, n in zip(row_a, row_b, looks, strict=True):
            if two_proportion(int(sa), int(n), int(sb), int(n), alpha=ALPHA, **kwargs).significant:  # type: ignore[arg-type]
                rejected += 1
                break
    return rejected / len(a)


def test_aa_peeking_sequential_holds_alpha_and_naive_does_not() -> None:
    rng = np.random.default_rng(20240611)
    sizes = np.full(50, 100)  # a look after every 100 requests per arm, up to 5,000
    looks = np.cumsum(sizes)
    a, b = _batches(rng, 0.10, sizes), _batches(rng, 0.10, sizes)
    sequential = _rejected_at_some_look(a, b, looks)
    tuned = _rejected_at_some_look(a, b, looks, mde=0.02)
    naive = _rejected_at_some_look(a, b, looks, sequential=False)
    assert sequential <= ALPHA + NOISE
    assert tuned <= ALPHA + NOISE
    # 50 looks at a fixed-horizon test: roughly one A/A test in three "wins"
    assert naive > 3 * ALPHA


def test_known_effect_detected_at_the_computed_sample_size() -> None:
    required = minimum_sample_size("proportion", baseline=0.10, effect=0.03, sequential=True)
    sizes = np.full(-(-required // 100), 100)
    sizes[-1] = required - 100 * (len(sizes) - 1)  # the last look is at exactly `required`
    looks = np.cumsum(sizes)
    rng = np.random.default_rng(31337)
    a, b = _batches(rng, 0.10, sizes), _batches(rng, 0.13, sizes)
    power = _rejected_at_some_look(a, b, looks, mde=0.03)
    assert power >= 0.80


def _welch_stopped(a: np.ndarray, b: np.ndarray, looks: np.ndarray, **kwargs: object) -> float:
    """Share of simulations where Welch is significant at some look (stopping at the first)."""
    stopped = 0
    for sample_a, sample_b in zip(a, b, strict=True):
        for n in looks:
            if welch_from_samples(sample_a[:n], sample_b[:n], alpha=ALPHA, **kwargs).significant:  # type: ignore[arg-type]
                stopped += 1
                break
    return stopped / len(a)


def test_welch_simulations_find_a_known_difference_and_no_phantom() -> None:
    rng = np.random.default_rng(99)
    n = minimum_sample_size("mean", baseline=0.0, effect=0.25, sd=1.0)
    control = rng.normal(0.0, 1.0, size=(SIMULATIONS, n))
    null = rng.normal(0.0, 1.0, size=(SIMULATIONS, n))
    shifted = rng.normal(0.25, 1.0, size=(SIMULATIONS, n))
    once = np.array([n])
    assert _welch_stopped(control, null, once, sequential=False) <= ALPHA + NOISE
    assert _welch_stopped(control, shifted, once, sequential=False) >= 0.80 - NOISE
    n_seq = minimum_sample_size("mean", baseline=0.0, effect=0.25, sd=1.0, sequential=True)
    control = rng.normal(0.0, 1.0, size=(SIMULATIONS, n_seq))
    null = rng.normal(0.0, 1.0, size=(SIMULATIONS, n_seq))
    shifted = rng.normal(0.25, 1.0, size=(SIMULATIONS, n_seq))
    looks = np.unique(np.append(np.arange(50, n_seq, 50), n_seq))
    assert _welch_stopped(control, null, looks, mde=0.25) <= ALPHA + NOISE
    assert _welch_stopped(control, shifted, looks, mde=0.25) >= 0.80 - NOISE


# -- Thompson sampling ------------------------------------------------------------------------


def test_thompson_prefers_the_clearly_better_arm() -> None:
    weights = thompson_weights({"champion": (100, 1000), "candidate": (150, 1000)}, seed=1)
    assert weights["candidate"] > 0.99
    assert sum(weights.values()) == pytest.approx(1.0)
    assert list(weights) == ["champion", "candidate"]


def test_thompson_without_data_is_uniform_and_seeded_is_deterministic() -> None:
    arms = {"a": (0, 0), "b": (0, 0), "c": (0, 0), "d": (0, 0)}
    weights = thompson_weights(arms, draws=40_000, seed=5)
    assert all(w == pytest.approx(0.25, abs=0.02) for w in weights.values())
    assert thompson_weights(arms, seed=5) == thompson_weights(arms, seed=5)


def test_thompson_floor_keeps_exploring() -> None:
    arms = {"a": (10, 1000), "b": (200, 1000), "c": (12, 1000)}
    weights = thompson_weights(arms, seed=3, floor=0.1)
    assert weights["a"] >= 0.1 and weights["c"] >= 0.1
    assert weights["b"] == pytest.approx(0.8)
    assert sum(weights.values()) == pytest.approx(1.0)
    uniform = thompson_weights(arms, seed=3, floor=1 / 3)
    assert all(w == pytest.approx(1 / 3) for w in uniform.values())


@pytest.mark.parametrize(
    ("arms", "kwargs"),
    [
        ({}, {}),
        ({"a": (5, 3)}, {}),
        ({"a": (-1, 3)}, {}),
        ({"a": (1, 3), "b": (1, 3)}, {"floor": 0.6}),
        ({"a": (1, 3)}, {"floor": -0.1}),
        ({"a": (1, 3)}, {"draws": 0}),
        ({"a": (1, 3, 5)}, {}),
    ],
)
def test_thompson_rejects_bad_input(
    arms: dict[str, tuple[int, int]], kwargs: dict[str, object]
) -> None:
    with pytest.raises(InvalidInput):
        thompson_weights(arms, **kwargs)  # type: ignore[arg-type]
