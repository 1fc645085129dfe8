"""Sticky, versioned assignment of routing keys (user ids) to the arms of a rollout.

A request's routing key is hashed together with a salt (the rollout's id) to one of `BUCKETS`
buckets; each arm of a `Split` owns a fixed slice of the buckets. The same key therefore lands on
the same arm on every request, in every process and on every replica, for as long as the weights
stay the same, and a different rollout (another salt) reshuffles users independently.

The hash function is versioned: a rollout records the version it started with (`hash_version`,
written by `Split.to_dict`), so an upgrade of shipyard that changes `CURRENT_HASH` never moves
users of a rollout that is already running. A hash version, once released, never changes what it
computes; a different function gets a new name.

These functions run for every request of the model server: everything that can be is resolved
when a `Split` is built, and `Split.choose` costs one hash and one binary search.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from shipyard.errors import InvalidInput

BUCKETS = 10_000
"""Buckets a key hashes to: a weight of 0.01 percent is one bucket."""

KeyHash = Callable[[str], int]
"""`key -> bucket` for one salt, the bucket in `[0, BUCKETS)`: what a split runs per request."""


class HashVersion:
    """One released hash function: `version(key, salt) -> bucket`.

    `salted(salt)` returns the same function with the salt bound, precomputed as far as the
    function allows, for the hot path. Both compute the same buckets: `version(key, salt)` is
    `version.salted(salt)(key)`.
    """

    __slots__ = ("name", "salted")

    def __init__(self, name: str, salted: Callable[[str], KeyHash]) -> None:
        self.name = name
        self.salted = salted

    def __call__(self, key: str, salt: str) -> int:
        return self.salted(salt)(key)

    def __repr__(self) -> str:
        return f"<HashVersion {self.name}>"


def _blake2b_v1(salt: str) -> KeyHash:
    """`blake2b-v1`: BLAKE2b with an 8-byte digest of the UTF-8 bytes of `f"{salt}:{key}"`.

    The digest is read as a big-endian unsigned 64-bit integer and reduced modulo `BUCKETS`:
    `int.from_bytes(hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest(), "big")
    % 10_000`. Lone surrogates (JSON may carry them) are encoded as their UTF-8 byte patterns
    ("surrogatepass") instead of failing the request. The modulo bias (2**64 is not a multiple
    of 10,000) is below 1e-15. The salted function feeds `salt:` to a hasher once and copies
    that hasher per key, so requests neither format nor hash the salt again.
    """
    prefix = hashlib.blake2b(f"{salt}:".encode("utf-8", "surrogatepass"), digest_size=8)
    from_bytes = int.from_bytes

    def key_hash(key: str) -> int:
        hasher = prefix.copy()
        hasher.update(key.encode("utf-8", "surrogatepass"))
        return from_bytes(hasher.digest(), "big") % BUCKETS

    return key_hash


HASH_VERSIONS: Mapping[str, HashVersion] = MappingProxyType(
    {"blake2b-v1": HashVersion("blake2b-v1", _blake2b_v1)}
)
"""Every hash version shipyard knows, by name; each is a function `(key, salt) -> bucket`.

Read-only: a version is code, not configuration, and never changes once released.
"""

CURRENT_HASH = "blake2b-v1"
"""The version new rollouts and flags record."""


def hash_function(version: str) -> HashVersion:
    """The function of a hash version; InvalidInput names the known versions when it is unknown.

    Resolved once when a split or flag is built, so that requests never look it up.
    """
    function = HASH_VERSIONS.get(version) if isinstance(version, str) else None
    if function is None:
        known = ", ".join(repr(name) for name in HASH_VERSIONS)
        raise InvalidInput(f"hash version: expected one of {known}; got {version!r}")
    return function


def bucket(key: str, salt: str, version: str = CURRENT_HASH) -> int:
    """The bucket in `[0, BUCKETS)` of `key` under `salt`, with the hash function `version`.

    For one-off use (tests, tools); per request, keep `hash_function(version).salted(salt)`.
    """
    return hash_function(version)(key, salt)


def _check_salt(salt: object) -> str:
    if not isinstance(salt, str) or not salt:
        raise InvalidInput(
            f"split salt: expected a non-empty string (the rollout id); got {salt!r}"
        )
    return salt


def _check_arm(arm: object) -> tuple[str, float]:
    """One `(name, weight)` pair, checked; the weight's own type (int or float) is kept."""
    if not isinstance(arm, tuple | list) or len(arm) != 2:
        raise InvalidInput(f"split arm: expected a (name, weight) pair; got {arm!r}")
    name, weight = arm
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"split arm name: expected a non-empty string; got {name!r}")
    is_number = isinstance(weight, int | float) and not isinstance(weight, bool)
    if not is_number or not math.isfinite(weight) or weight < 0:
        raise InvalidInput(
            f"split arm {name!r} weight: expected a finite number of percent >= 0; got {weight!r}"
        )
    return name, weight


def _check_arms(arms: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """Every arm checked; names unique; weights summing to 100 (within 1e-9)."""
    if isinstance(arms, str | bytes | Mapping):
        raise InvalidInput(f"split arms: expected a sequence of (name, weight) pairs; got {arms!r}")
    checked = tuple(_check_arm(arm) for arm in arms)
    if not checked:
        raise InvalidInput("split arms: expected at least one (name, weight) pair; got none")
    names = [name for name, _ in checked]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"split arm names: expected unique names; got {names} ({duplicates})")
    total = math.fsum(weight for _, weight in checked)
    if abs(total - 100.0) > 1e-9:
        weights = {name: weight for name, weight in checked}
        raise InvalidInput(
            f"split weights: expected percentages summing to 100; got {weights} (sum {total!r})"
        )
    return checked


def _layout(arms: tuple[tuple[str, float], ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The upper bucket edges, ascending, and the arm owning each slice below its edge.

    The LAST arm owns buckets `[0, w_last)`, the arm before it the next `w` buckets, and so on
    up to the FIRST arm, which owns the top of the range. An arm's lower edge thus depends only
    on the weights of the arms after it. Edges are cumulative percentages times 100, rounded to
    the nearest bucket (a weight finer than 0.01 percent is rounded); the last edge is always
    `BUCKETS`.
    """
    edges: list[int] = []
    owners: list[str] = []
    cumulative = 0.0
    for name, weight in reversed(arms):
        cumulative += weight
        edges.append(min(round(cumulative * BUCKETS / 100), BUCKETS))
        owners.append(name)
    edges[-1] = BUCKETS
    return tuple(edges), tuple(owners)


class Split:
    """A sticky split of traffic over ordered arms, by weight in percent.

    Layout (see `_layout`): the last arm holds the lowest buckets, the first arm the highest,
    each a fixed slice. With fixed weights a key always gets the same arm. Moving weight from an
    arm to the arm right after it in the list moves keys only between those two and only in that
    direction: with `[("champion", 95), ("candidate", 5)]` the candidate holds buckets
    `[0, 500)`, and raising its weight to 25, 50, 100 percent only adds keys to it (the canary
    property). Moving weight between arms that are not neighbours also shifts the arms between
    them; put the arm whose share grows right after the arm it takes traffic from.

    A request without a routing key (None or "") gets a random bucket: it is not sticky.
    """

    __slots__ = ("_arms", "_edges", "_hash", "_owners", "_random", "hash_version", "salt")

    def __init__(
        self,
        arms: Iterable[tuple[str, float]],
        *,
        salt: str,
        hash_version: str = CURRENT_HASH,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """`rng` (a `random.random`-like function) draws buckets for requests without a key."""
        self._arms = _check_arms(arms)
        self.salt = _check_salt(salt)
        self._hash = hash_function(hash_version).salted(self.salt)
        self.hash_version = hash_version
        self._edges, self._owners = _layout(self._arms)
        self._random = rng

    def choose(self, key: str | None) -> str:
        """The arm of a request with routing key `key`; random when the key is None or ""."""
        slot = self._hash(key) if key else int(self._random() * BUCKETS)
        return self._owners[bisect_right(self._edges, slot)]

    @property
    def arms(self) -> tuple[tuple[str, float], ...]:
        """The `(name, weight)` pairs, in the order given."""
        return self._arms

    @property
    def weights(self) -> dict[str, float]:
        """Weight in percent by arm name, in the order given (a fresh dict each time)."""
        return dict(self._arms)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Each arm's buckets as a half-open `[start, stop)` range, for display and tests."""
        starts = (0, *self._edges[:-1])
        slices = zip(self._owners, starts, self._edges, strict=True)
        spans = {name: (start, stop) for name, start, stop in slices}
        return {name: spans[name] for name, _ in self._arms}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML, JSON, YAML) that `from_dict` reads back into an equal split."""
        return {
            "arms": [{"name": name, "weight": weight} for name, weight in self._arms],
            "salt": self.salt,
            "hash_version": self.hash_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        """Read `to_dict`'s output. `salt` and `hash_version` are required: a stored rollout
        that lost its hash version would silently take whatever version is current."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"split: expected a mapping; got {data!r}")
        expected = {"arms", "salt", "hash_version"}
        if set(data) != expected:
            raise InvalidInput(
                f"split: expected exactly the keys {sorted(expected)}; got {sorted(map(str, data))}"
            )
        raw_arms = data["arms"]
        if not isinstance(raw_arms, list | tuple):
            raise InvalidInput(f"split arms: expected a list of {{name, weight}}; got {raw_arms!r}")
        return cls(
            [_arm_from_dict(arm) for arm in raw_arms],
            salt=data["salt"],
            hash_version=data["hash_version"],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (self._arms, self.salt, self.hash_version) == (
            other._arms,
            other.salt,
            other.hash_version,
        )

    def __hash__(self) -> int:
        return hash((self._arms, self.salt, self.hash_version))

    def __repr__(self) -> str:
        return (
            f"Split({list(self._arms)!r}, salt={self.salt!r}, hash_version={self.hash_version!r})"
        )


def _arm_from_dict(arm: object) -> tuple[str, float]:
    if not isinstance(arm, Mapping) or set(arm) != {"name", "weight"}:
        raise InvalidInput(f"split arm: expected a mapping with keys name, weight; got {arm!r}")
    return arm["name"], arm["weight"]
