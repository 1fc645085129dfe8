"""How far a candidate's outputs are from the champion's on the same requests (paired outputs).

A shadow or canary rollout sends each request to both models; before any business metric
moves, this says how often they disagree and how much their output distributions differ.

Two views of the same pairs:

- per pair: the share of pairs that agree (labels equal; numbers within a tolerance), and for
  numbers how far apart they are (mean and max |candidate - champion|);
- per distribution: the population stability index (PSI) and the Jensen-Shannon distance
  between the champion's and the candidate's output distributions, binned the same way:
  categories (the union of both sides' labels) for labels, the champion's quantile bins for
  numbers. These catch a shift in the distribution even when pairs rarely agree exactly.

`psi`, `js` and `binned_counts` are public so that the rollout analysis can reuse them on input
features (drift), with the champion's traffic as the expected distribution.

NaN or infinite outputs are rejected (InvalidInput) rather than skipped: a model that returns
NaN is a finding in itself, and silently dropping pairs would hide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import distance

from shipyard.errors import InvalidInput

Kind = Literal["label", "number"]

LABEL_MAX_DISTINCT = 20
"""Integer outputs with at most this many distinct values (both sides together) are labels."""

PSI_EPS = 1e-4
"""An empty bin's share in PSI: Evidently's `feel_zeroes` value, so that ln(p_b / p_a) is finite."""


@dataclass(frozen=True)
class Divergence:
    """The champion-candidate comparison of one set of paired outputs."""

    n: int
    kind: Kind
    agreement_rate: float
    """share of pairs that agree: equal labels, or numbers within atol + rtol * |champion|"""
    flipped_share: float | None
    """labels: 1 - agreement_rate; None for numbers"""
    mean_abs_diff: float | None
    """numbers: mean |candidate - champion|; None for labels"""
    max_abs_diff: float | None
    psi: float
    js_distance: float
    bins: int
    """categories (labels) or quantile bins (numbers) the distributions were compared over"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    champion: Sequence[Any] | NDArray[Any],
    candidate: Sequence[Any] | NDArray[Any],
    *,
    kind: Kind | None = None,
    bins: int = 10,
    atol: float = 1e-9,
    rtol: float = 1e-9,
) -> Divergence:
    """Compare paired outputs: `candidate[i]` and `champion[i]` answer the same request.

    `kind` is inferred when None, from both sides together:
      - booleans, strings (or any non-numeric object) -> "label";
      - integers -> "label" when they take at most LABEL_MAX_DISTINCT (20) distinct values
        (class ids), else "number" (counts, scores on an integer scale);
      - floats -> "number" (pass kind="label" for classes encoded as 0.0/1.0).

    Numbers agree when |candidate - champion| <= atol + rtol * |champion| (numpy.isclose):
    the default tolerances absorb float rounding (a float64 re-run) but not a retrained model
    or a float32 export; widen them to ask "the same up to precision".

    Distributions: see `binned_counts`, `psi` and `js`; `bins` is the number of champion
    quantile bins for numbers (fewer when the champion has ties) and is ignored for labels.
    """
    champion_array, candidate_array = _paired(champion, candidate)
    resolved = _infer_kind(champion_array, candidate_array) if kind is None else kind
    if resolved not in ("label", "number"):
        raise InvalidInput(f"kind must be 'label', 'number' or None (got {kind!r})")
    if resolved == "number":
        champion_array = _numbers("champion", champion_array)
        candidate_array = _numbers("candidate", candidate_array)
    expected, actual = binned_counts(champion_array, candidate_array, kind=resolved, bins=bins)
    flipped_share = mean_abs_diff = max_abs_diff = None
    if resolved == "label":
        left, right = _label_pair(champion_array, candidate_array)
        agreement_rate = float(np.mean(left == right))
        flipped_share = 1 - agreement_rate
    else:
        gap = np.abs(candidate_array - champion_array)
        close = np.isclose(candidate_array, champion_array, rtol=rtol, atol=atol)
        agreement_rate = float(close.mean())
        mean_abs_diff, max_abs_diff = float(gap.mean()), float(gap.max())
    return Divergence(
        n=len(champion_array),
        kind=resolved,
        agreement_rate=agreement_rate,
        flipped_share=flipped_share,
        mean_abs_diff=mean_abs_diff,
        max_abs_diff=max_abs_diff,
        psi=psi(expected, actual),
        js_distance=js(expected, actual),
        bins=len(expected),
    )


# -- distributions ----------------------------------------------------------------------------


def binned_counts(
    expected: Sequence[Any] | NDArray[Any],
    actual: Sequence[Any] | NDArray[Any],
    *,
    kind: Kind = "number",
    bins: int = 10,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Counts of both samples over the same bins, the expected (champion, reference) sample's.

    Numbers: the edges are the expected sample's quantiles at 1/bins, ..., (bins-1)/bins, taken
    as observed values (numpy's "inverted_cdf"), so that each bin (lower, upper] holds about
    1/bins of the expected sample, as pandas.qcut does. Repeated edges (ties) are merged and an
    edge at the expected maximum is dropped, so no bin of the expected sample is empty (ties
    give fewer bins than asked). The outer bins are open: actual values beyond the expected
    range still count. Labels: one bin per distinct label of either sample.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise InvalidInput(f"bins must be an integer >= 2 (got {bins!r})")
    left, right = _vector(expected), _vector(actual)
    if left.size == 0 or right.size == 0:
        raise InvalidInput("binned_counts needs at least one value on each side (got none)")
    if kind == "label":
        left, right = _label_pair(left, right)
        categories, codes = np.unique(np.concatenate([left, right]), return_inverse=True)
        expected_codes, actual_codes = codes[: left.size], codes[left.size :]
        return (
            np.bincount(expected_codes, minlength=len(categories)).astype(np.int64),
            np.bincount(actual_codes, minlength=len(categories)).astype(np.int64),
        )
    if kind != "number":
        raise InvalidInput(f"kind must be 'label' or 'number' (got {kind!r})")
    left, right = _numbers("expected", left), _numbers("actual", right)
    levels = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(left, levels, method="inverted_cdf"))
    edges = edges[edges < left.max()]
    return (
        np.bincount(np.searchsorted(edges, left, side="left"), minlength=len(edges) + 1),
        np.bincount(np.searchsorted(edges, right, side="left"), minlength=len(edges) + 1),
    )


def psi(expected_counts: ArrayLike, actual_counts: ArrayLike, eps: float = PSI_EPS) -> float:
    """Population stability index: the sum over bins of (p_a - p_e) ln(p_a / p_e).

    p_e and p_a are the expected and actual shares of each bin (counts over their total). An
    empty bin's share is replaced by `eps`, without renormalising: the convention of Evidently's
    `psi` stattest (its `feel_zeroes` step, 0.0001), so that values are comparable with its
    reports binned the same way. 0 means identical; the usual reading is < 0.1 stable, 0.1-0.25
    a moderate shift, > 0.25 a major one. Symmetric in its two arguments.
    """
    if not (np.isfinite(eps) and 0 < eps < 1):
        raise InvalidInput(f"eps must be a number strictly between 0 and 1 (got {eps!r})")
    p_expected, p_actual = _shares(expected_counts, actual_counts)
    p_expected = np.where(p_expected == 0, eps, p_expected)
    p_actual = np.where(p_actual == 0, eps, p_actual)
    return float(np.sum((p_actual - p_expected) * np.log(p_actual / p_expected)))


def js(expected_counts: ArrayLike, actual_counts: ArrayLike) -> float:
    """Jensen-Shannon distance, base 2 (0 identical, 1 disjoint), scipy's `jensenshannon`.

    Computed on the raw shares: unlike PSI it stays finite with empty bins, so no epsilon.
    """
    p_expected, p_actual = _shares(expected_counts, actual_counts)
    return float(distance.jensenshannon(p_expected, p_actual, base=2))


def _shares(
    expected_counts: ArrayLike, actual_counts: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Both count vectors as shares, after checking they describe the same, non-empty bins."""
    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    if expected.ndim != 1 or expected.shape != actual.shape or expected.size == 0:
        raise InvalidInput(
            "expected and actual counts must be one-dimensional, non-empty and of the same "
            f"length (got shapes {expected.shape} and {actual.shape})"
        )
    for name, counts in (("expected", expected), ("actual", actual)):
        if not np.isfinite(counts).all() or (counts < 0).any() or counts.sum() == 0:
            raise InvalidInput(
                f"{name} counts must be finite, non-negative and not all zero (got {counts})"
            )
    return expected / expected.sum(), actual / actual.sum()


# -- input checks -----------------------------------------------------------------------------


def _paired(
    champion: Sequence[Any] | NDArray[Any], candidate: Sequence[Any] | NDArray[Any]
) -> tuple[NDArray[Any], NDArray[Any]]:
    champion_array, candidate_array = _vector(champion), _vector(candidate)
    if len(champion_array) != len(candidate_array):
        raise InvalidInput(
            f"paired outputs must have the same length: the champion has {len(champion_array)}, "
            f"the candidate {len(candidate_array)}; pass both models' answers to the same requests"
        )
    if len(champion_array) == 0:
        raise InvalidInput("no outputs to compare: expected at least one pair")
    return champion_array, candidate_array


def _vector(values: Sequence[Any] | NDArray[Any]) -> NDArray[Any]:
    """One output per request, as a typed array when the elements share a type.

    A list is not handed to numpy as is: numpy would turn ["a", 1] into the strings "a", "1"
    and merge two different labels; an object array keeps them apart.
    """
    if isinstance(values, np.ndarray):
        array = values
    else:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    if array.ndim != 1:
        raise InvalidInput(
            f"outputs must be one number or one label per request (got shape {array.shape})"
        )
    return _plain(array) if array.dtype.kind == "O" else array


def _plain(values: NDArray[Any]) -> NDArray[Any]:
    """An object array as a str, bool, int or float array when all its elements allow it;
    mixed types stay objects (labels compared by their repr)."""
    items = values.tolist()
    if any(isinstance(item, list | tuple | dict | np.ndarray) for item in items):
        raise InvalidInput("outputs must be one number or one label per request, not lists")
    if all(isinstance(item, str) for item in items):
        return np.array(items, dtype=str)
    if all(isinstance(item, bool) for item in items):
        return np.array(items, dtype=bool)
    if any(isinstance(item, bool) for item in items):
        return values
    if all(isinstance(item, int) for item in items):
        try:
            return np.array(items, dtype=np.int64)
        except OverflowError:
            return values
    if all(isinstance(item, int | float) for item in items):
        return np.array(items, dtype=np.float64)
    return values


def _infer_kind(champion: NDArray[Any], candidate: NDArray[Any]) -> Kind:
    """The rule in `compare`'s docstring, on both sides together."""
    kinds = {champion.dtype.kind, candidate.dtype.kind}
    if kinds & {"U", "S", "O", "b"}:
        return "label"
    if kinds <= {"i", "u"}:
        distinct = np.unique(np.concatenate([champion, candidate]))
        return "label" if len(distinct) <= LABEL_MAX_DISTINCT else "number"
    return "number"


def _numbers(side: str, values: NDArray[Any]) -> NDArray[np.float64]:
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{side} outputs must be numbers for kind 'number' ({exc}); use kind='label' for "
            "class labels"
        ) from exc
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        raise InvalidInput(
            f"{side} outputs hold {bad.size} NaN or infinite value(s), the first at index "
            f"{bad[0]}: expected finite numbers (a model answering NaN needs fixing first)"
        )
    return numbers


def _label_pair(
    champion: NDArray[Any], candidate: NDArray[Any]
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Both sides' labels as arrays that compare and sort together.

    Numbers (bool, int, float) and strings each compare as they are; a mix of the two, or
    objects, is compared by repr, so that 1 and "1" stay different labels.
    """
    kinds = {champion.dtype.kind, candidate.dtype.kind}
    if kinds <= {"b", "i", "u", "f"}:
        for side, values in (("champion", champion), ("candidate", candidate)):
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise InvalidInput(f"{side} labels hold NaN or infinite values: expected labels")
        return champion, candidate
    if kinds <= {"U"} or kinds <= {"S"}:
        return champion, candidate
    return _reprs(champion), _reprs(candidate)


def _reprs(values: NDArray[Any]) -> NDArray[np.str_]:
    return np.array([repr(item) for item in values.tolist()], dtype=str)
