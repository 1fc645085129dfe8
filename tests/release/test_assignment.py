"""Sticky, versioned assignment: fixed buckets, the canary property, shares, errors, cost."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import timeit
from collections import Counter
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.release.assignment import (
    BUCKETS,
    CURRENT_HASH,
    HASH_VERSIONS,
    Split,
    bucket,
    hash_function,
)

# Literal buckets of blake2b-v1. If one of these changes, every running rollout reshuffles its
# users: add a new hash version instead of changing this one.
EXPECTED_V1 = {
    ("user-1", "rollout-1"): 4363,
    ("user-2", "rollout-1"): 8815,
    ("alice", "checkout-v2"): 3849,
    ("", "x"): 1973,
    ("é✓", "rollout-1"): 1338,
    ("42", "new-model"): 100,
}

KEYS_10K = [f"user-{number}" for number in range(10_000)]


def test_current_hash_is_registered() -> None:
    assert CURRENT_HASH == "blake2b-v1"
    assert set(HASH_VERSIONS) == {"blake2b-v1"}
    with pytest.raises(TypeError):
        HASH_VERSIONS["other"] = HASH_VERSIONS["blake2b-v1"]  # type: ignore[index]


@pytest.mark.parametrize(("key", "salt"), list(EXPECTED_V1))
def test_blake2b_v1_buckets_are_fixed(key: str, salt: str) -> None:
    assert bucket(key, salt) == EXPECTED_V1[key, salt]
    assert bucket(key, salt, version="blake2b-v1") == EXPECTED_V1[key, salt]
    assert HASH_VERSIONS["blake2b-v1"](key, salt) == EXPECTED_V1[key, salt]


def test_blake2b_v1_is_the_documented_formula() -> None:
    for key in KEYS_10K[:500]:
        digest = hashlib.blake2b(f"rollout-9:{key}".encode(), digest_size=8).digest()
        assert bucket(key, "rollout-9") == int.from_bytes(digest, "big") % BUCKETS


def test_salted_function_matches_the_plain_one() -> None:
    version = hash_function("blake2b-v1")
    salted = version.salted("rollout-3")
    assert [salted(key) for key in KEYS_10K[:1000]] == [
        version(key, "rollout-3") for key in KEYS_10K[:1000]
    ]


def test_buckets_are_the_same_in_another_process() -> None:
    """A different interpreter, with a different str-hash seed, computes the same buckets."""
    code = (
        "import json, sys\n"
        "from shipyard.release.assignment import bucket\n"
        "pairs = json.loads(sys.argv[1])\n"
        "print(json.dumps([bucket(key, salt) for key, salt in pairs]))\n"
    )
    pairs = list(EXPECTED_V1)
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(pairs)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        timeout=60,
    )
    assert json.loads(result.stdout) == [EXPECTED_V1[pair] for pair in pairs]


def test_lone_surrogate_keys_hash_instead_of_failing() -> None:
    assert 0 <= bucket("\ud800", "rollout-1") < BUCKETS


def test_unknown_hash_version_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        bucket("user-1", "rollout-1", version="md5-v0")
    assert "'md5-v0'" in str(raised.value)
    assert "'blake2b-v1'" in str(raised.value)
    with pytest.raises(InvalidInput, match="md5-v0"):
        Split([("champion", 100)], salt="r", hash_version="md5-v0")


def _on(split: Split, arm: str) -> set[str]:
    return {key for key in KEYS_10K if split.choose(key) == arm}


def test_raising_the_candidate_weight_only_adds_keys() -> None:
    shares = [5.0, 25.0, 50.0, 100.0]
    splits = [
        Split([("champion", 100 - share), ("candidate", share)], salt="rollout-7")
        for share in shares
    ]
    on_candidate = [_on(split, "candidate") for split in splits]
    for smaller, larger in itertools.pairwise(on_candidate):
        assert smaller <= larger
        assert len(smaller) < len(larger)
    assert on_candidate[-1] == set(KEYS_10K)
    assert 400 < len(on_candidate[0]) < 600  # about 5 percent of 10,000


def test_candidate_range_starts_at_zero() -> None:
    split = Split([("champion", 95.0), ("candidate", 5.0)], salt="r")
    assert split.ranges() == {"champion": (500, BUCKETS), "candidate": (0, 500)}


def test_assignment_is_sticky() -> None:
    split = Split([("champion", 50), ("candidate", 50)], salt="rollout-2")
    first = [split.choose(key) for key in KEYS_10K[:1000]]
    again = Split.from_dict(split.to_dict())
    assert [again.choose(key) for key in KEYS_10K[:1000]] == first


def test_different_salts_shuffle_independently() -> None:
    one = Split([("a", 50), ("b", 50)], salt="rollout-1")
    two = Split([("a", 50), ("b", 50)], salt="rollout-2")
    agree = sum(one.choose(key) == two.choose(key) for key in KEYS_10K)
    assert 4500 < agree < 5500


def test_observed_shares_follow_the_weights() -> None:
    weights = {"champion": 80.0, "candidate": 15.0, "shadow": 5.0}
    split = Split(list(weights.items()), salt="rollout-shares")
    counts = Counter(split.choose(f"key-{number}") for number in range(100_000))
    for arm, weight in weights.items():
        assert abs(counts[arm] / 100_000 * 100 - weight) < 1.0


def test_keyless_requests_are_spread_at_random() -> None:
    split = Split([("champion", 90), ("candidate", 10)], salt="r")
    counts = Counter(split.choose(None) for _ in range(20_000))
    counts.update(split.choose("") for _ in range(20_000))
    assert abs(counts["candidate"] / 40_000 - 0.10) < 0.02


def test_keyless_requests_use_the_given_rng() -> None:
    split = Split([("champion", 90), ("candidate", 10)], salt="r", rng=lambda: 0.0999)
    assert split.choose(None) == "candidate"
    split = Split([("champion", 90), ("candidate", 10)], salt="r", rng=lambda: 0.1)
    assert split.choose("") == "champion"


def test_n_arm_layout_and_neighbour_moves() -> None:
    """Arm ranges are fixed slices, last arm lowest; moving weight to the next arm only adds."""
    split = Split([("a", 50), ("b", 30), ("c", 20)], salt="rollout-n")
    assert split.ranges() == {"a": (5000, 10_000), "b": (2000, 5000), "c": (0, 2000)}
    for key in KEYS_10K[:2000]:
        slot = bucket(key, "rollout-n")
        expected = "c" if slot < 2000 else "b" if slot < 5000 else "a"
        assert split.choose(key) == expected
    grown = Split([("a", 40), ("b", 40), ("c", 20)], salt="rollout-n")
    assert _on(split, "b") <= _on(grown, "b")
    assert _on(split, "c") == _on(grown, "c")
    assert _on(grown, "a") <= _on(split, "a")


def test_zero_weight_arms_get_nothing() -> None:
    split = Split([("champion", 100), ("candidate", 0), ("off", 0.0)], salt="r")
    assert {split.choose(key) for key in KEYS_10K[:2000]} == {"champion"}
    split = Split([("champion", 0), ("candidate", 100)], salt="r")
    assert {split.choose(key) for key in KEYS_10K[:2000]} == {"candidate"}


def test_fractional_weights_round_to_buckets() -> None:
    split = Split([("a", 100 / 3), ("b", 100 / 3), ("c", 100 / 3)], salt="r")
    assert split.ranges() == {"a": (6667, 10_000), "b": (3333, 6667), "c": (0, 3333)}


def test_weights_and_round_trip() -> None:
    split = Split([("champion", 95), ("candidate", 5.0)], salt="rollout-1")
    assert split.weights == {"champion": 95, "candidate": 5.0}
    assert list(split.weights) == ["champion", "candidate"]
    data = split.to_dict()
    assert data == {
        "arms": [{"name": "champion", "weight": 95}, {"name": "candidate", "weight": 5.0}],
        "salt": "rollout-1",
        "hash_version": "blake2b-v1",
    }
    assert json.loads(json.dumps(data)) == data
    assert Split.from_dict(data) == split
    assert Split.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    ("arms", "fragment"),
    [
        ([("champion", 95.0), ("candidate", 4.0)], "{'champion': 95.0, 'candidate': 4.0}"),
        ([("champion", 105.0), ("candidate", -5.0)], "got -5.0"),
        ([("champion", 50), ("candidate", 50.1)], "summing to 100"),
        ([("champion", float("nan")), ("candidate", 100)], "got nan"),
        ([("champion", True), ("candidate", 99)], "got True"),
        ([("champion", "95"), ("candidate", 5)], "got '95'"),
        ([], "got none"),
        ([("champion", 50), ("champion", 50)], "unique"),
        ([("", 100)], "non-empty"),
        ([("champion", 50, 1)], "(name, weight) pair"),
    ],
)
def test_bad_arms_are_refused(arms: list[Any], fragment: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Split(arms, salt="r")
    assert fragment in str(raised.value)


def test_weights_within_tolerance_are_accepted() -> None:
    Split([("a", 0.1 + 0.2), ("b", 99.7)], salt="r")
    Split([("a", 50 + 5e-10), ("b", 50)], salt="r")


def test_bad_salt_and_dicts_are_refused() -> None:
    with pytest.raises(InvalidInput, match="salt"):
        Split([("a", 100)], salt="")
    good = Split([("a", 100)], salt="r").to_dict()
    with pytest.raises(InvalidInput, match="hash_version"):
        Split.from_dict({key: value for key, value in good.items() if key != "hash_version"})
    with pytest.raises(InvalidInput, match="extra"):
        Split.from_dict({**good, "extra": 1})
    with pytest.raises(InvalidInput, match="name, weight"):
        Split.from_dict({**good, "arms": [{"name": "a", "share": 100}]})
    with pytest.raises(InvalidInput, match="list"):
        Split.from_dict({**good, "arms": "a=100"})


def test_per_call_cost() -> None:
    """Printed, not asserted: timings depend on the machine and its load."""
    split = Split([("champion", 95.0), ("candidate", 5.0)], salt="rollout-1")
    four = Split([("a", 40), ("b", 30), ("c", 20), ("d", 10)], salt="rollout-1")
    calls = 50_000
    for label, call in [
        ("Split.choose(key), 2 arms", lambda: split.choose("user-12345")),
        ("Split.choose(key), 4 arms", lambda: four.choose("user-12345")),
        ("Split.choose(None)", lambda: split.choose(None)),
        ("bucket(key, salt)", lambda: bucket("user-12345", "rollout-1")),
    ]:
        seconds = min(timeit.repeat(call, number=calls, repeat=3)) / calls
        print(f"{label}: {seconds * 1e6:.2f} us per call")
