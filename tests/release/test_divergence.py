"""Champion-candidate divergence on paired outputs: agreement, PSI and Jensen-Shannon."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from shipyard.errors import InvalidInput
from shipyard.release.divergence import PSI_EPS, binned_counts, compare, js, psi


def test_identical_labels() -> None:
    labels = ["cat", "dog", "dog", "bird"] * 25
    result = compare(labels, list(labels))
    assert (result.n, result.kind, result.bins) == (100, "label", 3)
    assert result.agreement_rate == 1.0 and result.flipped_share == 0.0
    assert result.psi == 0.0 and result.js_distance == 0.0
    assert result.mean_abs_diff is None and result.max_abs_diff is None


def test_identical_numbers() -> None:
    scores = np.random.default_rng(0).uniform(size=500)
    result = compare(scores, scores.copy())
    assert result.kind == "number"
    assert result.agreement_rate == 1.0 and result.flipped_share is None
    assert result.mean_abs_diff == 0.0 and result.max_abs_diff == 0.0
    assert result.psi == 0.0 and result.js_distance == 0.0


def test_known_flip_share() -> None:
    champion = [0, 1] * 50
    candidate = list(champion)
    for i in (3, 10, 11, 40, 41, 42, 99):
        candidate[i] = 1 - candidate[i]
    result = compare(champion, candidate)
    assert result.kind == "label"
    assert result.flipped_share == pytest.approx(0.07)
    assert result.agreement_rate == pytest.approx(0.93)
    # 4 zeros became ones, 3 ones became zeros: counts [50, 50] -> [49, 51]
    assert result.psi == pytest.approx(psi([50, 50], [49, 51]))


def test_psi_by_hand() -> None:
    # shares 0.5/0.3/0.2 -> 0.4/0.3/0.3:
    # (0.4 - 0.5) ln(0.4/0.5) + 0 + (0.3 - 0.2) ln(0.3/0.2) = 0.0223144 + 0.0405465
    assert psi([50, 30, 20], [40, 30, 30]) == pytest.approx(0.0628609, abs=1e-7)
    assert psi([40, 30, 30], [50, 30, 20]) == pytest.approx(0.0628609, abs=1e-7)  # symmetric
    assert psi([0.5, 0.3, 0.2], [0.4, 0.3, 0.3]) == pytest.approx(0.0628609, abs=1e-7)
    # an empty bin counts as a share of 1e-4 (Evidently's convention):
    # (0.5 - 1) ln(0.5 / 1) + (0.5 - 1e-4) ln(0.5 / 1e-4)
    expected = -0.5 * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert PSI_EPS == 1e-4
    assert psi([10, 0], [5, 5]) == pytest.approx(expected, rel=1e-12)
    assert psi([10, 0], [5, 5], eps=1e-3) < psi([10, 0], [5, 5])


def test_js_agrees_with_scipy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        expected, actual = rng.integers(0, 50, size=8), rng.integers(0, 50, size=8)
        expected[0] = actual[1] = 0  # empty bins are fine for JS
        expected[2] = actual[2] = 1
        reference = jensenshannon(expected / expected.sum(), actual / actual.sum(), base=2)
        assert js(expected, actual) == pytest.approx(reference, abs=1e-9)
    assert js([1, 0], [0, 1]) == pytest.approx(1.0)


def test_compare_distances_use_the_binned_distributions() -> None:
    rng = np.random.default_rng(3)
    champion = rng.normal(size=2000)
    candidate = champion * 1.1 + 0.2
    result = compare(champion, candidate, bins=10)
    expected, actual = binned_counts(champion, candidate, bins=10)
    reference = jensenshannon(expected / expected.sum(), actual / actual.sum(), base=2)
    assert result.js_distance == pytest.approx(reference, abs=1e-9)
    assert result.psi == pytest.approx(psi(expected, actual), abs=1e-12)
    assert result.mean_abs_diff == pytest.approx(np.abs(candidate - champion).mean())
    assert result.max_abs_diff == pytest.approx(np.abs(candidate - champion).max())
    assert result.agreement_rate == 0.0 and result.psi > 0.05


def test_numeric_bins_are_champion_quantiles() -> None:
    champion = np.arange(1000.0)
    expected, actual = binned_counts(champion, champion + 500, bins=10)
    # deciles of the champion: 100 each; the candidate fills the upper half, and its values
    # beyond the champion's maximum land in the open top bin
    assert expected.tolist() == [100] * 10
    assert actual.tolist() == [0] * 5 + [100] * 4 + [600]
    # the edges are the champion's, not the pooled sample's: swapping sides changes the counts
    swapped_expected, swapped_actual = binned_counts(champion + 500, champion, bins=10)
    assert swapped_expected.tolist() == [100] * 10
    assert swapped_actual.tolist() == [600] + [100] * 4 + [0] * 5
    assert compare(champion, champion[::-1].copy(), bins=4).psi == 0.0  # same distribution


def test_ties_merge_bins() -> None:
    champion = [0.0] * 80 + [1.0] * 20
    expected, actual = binned_counts(champion, [0.0] * 50 + [1.0] * 50, bins=10)
    assert expected.tolist() == [80, 20] and actual.tolist() == [50, 50]
    assert compare(champion, [0.5] * 100).bins == 2
    rng = np.random.default_rng(8)
    for _ in range(20):  # heavily tied data: never an empty champion bin (PSI would need eps)
        discrete = rng.poisson(rng.uniform(0.2, 5), size=300).astype(float)
        counts, _actual = binned_counts(discrete, discrete, bins=10)
        assert (counts > 0).all() and counts.sum() == 300


def test_kind_inference() -> None:
    assert compare([0.1, 0.2], [0.1, 0.3]).kind == "number"
    assert compare([0, 1, 2], [2, 1, 0]).kind == "label"
    assert compare(list(range(100)), list(range(100))).kind == "number"
    assert compare([True, False], [True, True]).kind == "label"
    assert compare(np.array(["a", "b"]), np.array(["a", "a"])).kind == "label"
    assert compare([1, 2.5], [1, 2.5]).kind == "number"
    assert compare([0.0, 1.0], [1.0, 1.0], kind="label").flipped_share == 0.5
    # 1 and "1" are different labels, and numpy does not get to turn 1 into "1"
    mixed = compare(["1", 1], [1, 1])
    assert mixed.kind == "label" and mixed.agreement_rate == 0.5


def test_numeric_tolerance() -> None:
    champion = [1.0, 2.0, 3.0, 1e6]
    candidate = [1.0 + 1e-12, 2.0 + 1e-6, 3.0, 1e6 + 1e-4]
    result = compare(champion, candidate)
    assert result.agreement_rate == 0.75  # 1e-6 is a real difference; 1e-4 on 1e6 is not
    assert compare(champion, candidate, atol=1e-5).agreement_rate == 1.0


def test_to_dict_is_json() -> None:
    result = compare(["a", "b", "b"], ["a", "a", "b"])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "label" and data["flipped_share"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("champion", "candidate", "kwargs", "match"),
    [
        ([1.0, 2.0], [1.0], {}, "same length"),
        ([], [], {}, "at least one"),
        ([1.0, float("nan")], [1.0, 2.0], {}, "NaN"),
        ([1.0, 2.0], [float("inf"), 2.0], {}, "NaN or infinite"),
        (["a", "b"], ["a", "b"], {"kind": "number"}, "kind='label'"),
        ([1.0, 2.0], [1.0, 2.0], {"kind": "ordinal"}, "kind"),
        ([1.0, 2.0], [1.0, 2.0], {"bins": 1}, "bins"),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]], {}, "one number or one label"),
        ([1.0, float("nan")], [1.0, 2.0], {"kind": "label"}, "NaN"),
    ],
)
def test_compare_rejects_bad_input(
    champion: list[object], candidate: list[object], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        compare(champion, candidate, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([1, 2], [1, 2, 3]), ([], []), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([1, np.nan], [1, 1])],
)
def test_distance_helpers_reject_bad_counts(expected: list[float], actual: list[float]) -> None:
    with pytest.raises(InvalidInput):
        psi(expected, actual)
    with pytest.raises(InvalidInput):
        js(expected, actual)


def test_psi_rejects_bad_eps() -> None:
    with pytest.raises(InvalidInput, match="eps"):
        psi([1, 1], [1, 1], eps=0.0)
