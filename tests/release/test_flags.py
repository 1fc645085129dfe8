"""Feature flags: operators, rule order, kill switch, percentages, merging, parsing, cost."""

from __future__ import annotations

import itertools
import json
import timeit
from typing import Any

import numpy as np
import pytest

from shipyard.errors import InvalidInput
from shipyard.release.assignment import bucket
from shipyard.release.flags import Decision, Flag, FlagSet, Outcome, Rule

KEYS_10K = [f"user-{number}" for number in range(10_000)]


def _flag(*rules: dict[str, Any], **fields: Any) -> Flag:
    return Flag.from_dict({"name": "new-model", "rules": list(rules), **fields})


def _rule(operator: str, outcome: dict[str, Any] | None = None, **operands: Any) -> dict[str, Any]:
    return {
        "operator": operator,
        **operands,
        "outcome": {"version": 4} if outcome is None else outcome,
    }


V4 = Outcome(version=4)


# ---------------------------------------------------------------------------------------------
# Operators


def test_equals_strings_numbers_and_booleans() -> None:
    country = _flag(_rule("equals", attribute="country", value="DE"))
    assert country.evaluate({"country": "DE"}, None) == V4
    assert country.evaluate({"country": "de"}, None) is None
    assert country.evaluate({}, None) is None

    tier = _flag(_rule("equals", attribute="tier", value=1))
    assert tier.evaluate({"tier": 1}, None) == V4
    assert tier.evaluate({"tier": 1.0}, None) == V4  # numbers compare as numbers
    assert tier.evaluate({"tier": np.int64(1)}, None) == V4
    assert tier.evaluate({"tier": "1"}, None) is None  # no silent casts
    assert tier.evaluate({"tier": True}, None) is None  # True is not 1 here

    beta = _flag(_rule("equals", attribute="beta", value=True))
    assert beta.evaluate({"beta": True}, None) == V4
    assert beta.evaluate({"beta": 1}, None) is None
    assert beta.evaluate({"beta": "true"}, None) is None

    text = _flag(_rule("equals", attribute="code", value="1"))
    assert text.evaluate({"code": 1}, None) is None


def test_in_matches_by_kind() -> None:
    flag = _flag(_rule("in", attribute="country", values=["DE", "AT", 3, True]))
    assert flag.evaluate({"country": "AT"}, None) == V4
    assert flag.evaluate({"country": 3.0}, None) == V4
    assert flag.evaluate({"country": True}, None) == V4
    assert flag.evaluate({"country": "FR"}, None) is None
    assert flag.evaluate({"country": "3"}, None) is None
    assert flag.evaluate({"country": 1}, None) is None  # 1 == True in Python; not here
    assert flag.evaluate({"country": ["DE"]}, None) is None  # unhashable: no match, no error
    assert flag.evaluate({}, None) is None


def test_range_is_min_inclusive_max_exclusive() -> None:
    flag = _flag(_rule("range", attribute="age", min=18, max=65))
    assert flag.evaluate({"age": 18}, None) == V4
    assert flag.evaluate({"age": 64.999}, None) == V4
    assert flag.evaluate({"age": 65}, None) is None
    assert flag.evaluate({"age": 17.9}, None) is None
    assert flag.evaluate({"age": "30"}, None) is None
    assert flag.evaluate({"age": True}, None) is None
    assert flag.evaluate({"age": float("nan")}, None) is None
    assert flag.evaluate({}, None) is None
    only_min = _flag(_rule("range", attribute="score", min=0.5))
    assert only_min.evaluate({"score": 1e9}, None) == V4
    assert only_min.evaluate({"score": 0.49}, None) is None
    only_max = _flag(_rule("range", attribute="score", max=0.5))
    assert only_max.evaluate({"score": -1e9}, None) == V4
    assert only_max.evaluate({"score": 0.5}, None) is None


def test_percentage_is_the_bucket_of_the_routing_key() -> None:
    flag = _flag(_rule("percentage", percent=30))
    for key in KEYS_10K[:1000]:
        expected = V4 if bucket(key, "new-model") < 3000 else None
        assert flag.evaluate({}, key) == expected


def test_percentage_is_sticky_and_has_its_share() -> None:
    flag = _flag(_rule("percentage", percent=20))
    first = [flag.evaluate({}, key) is not None for key in KEYS_10K]
    again = Flag.from_dict(flag.to_dict())
    assert [again.evaluate({}, key) is not None for key in KEYS_10K] == first
    assert abs(sum(first) / len(KEYS_10K) - 0.20) < 0.02


def test_percentage_growth_only_adds_users() -> None:
    def members(percent: float) -> set[str]:
        flag = _flag(_rule("percentage", percent=percent))
        return {key for key in KEYS_10K if flag.evaluate({}, key) is not None}

    sizes = [members(percent) for percent in (0, 5, 25, 50, 100)]
    assert sizes[0] == set()
    assert sizes[-1] == set(KEYS_10K)
    for smaller, larger in itertools.pairwise(sizes):
        assert smaller < larger


def test_percentage_salt_is_the_flag_name() -> None:
    one = Flag.from_dict({"name": "one", "rules": [_rule("percentage", percent=50)]})
    two = Flag.from_dict({"name": "two", "rules": [_rule("percentage", percent=50)]})
    agree = sum(
        (one.evaluate({}, key) is None) == (two.evaluate({}, key) is None) for key in KEYS_10K
    )
    assert 4500 < agree < 5500


def test_percentage_without_a_key_does_not_match() -> None:
    flag = _flag(_rule("percentage", percent=100), default={"version": 3})
    assert flag.evaluate({}, None) == Outcome(version=3)
    assert flag.evaluate({}, "") == Outcome(version=3)
    assert flag.evaluate({}, "user-1") == V4


def test_percentage_on_an_attribute() -> None:
    flag = _flag(_rule("percentage", attribute="tenant", percent=50))
    for tenant in ("acme", "globex", "initech", "umbrella"):
        expected = V4 if bucket(tenant, "new-model") < 5000 else None
        assert flag.evaluate({"tenant": tenant}, "ignored-user") == expected
    assert flag.evaluate({"tenant": 17}, None) == flag.evaluate({"tenant": "17"}, None)
    assert flag.evaluate({}, "user-1") is None
    assert flag.evaluate({"tenant": 1.5}, "user-1") is None


# ---------------------------------------------------------------------------------------------
# Order, default, kill switch


def test_first_matching_rule_wins() -> None:
    flag = _flag(
        _rule("equals", {"version": 5}, attribute="country", value="DE"),
        _rule("range", {"version": 6}, attribute="age", min=18),
        default={"version": 3},
    )
    assert flag.evaluate({"country": "DE", "age": 30}, None) == Outcome(version=5)
    assert flag.evaluate({"country": "FR", "age": 30}, None) == Outcome(version=6)
    assert flag.evaluate({"country": "FR", "age": 10}, None) == Outcome(version=3)
    assert flag.explain({"country": "FR", "age": 30}, None) == (
        Outcome(version=6),
        "new-model:rule1",
    )
    assert flag.explain({}, None) == (Outcome(version=3), "new-model:default")


def test_kill_switch_gives_everyone_the_default() -> None:
    rules = [_rule("percentage", percent=100), _rule("equals", attribute="a", value=1)]
    killed = _flag(*rules, enabled=False, default={"version": 3})
    for key in KEYS_10K[:100]:
        assert killed.evaluate({"a": 1}, key) == Outcome(version=3)
    assert killed.explain({"a": 1}, "user-1") == (Outcome(version=3), "new-model:killed")
    silent = _flag(*rules, enabled=False)
    assert silent.evaluate({"a": 1}, "user-1") is None
    assert silent.explain({"a": 1}, "user-1") is None


# ---------------------------------------------------------------------------------------------
# FlagSet


def test_flagset_merges_outcomes_in_name_order() -> None:
    flags = FlagSet.from_dicts(
        [
            {
                "name": "zeta",
                "rules": [_rule("equals", {"version": 9}, attribute="country", value="DE")],
            },
            {
                "name": "calibration",
                "rules": [
                    _rule(
                        "range",
                        {"postprocess": {"calibrate": True, "clip": False}},
                        attribute="age",
                        min=18,
                    )
                ],
            },
            {
                "name": "alpha",
                "rules": [
                    _rule("equals", {"postprocess": {"clip": True}}, attribute="beta", value=True)
                ],
                "default": {"version": 7},
            },
            {
                "name": "off",
                "enabled": False,
                "rules": [],
                "default": {"postprocess": {"log": False}},
            },
            {"name": "quiet", "rules": [_rule("equals", attribute="never", value="x")]},
        ]
    )
    assert [flag.name for flag in flags.flags] == ["alpha", "calibration", "off", "quiet", "zeta"]
    decision = flags.evaluate({"country": "DE", "age": 30, "beta": True}, "user-1")
    assert decision == Decision(
        version=9,  # alpha fired but set no version: zeta's is the first
        postprocess={"clip": True, "calibrate": True, "log": False},  # alpha's clip wins
        fired=("alpha:rule0", "calibration:rule0", "off:killed", "zeta:rule0"),
    )
    young = flags.evaluate({"country": "DE", "age": 10}, None)
    assert young.version == 7  # alpha's default now sets one, and alpha comes before zeta
    assert young.postprocess == {"log": False}
    assert young.fired == ("alpha:default", "off:killed", "zeta:rule0")


def test_flagset_without_outcomes() -> None:
    empty = FlagSet().evaluate({"a": 1}, "user-1")
    assert empty == Decision(version=None, postprocess={}, fired=())
    flags = FlagSet([_flag(_rule("equals", attribute="a", value=2))])
    assert flags.evaluate({"a": 1}, "user-1") == Decision(None, {}, ())
    assert len(flags) == 1


def test_flagset_refuses_duplicate_names() -> None:
    with pytest.raises(InvalidInput, match="new-model"):
        FlagSet([_flag(), _flag()])


# ---------------------------------------------------------------------------------------------
# Parsing and round trips


FULL = {
    "name": "new-model",
    "enabled": True,
    "description": "route Germany and 10 percent of users to version 4",
    "rules": [
        {
            "attribute": "country",
            "operator": "in",
            "values": ["DE", "AT"],
            "outcome": {"version": 4},
        },
        {"attribute": "plan", "operator": "equals", "value": "pro", "outcome": {"version": 4}},
        {
            "attribute": "age",
            "operator": "range",
            "min": 18,
            "max": 65.5,
            "outcome": {"postprocess": {"calibrate": True}},
        },
        {"operator": "percentage", "percent": 10, "outcome": {"version": 4}},
        {
            "attribute": "tenant",
            "operator": "percentage",
            "percent": 2.5,
            "outcome": {"version": 5, "postprocess": {"explain": False}},
        },
    ],
    "default": {"version": 3},
    "hash_version": "blake2b-v1",
}


def test_round_trip() -> None:
    flag = Flag.from_dict(FULL)
    assert flag.to_dict() == FULL
    assert Flag.from_dict(flag.to_dict()) == flag
    assert json.loads(json.dumps(flag.to_dict())) == FULL
    minimal = Flag.from_dict({"name": "m"})
    assert minimal.to_dict() == {
        "name": "m",
        "enabled": True,
        "rules": [],
        "hash_version": "blake2b-v1",
    }
    flags = FlagSet.from_dicts([FULL, {"name": "m"}])
    assert FlagSet.from_dicts(flags.to_dicts()).flags == flags.flags


def test_flags_built_in_code_are_checked() -> None:
    rule = Rule("country", "equals", V4, value="DE")
    flag = Flag("new-model", [rule], default=Outcome(version=3))
    assert flag.evaluate({"country": "DE"}, None) == V4
    with pytest.raises(InvalidInput, match=r"rules\[0\] operator"):
        Flag("new-model", [Rule("country", "like", V4, value="D%")])
    with pytest.raises(InvalidInput, match="default"):
        Flag("new-model", default=Outcome())
    with pytest.raises(InvalidInput, match="enabled"):
        Flag("new-model", enabled="yes")  # type: ignore[arg-type]


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as raised:
        Flag.from_dict(data)
    return str(raised.value)


def _with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {"name": "new-model", "rules": [_rule("equals", attribute="a", value=1), rule]}


def test_parse_error_unknown_operator_lists_known_ones() -> None:
    message = _error(_with_rule({"attribute": "a", "operator": "like", "outcome": {"version": 1}}))
    assert "'new-model'" in message
    assert "rules[1]" in message
    assert "operator" in message
    assert "equals, in, range, percentage" in message
    assert "'like'" in message


@pytest.mark.parametrize(
    ("rule", "fragments"),
    [
        (_rule("range", attribute="a"), ["rules[1] min/max", "at least one bound"]),
        (_rule("range", attribute="a", min=5, max=5), ["min < max", "'min': 5"]),
        (_rule("range", attribute="a", min="5"), ["rules[1] min", "a finite number", "'5'"]),
        (_rule("percentage", percent=101), ["rules[1] percent", "0 to 100", "101"]),
        (_rule("percentage", percent=-1), ["percent", "-1"]),
        (_rule("percentage", percent="10%"), ["percent", "'10%'"]),
        (_rule("in", attribute="a", values="DE"), ["rules[1] values", "a list", "'DE'"]),
        (_rule("in", attribute="a", values=["DE", None]), ["values[1]", "None"]),
        (_rule("equals", attribute="a"), ["rules[1] value", "a value to compare"]),
        (_rule("equals", attribute="a", value=[1]), ["rules[1] value", "[1]"]),
        (_rule("equals", attribute="a", value=1, values=[1]), ["values", "takes only value"]),
        (_rule("equals", value=1), ["rules[1] attribute", "None"]),
        (_rule("equals", attribute="", value=1), ["rules[1] attribute", "''"]),
        ({**_rule("equals", attribute="a", value=1), "valeu": 2}, ["unknown key", "valeu"]),
        ({"attribute": "a", "operator": "equals", "value": 1}, ["rules[1] outcome", "None"]),
        (_rule("equals", {}, attribute="a", value=1), ["outcome", "at least one"]),
        (_rule("equals", {"version": 0}, attribute="a", value=1), ["outcome.version", "0"]),
        (_rule("equals", {"version": "4"}, attribute="a", value=1), ["outcome.version", "'4'"]),
        (_rule("equals", {"model": 4}, attribute="a", value=1), ["unknown key", "model"]),
        (
            _rule("equals", {"postprocess": {"calibrate": "yes"}}, attribute="a", value=1),
            ["outcome.postprocess.calibrate", "true or false", "'yes'"],
        ),
        (
            _rule("equals", {"postprocess": ["calibrate"]}, attribute="a", value=1),
            ["outcome.postprocess", "mapping"],
        ),
    ],
)
def test_parse_errors_name_flag_rule_and_field(rule: dict[str, Any], fragments: list[str]) -> None:
    message = _error(_with_rule(rule))
    assert message.startswith("flag 'new-model'")
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"rules": []}, ["flag name", "None"]),
        ({"name": "new model"}, ["flag name", "'new model'"]),
        ({"name": "a:b"}, ["flag name", "'a:b'"]),
        ({"name": "f", "enabeld": False}, ["flag 'f'", "unknown key", "enabeld"]),
        ({"name": "f", "enabled": "no"}, ["flag 'f' enabled", "true or false", "'no'"]),
        ({"name": "f", "rules": {"a": 1}}, ["flag 'f' rules", "a list"]),
        ({"name": "f", "default": 3}, ["flag 'f' default", "a mapping", "3"]),
        ({"name": "f", "hash_version": "md5"}, ["flag 'f'", "'blake2b-v1'", "'md5'"]),
    ],
)
def test_parse_errors_of_flags(data: dict[str, Any], fragments: list[str]) -> None:
    message = _error(data)
    for fragment in fragments:
        assert fragment in message, message


def test_flagset_from_dicts_refuses_a_mapping() -> None:
    with pytest.raises(InvalidInput, match="a list of flag mappings"):
        FlagSet.from_dicts({"name": "f"})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------
# Cost


def test_per_call_cost() -> None:
    """Printed, not asserted: timings depend on the machine and its load."""
    flag = Flag.from_dict(FULL)
    flags = FlagSet.from_dicts(
        [
            FULL,
            {
                "name": "calibration",
                "rules": [_rule("range", {"postprocess": {"cal": True}}, attribute="age", min=18)],
            },
            {
                "name": "beta",
                "rules": [
                    _rule("equals", {"postprocess": {"x": True}}, attribute="tier", value="gold")
                ],
            },
            {"name": "killed", "enabled": False, "default": {"version": 2}},
        ]
    )
    first_rule = {"country": "DE", "age": 30, "tier": "silver"}
    no_rule = {"country": "FR", "plan": "free", "age": 10, "tier": "silver"}
    calls = 50_000
    for label, call in [
        ("Flag.evaluate, first rule matches", lambda: flag.evaluate(first_rule, "user-12345")),
        ("Flag.evaluate, 5 rules, none match", lambda: flag.evaluate(no_rule, "user-12345")),
        ("FlagSet.evaluate, 4 flags", lambda: flags.evaluate(no_rule, "user-12345")),
    ]:
        seconds = min(timeit.repeat(call, number=calls, repeat=3)) / calls
        print(f"{label}: {seconds * 1e6:.2f} us per call")
