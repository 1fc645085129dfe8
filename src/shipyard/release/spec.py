"""The rollout declaration: what to release, how traffic moves, and how each step is judged.

A rollout file is TOML or YAML with one `rollout` table (or the same as a Python dict)::

    [rollout]
    model = "churn"
    candidate = 2                      # a version number, or an alias such as "challenger"
    strategy = "canary"                # canary | bluegreen | shadow | ab
    routing_key = "header:x-user-id"   # or "field:user_id"; random per request when absent
    interval = "30s"                   # how often the controller judges the live step
    failure_limit = 1                  # failed analyses that trigger the rollback
    on_inconclusive = "wait"           # wait | extend | abort
    deadline = "2h"                    # inconclusive for this long: abort (never promote)
    approval = false                   # promotion waits for `shipyard rollout approve`
    segments = ["region"]              # judge each value of these input fields on its own
    # strategy "ab" only: arms = {champion = 50, 2 = 50}, and the experiment (see abtest):
    ab_metric = "conversion"           # conversion | reward | accuracy (AB_METRICS)
    mde = 0.02                         # minimum detectable effect, absolute (2 points)
    bandit = false                     # Thompson sampling moves traffic to the better arm

    [[rollout.steps]]
    weight = 5                         # percent of routing keys on the candidate
    hold = "5m"                        # at least this long ...
    min_requests = 200                 # ... and this many candidate requests

    [[rollout.analysis]]
    metric = "error_rate"              # see METRICS
    max = 0.01
    max_increase = 0.005               # over the champion's in the same window

`parse` checks everything (unknown keys, metrics, weights, durations) and raises one
`InvalidInput` listing each problem with its place in the file, so nothing starts half-way.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput

STRATEGIES = ("canary", "bluegreen", "shadow", "ab")
INCONCLUSIVE_POLICIES = ("wait", "extend", "abort")
# the outcome an A/B experiment compares (per request, joined from feedback by request id)
AB_METRICS = {
    "conversion": "share of requests whose reward is > 0 (two-proportion test)",
    "reward": "mean reward per request (Welch test)",
    "accuracy": "share of labelled predictions equal to their label (two-proportion test)",
}
BANDIT_FLOOR = 0.05  # the least share of traffic a bandit leaves each arm

# metric -> (the bounds it accepts, what it measures)
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "error_rate": (("max", "max_increase"), "share of the arm's requests answered 5xx"),
    "latency_p99_ms": (("max", "max_ratio"), "99th percentile latency of the arm, ms"),
    "latency_p50_ms": (("max", "max_ratio"), "median latency of the arm, ms"),
    "agreement": (("min",), "share of paired requests where both versions answer the same"),
    "flipped_labels": (("max",), "share of paired requests whose label changed"),
    "mean_abs_diff": (("max",), "mean |candidate - champion| over paired numeric outputs"),
    "prediction_psi": (("max",), "PSI between the arms' prediction distributions"),
    "prediction_js": (("max",), "Jensen-Shannon distance between the arms' predictions"),
    "input_psi": (("max",), "largest PSI of an input feature, candidate's vs champion's"),
    "accuracy": (("min", "max_decrease"), "share of labelled predictions that were right"),
}
PAIRED_METRICS = frozenset(
    {"agreement", "flipped_labels", "mean_abs_diff", "prediction_psi", "prediction_js"}
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_KEY = re.compile(r"^(header|field):([A-Za-z0-9_.\-]+)$")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from 90, 1.5, "90s", "5m", "2h", "250ms"."""
    if isinstance(value, bool):
        raise InvalidInput(f"{where}: expected a duration such as '30s' or '5m'; got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise InvalidInput(
                f"{where}: expected a duration such as '30s', '5m' or '2h'; got {value!r}"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{where}: a duration must be >= 0; got {value!r}")
    return seconds


@dataclass(frozen=True)
class Step:
    """One stage of the rollout: the candidate's share, held for a time and a request count."""

    weight: float  # percent of routing keys on the candidate (shadow: percent mirrored)
    hold_s: float = 0.0
    min_requests: int = 0


@dataclass(frozen=True)
class Check:
    """One metric of the analysis with its bounds (absolute, and relative to the champion)."""

    metric: str
    bounds: dict[str, float]
    min_samples: int | None = None  # None: computed from the bounds (see analysis)
    segment: str | None = None  # judge this metric per value of this field as well


@dataclass(frozen=True)
class RolloutSpec:
    model: str
    candidate: int | str  # a version number, or an alias resolved at start
    strategy: str
    steps: tuple[Step, ...]
    analysis: tuple[Check, ...]
    name: str = ""
    routing_key: str | None = None  # "header:NAME" or "field:NAME"
    arms: dict[str, float] = field(default_factory=dict)  # ab: extra versions and weights
    interval_s: float = 30.0
    failure_limit: int = 1
    on_inconclusive: str = "wait"
    deadline_s: float | None = None
    approval: bool = False
    segments: tuple[str, ...] = ()
    min_samples: int | None = None  # per step, for every metric; None: from the bounds
    ab_metric: str = "conversion"  # ab: the outcome the arms are compared on (AB_METRICS)
    mde: float = 0.02  # ab: the minimum detectable effect (absolute), sizes the test
    bandit: bool = False  # ab: Thompson sampling reweights the arms toward the better one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hash(self) -> str:
        """sha256 of the normalised declaration: recorded with every decision."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutSpec:
        """The stored form (`to_dict`) back; assumed valid (it was checked when declared)."""
        values = dict(data)
        values["steps"] = tuple(Step(**step) for step in values["steps"])
        values["analysis"] = tuple(Check(**check) for check in values["analysis"])
        values["segments"] = tuple(values.get("segments", ()))
        return cls(**values)

    @property
    def needs_pairs(self) -> bool:
        """Whether the analysis compares both versions' outputs on the same requests."""
        return any(check.metric in PAIRED_METRICS for check in self.analysis)


_TOP_KEYS = {
    "name", "model", "candidate", "strategy", "routing_key", "steps", "analysis", "arms",
    "interval", "failure_limit", "on_inconclusive", "deadline", "approval", "segments",
    "min_samples", "ab_metric", "mde", "bandit",
}  # fmt: skip
_STEP_KEYS = {"weight", "hold", "min_requests"}
_CHECK_KEYS = {"metric", "min_samples", "segment"}


def load(path: str | Path) -> tuple[RolloutSpec, str]:
    """A rollout file (TOML, or YAML by its suffix) and the sha256 of its bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the rollout file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw.decode())
        else:
            data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{path} is not valid TOML/YAML: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml for TOML files
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("rollout"), Mapping):
        raise InvalidInput(f"{path} has no [rollout] table; see docs/release.md for the format")
    return parse(data["rollout"], where=str(path)), hashlib.sha256(raw).hexdigest()


def parse(data: Mapping[str, Any], *, where: str = "rollout") -> RolloutSpec:
    """Check a declaration and normalise it; every problem is reported at once."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where}: a rollout is a table of settings; got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        problems.append(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}"
        )
    model = data.get("model")
    if not isinstance(model, str) or not model:
        problems.append("`model` (the registered model's name) is required")
    candidate = data.get("candidate")
    if isinstance(candidate, bool) or not isinstance(candidate, int | str) or candidate == "":
        problems.append("`candidate` (a version number or an alias) is required")
    elif isinstance(candidate, int) and candidate < 1:
        problems.append(f"`candidate` must be a positive version number; got {candidate}")
    strategy = data.get("strategy", "canary")
    if strategy not in STRATEGIES:
        problems.append(f"`strategy` must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    routing_key = data.get("routing_key")
    if routing_key is not None and (
        not isinstance(routing_key, str) or not _KEY.match(routing_key)
    ):
        problems.append(f"`routing_key` must be 'header:NAME' or 'field:NAME'; got {routing_key!r}")
    steps = _steps(data.get("steps"), strategy, problems)
    analysis = _analysis(data.get("analysis", []), problems)
    arms = _arms(data.get("arms", {}), strategy, problems)
    interval = _duration(data, "interval", 30.0, problems)
    deadline = _duration(data, "deadline", None, problems)
    failure_limit = data.get("failure_limit", 1)
    if isinstance(failure_limit, bool) or not isinstance(failure_limit, int) or failure_limit < 1:
        problems.append(f"`failure_limit` must be an integer >= 1; got {failure_limit!r}")
    on_inconclusive = data.get("on_inconclusive", "wait")
    if on_inconclusive not in INCONCLUSIVE_POLICIES:
        problems.append(
            f"`on_inconclusive` must be one of {', '.join(INCONCLUSIVE_POLICIES)}; "
            f"got {on_inconclusive!r}"
        )
    if on_inconclusive == "abort" and deadline is None:
        problems.append("`on_inconclusive = \"abort\"` needs a `deadline` (e.g. '2h')")
    approval = data.get("approval", False)
    if not isinstance(approval, bool):
        problems.append(f"`approval` must be true or false; got {approval!r}")
    segments = data.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, str) and s for s in segments):
        problems.append(f"`segments` must be a list of input field names; got {segments!r}")
        segments = []
    min_samples = data.get("min_samples")
    if min_samples is not None and (
        isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1
    ):
        problems.append(f"`min_samples` must be an integer >= 1; got {min_samples!r}")
    name = data.get("name", "")
    if not isinstance(name, str):
        problems.append(f"`name` must be text; got {name!r}")
    ab_metric, mde, bandit = _experiment(data, strategy, arms, problems)
    if problems:
        raise InvalidInput(f"{where}: " + "; ".join(problems))
    return RolloutSpec(
        model=str(model),
        candidate=candidate,  # type: ignore[arg-type]
        strategy=str(strategy),
        steps=steps,
        analysis=analysis,
        name=name or f"{model}-{candidate}",
        routing_key=routing_key,
        arms=arms,
        interval_s=float(30.0 if interval is None else interval),
        failure_limit=int(failure_limit),
        on_inconclusive=str(on_inconclusive),
        deadline_s=deadline,
        approval=bool(approval),
        segments=tuple(segments),
        min_samples=min_samples,
        ab_metric=ab_metric,
        mde=mde,
        bandit=bandit,
    )


def _duration(
    data: Mapping[str, Any], key: str, default: float | None, problems: list[str]
) -> float | None:
    if key not in data:
        return default
    try:
        return parse_duration(data[key], f"`{key}`")
    except InvalidInput as exc:
        problems.append(str(exc))
        return default


def _steps(raw: Any, strategy: str, problems: list[str]) -> tuple[Step, ...]:
    if raw is None:
        # Blue/green and A/B hold one stage until promoted; shadow mirrors everything.
        if strategy in ("bluegreen", "shadow", "ab"):
            return (Step(weight=100.0 if strategy != "ab" else 0.0),)
        problems.append("`steps` is required for a canary (e.g. weights 5, 25, 50, 100)")
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append("`steps` must be a non-empty list of {weight, hold, min_requests}")
        return ()
    steps: list[Step] = []
    previous = 0.0
    for index, item in enumerate(raw):
        where = f"steps[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where} must be a table with weight, hold and min_requests")
            continue
        unknown = sorted(set(item) - _STEP_KEYS)
        if unknown:
            problems.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: weight, hold, min_requests"
            )
        weight = item.get("weight", 100.0 if strategy != "canary" else None)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 <= weight <= 100
        ):
            problems.append(
                f"{where}: `weight` must be a percent between 0 and 100; got {weight!r}"
            )
            continue
        if strategy == "canary" and weight < previous:
            problems.append(
                f"{where}: canary weights must not decrease ({previous:g} then {weight:g})"
            )
        previous = float(weight)
        hold = 0.0
        if "hold" in item:
            try:
                hold = parse_duration(item["hold"], f"{where}.hold")
            except InvalidInput as exc:
                problems.append(str(exc))
        requests = item.get("min_requests", 0)
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
            problems.append(f"{where}: `min_requests` must be an integer >= 0; got {requests!r}")
            requests = 0
        steps.append(Step(float(weight), hold, requests))
    return tuple(steps)


def _analysis(raw: Any, problems: list[str]) -> tuple[Check, ...]:
    if not isinstance(raw, list):
        problems.append("`analysis` must be a list of {metric, max|min|...} tables")
        return ()
    checks: list[Check] = []
    for index, item in enumerate(raw):
        where = f"analysis[{index}]"
        if not isinstance(item, Mapping):
            problems.append(
                f"{where} must be a table such as {{metric = 'error_rate', max = 0.01}}"
            )
            continue
        metric = item.get("metric")
        if metric not in METRICS:
            problems.append(
                f"{where}: unknown metric {metric!r}; known: {', '.join(sorted(METRICS))}"
            )
            continue
        allowed, _ = METRICS[metric]
        unknown = sorted(set(item) - _CHECK_KEYS - set(allowed))
        if unknown:
            problems.append(
                f"{where}: {metric} takes {', '.join(allowed)} (and min_samples, segment); "
                f"got {', '.join(unknown)}"
            )
        bounds: dict[str, float] = {}
        for key in allowed:
            if key in item:
                value = item[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    problems.append(f"{where}: `{key}` must be a number >= 0; got {value!r}")
                    continue
                bounds[key] = float(value)
        if not bounds and not unknown:
            problems.append(f"{where}: {metric} needs a bound: one of {', '.join(allowed)}")
        samples = item.get("min_samples")
        if samples is not None and (
            isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
        ):
            problems.append(f"{where}: `min_samples` must be an integer >= 1; got {samples!r}")
            samples = None
        segment = item.get("segment")
        if segment is not None and (not isinstance(segment, str) or not segment):
            problems.append(f"{where}: `segment` must be an input field name; got {segment!r}")
            segment = None
        checks.append(Check(str(metric), bounds, samples, segment))
    return tuple(checks)


def _arms(raw: Any, strategy: str, problems: list[str]) -> dict[str, float]:
    """A/B/n: `arms = {champion = 34, 2 = 33, 3 = 33}` by version (or "champion"); the weights
    must sum to 100. Other strategies take no arms."""
    if not raw:
        return {}
    if strategy != "ab":
        problems.append("`arms` is for strategy 'ab' only (a canary moves by its steps)")
        return {}
    if not isinstance(raw, Mapping):
        problems.append(
            "`arms` must be a table of version -> percent, e.g. {champion = 50, 2 = 50}"
        )
        return {}
    arms: dict[str, float] = {}
    for key, weight in raw.items():
        label = str(key)
        if label != "champion" and not label.isdigit():
            problems.append(f"arms: {label!r} is not a version number or 'champion'")
            continue
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            problems.append(f"arms.{label}: a weight is a percent >= 0; got {weight!r}")
            continue
        arms[label] = float(weight)
    total = sum(arms.values())
    if arms and abs(total - 100.0) > 1e-9:
        listed = ", ".join(f"{k}={v:g}" for k, v in arms.items())
        problems.append(f"arms: the weights must sum to 100; got {total:g} ({listed})")
    return arms


def _experiment(
    data: Mapping[str, Any], strategy: Any, arms: dict[str, float], problems: list[str]
) -> tuple[str, float, bool]:
    """The A/B experiment's settings: `ab_metric`, `mde` and `bandit` (strategy 'ab' only)."""
    given = [key for key in ("ab_metric", "mde", "bandit") if key in data]
    if given and strategy != "ab":
        problems.append(f"{', '.join(f'`{key}`' for key in given)}: for strategy 'ab' only")
    metric = data.get("ab_metric", "conversion")
    if not isinstance(metric, str) or metric not in AB_METRICS:
        problems.append(f"`ab_metric` must be one of {', '.join(AB_METRICS)}; got {metric!r}")
        metric = "conversion"
    mde = data.get("mde", 0.02)
    if (
        isinstance(mde, bool)
        or not isinstance(mde, int | float)
        or not math.isfinite(mde)
        or mde <= 0
    ):
        problems.append(
            f"`mde` (the minimum detectable effect, an absolute difference) must be a number "
            f"> 0; got {mde!r}"
        )
        mde = 0.02
    elif metric != "reward" and mde >= 1:
        problems.append(
            f"`mde` for ab_metric {metric!r} is a difference of rates: it must be below 1 "
            f"(0.02 is 2 points); got {mde!r}"
        )
    bandit = data.get("bandit", False)
    if not isinstance(bandit, bool):
        problems.append(f"`bandit` must be true or false; got {bandit!r}")
        bandit = False
    elif bandit and len(arms) * BANDIT_FLOOR > 1:
        problems.append(
            f"`bandit` keeps {BANDIT_FLOOR:.0%} of the traffic on every arm: at most "
            f"{int(1 / BANDIT_FLOOR)} arms; got {len(arms)}"
        )
    return str(metric), float(mde), bandit
