"""Promotion policies: parsed from TOML tables and built in Python, checked up front."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import InvalidInput, NotFound
from shipyard.gates import (
    Approval,
    Benchmark,
    Blessing,
    DataValidation,
    Differential,
    Evaluation,
    Policy,
    Slice,
    Threshold,
    load_policy,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gates.md"


def docs_example() -> dict[str, Any]:
    """The full `[policies.champion]` example of docs/gates.md, parsed."""
    text = DOCS.read_text()
    block = re.search(r"```toml\n(\[policies\.champion\].*?)```", text, re.S)
    assert block is not None, "docs/gates.md lost its full policy example"
    return tomllib.loads(block.group(1))


def test_the_documented_example_parses_into_one_gate_of_each_kind() -> None:
    policy = load_policy("champion", docs_example()["policies"])
    kinds = [type(g) for g in policy.gates]
    assert kinds == [
        Evaluation,
        Blessing,
        Differential,
        Benchmark,
        DataValidation,
        Slice,
        Approval,
    ]
    assert policy.holdout == "customers-test@1" and policy.target == "churned"
    evaluation = policy.gates[0]
    assert isinstance(evaluation, Evaluation)
    assert evaluation.thresholds["auc"] == Threshold(min=0.70)
    assert evaluation.label == "evaluation" and evaluation.required
    assert not policy.gates[-1].required


def test_a_policy_from_python_matches_the_same_from_toml() -> None:
    table = {
        "holdout": "h@1",
        "target": "y",
        "gates": [{"kind": "blessing", "metric": "f1", "margin": 0.01}],
    }
    assert Policy.from_dict("champion", table) == Policy(
        "champion", [Blessing(metric="f1", margin=0.01)], holdout="h@1", target="y"
    )


def test_the_standard_rows_default_to_the_holdout() -> None:
    policy = Policy("champion", [Differential()], holdout="h@1")
    assert policy.standard_rows == "h@1"
    assert Policy("champion", [Differential()], standard="s@2").standard_rows == "s@2"


def _error(table: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as caught:
        Policy.from_dict("champion", {"holdout": "h@1", "target": "y", **table})
    return str(caught.value)


def test_an_unknown_kind_is_named_with_the_known_kinds() -> None:
    message = _error({"gates": [{"kind": "vibes"}]})
    assert "policy 'champion'" in message and "'vibes'" in message
    assert "evaluation, blessing, differential, benchmark, data_validation" in message


def test_an_unknown_metric_lists_the_known_ones_and_which_need_probabilities() -> None:
    message = _error({"gates": [{"kind": "evaluation", "metrics": {"aucc": {"min": 0.7}}}]})
    assert "gate 'evaluation'" in message and "field 'metrics'" in message
    assert "unknown metric 'aucc'" in message and "did you mean 'auc'" in message
    for name in ("accuracy", "balanced_accuracy", "log_loss", "rmse", "mae", "r2"):
        assert name in message
    assert "auc, log_loss need predict_proba" in message


def test_a_metric_gate_without_a_target_says_where_to_set_it() -> None:
    with pytest.raises(InvalidInput, match=r"gate 'blessing'.*set target = .*policies\.champion"):
        Policy.from_dict("champion", {"holdout": "h@1", "gates": [{"kind": "blessing"}]})


def test_a_metric_gate_without_a_holdout_says_where_to_set_it() -> None:
    with pytest.raises(InvalidInput, match=r"gate 'slice'.*needs a holdout"):
        Policy("champion", [Slice(column="city")], target="y")
    # With its own expectations file, data validation needs no holdout.
    Policy("champion", [DataValidation(expectations="rules.toml")])


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ({"kind": "blessing", "margin": -0.1}, "margin"),
        ({"kind": "differential", "max_flip_share": 2}, "max_flip_share"),
        ({"kind": "benchmark", "rows": 0}, "rows"),
        ({"kind": "benchmark", "max_latency_ratio": "fast"}, "max_latency_ratio"),
        ({"kind": "slice", "column": "city", "max_gap": True}, "max_gap"),
        ({"kind": "evaluation", "metrics": {"auc": {"min": 0.9, "max": 0.1}}}, "metrics.auc"),
        ({"kind": "evaluation", "metrics": {"auc": 0.7}}, "metrics.auc"),
        ({"kind": "approval", "required": "yes"}, "required"),
    ],
)
def test_bad_numbers_name_the_gate_and_the_field(gate: dict[str, Any], field: str) -> None:
    message = _error({"gates": [gate]})
    assert "policy 'champion'" in message and f"gate '{gate['kind']}'" in message
    assert f"field '{field}'" in message


def test_an_unknown_field_and_a_repeated_name_are_refused() -> None:
    assert "unknown field 'threshold_typo'" in _error(
        {"gates": [{"kind": "approval", "threshold_typo": 1}]}
    )
    assert "used twice" in _error({"gates": [{"kind": "approval"}, {"kind": "approval"}]})
    named = Policy.from_dict(
        "champion", {"gates": [{"kind": "approval"}, {"kind": "approval", "name": "second"}]}
    )
    assert [g.label for g in named.gates] == ["approval", "second"]


def test_a_policy_with_no_gates_is_refused() -> None:
    assert "lists no gates" in _error({"gates": []})


def test_an_unconfigured_policy_name_lists_the_configured_ones() -> None:
    with pytest.raises(NotFound, match=r"no promotion policy 'staging' \(policies: champion\)"):
        load_policy("staging", {"champion": {"gates": [{"kind": "approval"}]}})
