"""Verdicts under Evidently's default rules, the multiple-test correction, and the settings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from shipyard.errors import ConfigError, InvalidInput
from shipyard.monitoring.binned import current_profile, reference_profile
from shipyard.monitoring.drift import DriftSpec, compare, default_method


def _evidently_large(ref: np.ndarray, cur: np.ndarray) -> bool:
    """Evidently's rule for numbers on a reference over 1000 rows, with scipy on raw data."""
    return stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001) >= 0.1


def test_large_reference_uses_effect_sizes_and_finds_the_shifted_columns() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    ref = {
        "clean": rng.normal(0, 1, n),
        "shifted": rng.normal(0, 1, n),
        "few": rng.integers(0, 3, n),
        "plan": rng.choice(["a", "b", "c"], n),
    }
    cur = {
        "clean": rng.normal(0, 1, n),
        "shifted": rng.normal(0.3, 1, n),
        "few": rng.integers(0, 3, n),
        "plan": rng.choice(["a", "b", "c"], n, p=[0.6, 0.2, 0.2]),
    }
    reference = reference_profile(pa.table(ref))
    report = compare(reference, current_profile(reference, pa.table(cur)))
    methods = {c.name: c.method for c in report.columns}
    assert methods == {
        "clean": "wasserstein",
        "shifted": "wasserstein",
        "few": "jensenshannon",
        "plan": "jensenshannon",
    }
    drifted = {c.name: c.drifted for c in report.columns}
    assert drifted == {"clean": False, "shifted": True, "few": False, "plan": True}
    for name in ("clean", "shifted"):
        assert drifted[name] == _evidently_large(ref[name], cur[name])
    assert report.share == 0.5 and report.drifted  # 2 of 4 >= the default share 0.5


def test_small_reference_uses_p_values_with_the_fdr_correction() -> None:
    rng = np.random.default_rng(1)
    ref = {"x": rng.normal(0, 1, 800), "y": rng.normal(0, 1, 800), "c": rng.choice(["a", "b"], 800)}
    cur = {
        "x": rng.normal(0.5, 1, 600),
        "y": rng.normal(0, 1, 600),
        "c": rng.choice(["a", "b"], 600),
    }
    reference = reference_profile(pa.table(ref))
    report = compare(reference, current_profile(reference, pa.table(cur)))
    assert [c.method for c in report.columns] == ["ks", "ks", "chisquare"]
    raw = [c.p_value for c in report.columns]
    expected = stats.false_discovery_control(raw, method="bh")
    assert [c.adjusted_p_value for c in report.columns] == pytest.approx(expected, abs=1e-12)
    assert raw[0] == pytest.approx(stats.ks_2samp(ref["x"], cur["x"]).pvalue, abs=1e-9)
    assert [c.drifted for c in report.columns] == [True, False, False]


def test_twenty_clean_columns_never_drift_with_the_defaults() -> None:
    rng = np.random.default_rng(2)
    n = 50_000
    reference = reference_profile(pa.table({f"x{i}": rng.normal(0, 1, n) for i in range(20)}))
    for _ in range(4):  # four windows
        window = pa.table({f"x{i}": rng.normal(0, 1, n) for i in range(20)})
        report = compare(reference, current_profile(reference, window))
        assert not any(c.drifted for c in report.columns) and not report.drifted


def test_settings_choose_methods_and_thresholds_per_column() -> None:
    rng = np.random.default_rng(3)
    table = pa.table({"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000)})
    spec = DriftSpec.parse(
        {
            "columns": {"x": {"method": "psi", "threshold": 0.2}, "y": {"method": "ks"}},
            "correction": "bonferroni",
            "ignore": [],
        }
    )
    reference = reference_profile(table)
    report = compare(reference, current_profile(reference, table), spec=spec)
    x, y = report.column("x"), report.column("y")
    assert (x.method, x.threshold, y.method, y.threshold) == ("psi", 0.2, "ks", 0.05)
    assert y.adjusted_p_value == pytest.approx(min(1.0, y.p_value))  # one p-value column


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "ks"}, "unknown key(s) method"),
        ({"columns": {"x": {"method": "kstest"}}}, "unknown method 'kstest'"),
        ({"columns": {"x": {"method": "ks", "threshold": 1.5}}}, "is in (0, 1)"),
        ({"columns": {"x": {"method": "jensenshannon", "threshold": 2}}}, "(0, 1]"),
        ({"window": "an hour"}, "expected a duration"),
        ({"window": "1h", "last": 10}, "either window or last"),
        ({"share": 0}, "share in (0, 1]"),
        ({"correction": "holm"}, "fdr, bonferroni, none"),
        ({"persistence": 0}, "integer >= 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"\[drift\.churn\]") as raised:
        DriftSpec.parse(settings, "[drift.churn]")
    assert message in str(raised.value)


def test_a_method_for_the_wrong_kind_and_an_unknown_column_are_refused() -> None:
    table = pa.table({"c": ["a", "b"] * 50, "x": np.arange(100.0)})
    reference = reference_profile(table)
    spec = DriftSpec.parse({"columns": {"c": {"method": "ks"}}})
    with pytest.raises(InvalidInput, match="'c' is categorical; method ks applies to numeric"):
        compare(reference, current_profile(reference, table), spec=spec)
    with pytest.raises(
        InvalidInput,
        match=r"column\(s\) zip are not in the reference profile; its columns are c, x",
    ):
        current_profile(reference, pa.table({"zip": [1, 2]}))


def test_default_method_follows_evidently() -> None:
    assert default_method("numeric", 1001, 6) == "wasserstein"
    assert default_method("numeric", 1001, 5) == "jensenshannon"
    assert default_method("categorical", 5000, 50) == "jensenshannon"
    assert default_method("numeric", 1000, 6) == "ks"
    assert default_method("numeric", 1000, 2) == "chisquare"
    assert default_method("categorical", 10, 3) == "chisquare"
