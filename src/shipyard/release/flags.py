"""Feature flags: rules on request attributes that pick a model version or switch post-processors.

A flag has ordered rules (the first that matches wins), a `default` outcome for requests no rule
matches (None: no effect), and a kill switch: a flag with `enabled = false` gives everyone its
default. A rule tests one request attribute (a header or an input field, by name):

    equals       value                   the attribute equals `value`
    in           values                  the attribute equals one of `values`
    range        min and/or max          min <= attribute < max (numbers only)
    percentage   percent (0-100)         the routing key's bucket is in the first `percent`

Comparisons never cast: a number matches a number (1 == 1.0), a string a string, a boolean a
boolean; the string "1" does not match the number 1, and true does not match 1. A missing
attribute matches no rule. `percentage` hashes the routing key (or, with `attribute`, that
attribute's string or integer value) with the flag's name as salt, by `assignment.bucket`: the
same user always gets the same answer, and raising the percentage only adds users.

An outcome is `{"version": N}` (route to version N) and/or `{"postprocess": {"hook": bool}}`.
`FlagSet.evaluate` merges the outcomes of all flags of a model, visited in name order: the first
flag that sets a version wins, post-processor switches are merged (the first flag to set a hook
wins), and `Decision.fired` says which flag and rule gave each outcome, for the prediction log.

Flags are read from plain dicts (as loaded from TOML, YAML or JSON) with `Flag.from_dict`; every
error names the flag, the rule index and the field. Evaluation runs on every request: each rule
is compiled into a small closure when the flag is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from types import MappingProxyType
from typing import Any, TypeGuard

from shipyard.errors import InvalidInput
from shipyard.release.assignment import BUCKETS, CURRENT_HASH, HashVersion, KeyHash, hash_function

OPERATORS = ("equals", "in", "range", "percentage")
"""The rule operators, in the order error messages list them."""

_FLAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_MISSING = object()
_EMPTY: Mapping[str, bool] = MappingProxyType({})

Matcher = Callable[[Mapping[str, Any], "str | None"], bool]
"""`(attributes, routing_key) -> whether the rule matches`."""


# ---------------------------------------------------------------------------------------------
# Outcomes and decisions


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a rule or a default does: route to `version` and/or switch post-processors."""

    version: int | None = None
    postprocess: Mapping[str, bool] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form `Flag.from_dict` reads."""
        data: dict[str, Any] = {}
        if self.version is not None:
            data["version"] = self.version
        if self.postprocess:
            data["postprocess"] = dict(self.postprocess)
        return data

    def __hash__(self) -> int:
        """Hashable like a frozen value should be, although `postprocess` is a mapping."""
        return hash((self.version, frozenset(self.postprocess.items())))


@dataclass(frozen=True, slots=True)
class Decision:
    """The merged outcome of a `FlagSet` for one request.

    `version` is None when no flag routes the request (the server's usual routing applies);
    `postprocess` holds only the hooks some flag switched; `fired` names each flag that gave an
    outcome and why, e.g. `("new-model:rule0", "calibration:default", "old-path:killed")`.
    """

    version: int | None
    postprocess: Mapping[str, bool]
    fired: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Parsing helpers: every error says where (flag, rule, field), what was expected, what came


def _where(flag: str, rule: int | None, name: str) -> str:
    rule_part = "" if rule is None else f" rules[{rule}]"
    return f"flag {flag!r}{rule_part} {name}"


def _fail(where: str, expected: str, got: object) -> InvalidInput:
    return InvalidInput(f"{where}: expected {expected}; got {got!r}")


def _check_keys(data: object, allowed: Iterable[str], where: str) -> Mapping[str, Any]:
    """`data` as a mapping with only `allowed` keys: an unknown key is most often a typo."""
    allowed = tuple(allowed)
    if not isinstance(data, Mapping):
        raise _fail(where, "a mapping", data)
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {unknown}; expected only {', '.join(allowed)}")
    return data


def _is_number(value: object) -> TypeGuard[float]:
    """A real number that is not a boolean (True == 1 in Python; never here)."""
    kind = type(value)
    if kind is int or kind is float:
        return True
    if kind is bool or kind is str:
        return False
    return isinstance(value, Real)  # numpy's integers and floats; numpy's bool_ is not Real


def _check_scalar(value: object, where: str) -> object:
    """A value to compare with: a string, a boolean or a finite number."""
    if isinstance(value, str | bool) or (_is_number(value) and math.isfinite(value)):
        return value
    raise _fail(where, "a string, a boolean or a finite number", value)


def _check_number(value: object, where: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _fail(where, "a finite number", value)
    return value


def _parse_outcome(data: object, where: str) -> Outcome:
    data = _check_keys(data, ("version", "postprocess"), where)
    if not data:
        raise _fail(where, "at least one of version, postprocess", dict(data))
    version = data.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise _fail(f"{where}.version", "a model version number (an integer >= 1)", version)
    if version is not None and version < 1:
        raise _fail(f"{where}.version", "a model version number (an integer >= 1)", version)
    hooks = data.get("postprocess", {})
    if not isinstance(hooks, Mapping) or ("postprocess" in data and not hooks):
        raise _fail(f"{where}.postprocess", "a non-empty mapping of hook name to true/false", hooks)
    for hook, switch in hooks.items():
        if not isinstance(hook, str) or not hook:
            raise _fail(f"{where}.postprocess", "hook names that are non-empty strings", hook)
        if not isinstance(switch, bool):
            raise _fail(f"{where}.postprocess.{hook}", "true or false", switch)
    return Outcome(version, MappingProxyType(dict(hooks)) if hooks else _EMPTY)


# ---------------------------------------------------------------------------------------------
# Rules


def _equals_matcher(attribute: str, value: object) -> Matcher:
    """Equality without casts: the attribute must be of the value's kind (number/str/bool)."""
    if isinstance(value, bool):
        return lambda attributes, _key: attributes.get(attribute, _MISSING) is value
    if isinstance(value, str):

        def match_str(attributes: Mapping[str, Any], _key: str | None) -> bool:
            seen = attributes.get(attribute, _MISSING)
            return isinstance(seen, str) and seen == value

        return match_str

    def match_number(attributes: Mapping[str, Any], _key: str | None) -> bool:
        seen = attributes.get(attribute, _MISSING)
        return _is_number(seen) and seen == value

    return match_number


def _in_matcher(attribute: str, values: tuple[object, ...]) -> Matcher:
    """Membership by kind: one frozenset per kind, so that True never matches 1 and "1" never 1."""
    bools = frozenset(value for value in values if isinstance(value, bool))
    strings = frozenset(value for value in values if isinstance(value, str))
    numbers = frozenset(value for value in values if _is_number(value))

    def match(attributes: Mapping[str, Any], _key: str | None) -> bool:
        seen = attributes.get(attribute, _MISSING)
        if isinstance(seen, bool):
            return seen in bools
        if isinstance(seen, str):
            return seen in strings
        return _is_number(seen) and seen in numbers

    return match


def _range_matcher(attribute: str, low: float | None, high: float | None) -> Matcher:
    """`low <= attribute < high` on numbers; NaN and non-numbers never match."""
    low_bound = -math.inf if low is None else low
    high_bound = math.inf if high is None else high

    def match(attributes: Mapping[str, Any], _key: str | None) -> bool:
        seen = attributes.get(attribute, _MISSING)
        return _is_number(seen) and low_bound <= seen < high_bound

    return match


def _percentage_matcher(attribute: str | None, percent: float, hash_of: KeyHash) -> Matcher:
    """Bucket below `percent * 100`: the same cut as a `Split`'s last arm, so growth only adds.

    Without a key (None, "" or a missing attribute) the rule does not match: an anonymous
    request cannot be sticky, so it gets the flag's later rules or its default.
    """
    threshold = min(round(percent * BUCKETS / 100), BUCKETS)
    if attribute is None:

        def match_key(_attributes: Mapping[str, Any], key: str | None) -> bool:
            if not key:
                return False
            return hash_of(key) < threshold

        return match_key

    def match_attribute(attributes: Mapping[str, Any], _key: str | None) -> bool:
        seen = attributes.get(attribute, _MISSING)
        if isinstance(seen, str):
            return bool(seen) and hash_of(seen) < threshold
        if isinstance(seen, int) and not isinstance(seen, bool):
            return hash_of(str(seen)) < threshold
        return False

    return match_attribute


_RULE_FIELDS = ("attribute", "operator", "value", "values", "min", "max", "percent", "outcome")
_OPERAND_FIELDS = {
    "equals": ("value",),
    "in": ("values",),
    "range": ("min", "max"),
    "percentage": ("percent",),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: `operator` on `attribute` with its operands; `outcome` when it matches.

    Operands by operator: equals `value`; in `values`; range `min` (inclusive) and/or `max`
    (exclusive); percentage `percent` (0-100). `attribute` is optional only for percentage,
    where its absence means the request's routing key.
    """

    attribute: str | None
    operator: str
    outcome: Outcome
    value: object = None
    values: tuple[object, ...] = ()
    min: float | None = None
    max: float | None = None
    percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form `Flag.from_dict` reads; unused operands are left out."""
        data: dict[str, Any] = {}
        if self.attribute is not None:
            data["attribute"] = self.attribute
        data["operator"] = self.operator
        for name in _OPERAND_FIELDS.get(self.operator, ()):
            operand = getattr(self, name)
            if operand is not None:
                data[name] = list(operand) if name == "values" else operand
        data["outcome"] = self.outcome.to_dict()
        return data


def _parse_attribute(data: Mapping[str, Any], operator: str, where: str) -> str | None:
    attribute = data.get("attribute")
    if attribute is None and operator == "percentage":
        return None
    if not isinstance(attribute, str) or not attribute:
        raise _fail(where, "a request attribute name (a non-empty string)", attribute)
    return attribute


def _parse_operands(
    data: Mapping[str, Any], operator: str, at: Callable[[str], str]
) -> dict[str, Any]:
    """The operands of `operator`, checked, as `Rule` keyword arguments."""
    extra = sorted(
        name
        for names in _OPERAND_FIELDS.values()
        for name in names
        if name in data and name not in _OPERAND_FIELDS[operator]
    )
    if extra:
        raise InvalidInput(
            f"{at(extra[0])}: {operator!r} takes only {', '.join(_OPERAND_FIELDS[operator])}; "
            f"got {extra}"
        )
    if operator == "equals":
        if "value" not in data:
            raise _fail(at("value"), "a value to compare with", None)
        return {"value": _check_scalar(data["value"], at("value"))}
    if operator == "in":
        values = data.get("values")
        if not isinstance(values, list | tuple):
            raise _fail(at("values"), "a list of values", values)
        checked = tuple(
            _check_scalar(value, f"{at('values')}[{index}]") for index, value in enumerate(values)
        )
        return {"values": checked}
    if operator == "range":
        low, high = data.get("min"), data.get("max")
        if low is None and high is None:
            raise _fail(at("min/max"), "at least one bound (min inclusive, max exclusive)", None)
        low = None if low is None else _check_number(low, at("min"))
        high = None if high is None else _check_number(high, at("max"))
        if low is not None and high is not None and not low < high:
            raise _fail(at("min/max"), "min < max (max is exclusive)", {"min": low, "max": high})
        return {"min": low, "max": high}
    percent = data.get("percent")
    if not _is_number(percent) or not 0 <= percent <= 100:
        raise _fail(at("percent"), "a number from 0 to 100", percent)
    return {"percent": percent}


def _parse_rule(data: object, flag: str, index: int) -> Rule:
    def at(name: str) -> str:
        return _where(flag, index, name)

    data = _check_keys(data, _RULE_FIELDS, _where(flag, index, "").rstrip())
    operator = data.get("operator")
    if operator not in OPERATORS:
        raise _fail(at("operator"), f"one of {', '.join(OPERATORS)}", operator)
    operands = _parse_operands(data, operator, at)
    if "outcome" not in data:
        raise _fail(at("outcome"), "an outcome: {version: N} and/or {postprocess: {...}}", None)
    outcome = _parse_outcome(data["outcome"], at("outcome"))
    attribute = _parse_attribute(data, operator, at("attribute"))
    return Rule(attribute, operator, outcome, **operands)


def _compile(rule: Rule, salt: str, version: HashVersion) -> Matcher:
    """The closure that tests a request against `rule`: built once per flag, run per request."""
    if rule.operator == "percentage":
        assert rule.percent is not None
        return _percentage_matcher(rule.attribute, rule.percent, version.salted(salt))
    assert rule.attribute is not None
    if rule.operator == "equals":
        return _equals_matcher(rule.attribute, rule.value)
    if rule.operator == "in":
        return _in_matcher(rule.attribute, rule.values)
    return _range_matcher(rule.attribute, rule.min, rule.max)


# ---------------------------------------------------------------------------------------------
# Flags


_FLAG_FIELDS = ("name", "enabled", "description", "rules", "default", "hash_version")


def _recheck_rule(rule: object, flag: str, index: int) -> Rule:
    """A rule built in code is checked like one read from a file: through its dict form."""
    if not isinstance(rule, Rule):
        raise _fail(_where(flag, index, "").rstrip(), "a Rule (use Flag.from_dict for dicts)", rule)
    return _parse_rule(rule.to_dict(), flag, index)


def _recheck_default(default: object, flag: str) -> Outcome | None:
    if default is None:
        return None
    where = _where(flag, None, "default")
    if not isinstance(default, Outcome):
        raise _fail(where, "an Outcome or None", default)
    return _parse_outcome(default.to_dict(), where)


def check_flag_name(name: object) -> str:
    """A flag name: 1-64 letters, digits, '_', '.', '-', starting with a letter.

    No ':' so that `Decision.fired` entries ("flag:rule0") split unambiguously.
    """
    if not isinstance(name, str) or not _FLAG_NAME.match(name):
        raise _fail(
            "flag name", "1-64 letters, digits, '_', '.', '-', starting with a letter", name
        )
    return name


class Flag:
    """A feature flag. Build it with `Flag.from_dict`, or directly from parsed `Rule`s.

    `hash_version` is the `assignment` hash of its percentage rules; `to_dict` records it so an
    upgrade of shipyard never changes who is in a percentage.
    """

    __slots__ = (
        "_labels",
        "_plan",
        "default",
        "description",
        "enabled",
        "hash_version",
        "name",
        "rules",
    )

    def __init__(
        self,
        name: str,
        rules: Sequence[Rule] = (),
        *,
        enabled: bool = True,
        default: Outcome | None = None,
        description: str = "",
        hash_version: str = CURRENT_HASH,
    ) -> None:
        self.name = check_flag_name(name)
        if not isinstance(enabled, bool):
            raise _fail(_where(name, None, "enabled"), "true or false", enabled)
        if not isinstance(description, str):
            raise _fail(_where(name, None, "description"), "a string", description)
        self.enabled = enabled
        self.rules = tuple(_recheck_rule(rule, name, index) for index, rule in enumerate(rules))
        self.default = _recheck_default(default, name)
        self.description = description
        self.hash_version = hash_version
        version = hash_function(hash_version)
        self._plan = tuple(
            (_compile(rule, name, version), rule.outcome, f"{name}:rule{index}")
            for index, rule in enumerate(self.rules)
        )
        self._labels = (f"{name}:default", f"{name}:killed")

    def evaluate(self, attributes: Mapping[str, Any], routing_key: str | None) -> Outcome | None:
        """The outcome for one request: the first matching rule's, else the default.

        A killed flag (`enabled` false) gives the default to everyone without testing rules.
        """
        if self.enabled:
            for matches, outcome, _label in self._plan:
                if matches(attributes, routing_key):
                    return outcome
        return self.default

    def explain(
        self, attributes: Mapping[str, Any], routing_key: str | None
    ) -> tuple[Outcome, str] | None:
        """`evaluate`'s outcome with why: "name:ruleN", "name:default" or "name:killed".

        None when the flag has no effect on this request (no rule matched, no default).
        """
        if self.enabled:
            for matches, outcome, label in self._plan:
                if matches(attributes, routing_key):
                    return outcome, label
            label = self._labels[0]
        else:
            label = self._labels[1]
        return None if self.default is None else (self.default, label)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML, JSON, YAML) that `from_dict` reads back into an equal flag."""
        data: dict[str, Any] = {"name": self.name, "enabled": self.enabled}
        if self.description:
            data["description"] = self.description
        data["rules"] = [rule.to_dict() for rule in self.rules]
        if self.default is not None:
            data["default"] = self.default.to_dict()
        data["hash_version"] = self.hash_version
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        """Parse a flag; `enabled` defaults to true, `rules` to none, `hash_version` to current."""
        if not isinstance(data, Mapping):
            raise _fail("flag", "a mapping", data)
        name = check_flag_name(data.get("name"))
        data = _check_keys(data, _FLAG_FIELDS, f"flag {name!r}")
        rules = data.get("rules", [])
        if not isinstance(rules, list | tuple):
            raise _fail(_where(name, None, "rules"), "a list of rules", rules)
        default = data.get("default")
        hash_version = data.get("hash_version", CURRENT_HASH)
        try:
            hash_function(hash_version)
        except InvalidInput as error:
            raise InvalidInput(f"flag {name!r} {error}") from None
        return cls(
            name,
            [_parse_rule(rule, name, index) for index, rule in enumerate(rules)],
            enabled=data.get("enabled", True),
            default=None
            if default is None
            else _parse_outcome(default, _where(name, None, "default")),
            description=data.get("description", ""),
            hash_version=hash_version,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flag):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self.name)

    def _key(self) -> tuple[object, ...]:
        return (
            self.name,
            self.enabled,
            self.rules,
            self.default,
            self.description,
            self.hash_version,
        )

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "killed"
        return f"<Flag {self.name} {state}, {len(self.rules)} rule(s)>"


class FlagSet:
    """All flags of a model or project, evaluated together for each request, in name order."""

    __slots__ = ("_flags",)

    def __init__(self, flags: Iterable[Flag] = ()) -> None:
        ordered = sorted(flags, key=lambda flag: flag.name)
        names = [flag.name for flag in ordered]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidInput(f"flag names: expected unique names; got {duplicates} repeated")
        self._flags = tuple(ordered)

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The flags, in name order."""
        return self._flags

    def evaluate(self, attributes: Mapping[str, Any], routing_key: str | None) -> Decision:
        """Merge every flag's outcome: first version in name order wins; hooks merge, first wins."""
        version: int | None = None
        hooks: dict[str, bool] | None = None
        fired: list[str] = []
        for flag in self._flags:
            explained = flag.explain(attributes, routing_key)
            if explained is None:
                continue
            outcome, label = explained
            fired.append(label)
            if version is None:
                version = outcome.version
            if outcome.postprocess:
                if hooks is None:
                    hooks = dict(outcome.postprocess)
                else:
                    for hook, switch in outcome.postprocess.items():
                        hooks.setdefault(hook, switch)
        return Decision(version, _EMPTY if hooks is None else hooks, tuple(fired))

    def to_dicts(self) -> list[dict[str, Any]]:
        """Every flag's `to_dict`, in name order (a TOML array of tables `[[flags]]`)."""
        return [flag.to_dict() for flag in self._flags]

    @classmethod
    def from_dicts(cls, items: Iterable[Mapping[str, Any]]) -> FlagSet:
        """Parse a list of flag dicts."""
        if isinstance(items, str | bytes | Mapping):
            raise _fail("flags", "a list of flag mappings", items)
        return cls(Flag.from_dict(item) for item in items)

    def __len__(self) -> int:
        return len(self._flags)

    def __repr__(self) -> str:
        return f"FlagSet({[flag.name for flag in self._flags]})"
