"""Replaying a logged prediction: the same request, the same model version, the same path.

`replay(request_id)` finds the record, loads exactly `model@version` from the registry (its
files checked against their sha256), builds the `Predictor` with the model's serving options
as configured now, and answers the logged request body through `serving.protocols.answer`:
the decoding, pre-processing, signature check, model, post-processing and filters the server
ran. The response is serialised as the server serialises it and compared with the logged one:

- identical: the same JSON document (every value equal, of the same type);
- close: the same structure and every number within `rtol`/`atol` (the largest absolute
  difference is reported);
- different: which fields (rows) differ and how.

Unless identical, the report says what changed since that can explain it: hooks whose code
fingerprint differs from the one logged, packages whose versions differ from those recorded
with the model version (its `dependencies`) and from its training run's environment, the
Python version, and the runtime (an ONNX sibling answers now; when ONNX and the native model
disagree, both are tried and the one that reproduces the log is named).
"""

from __future__ import annotations

import json
import math
import platform
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, ShipyardError

if TYPE_CHECKING:
    from shipyard.project import Project
    from shipyard.registry.versions import ModelVersion

IDENTICAL, CLOSE, DIFFERENT = "identical", "close", "different"
MAX_DIFFERENCES = 20
MAX_PACKAGE_LINES = 15


@dataclass
class ReplayReport:
    """The verdict of one replay, what differs, and what changed since that may explain it."""

    request_id: str
    model: str
    version: int
    arm: str
    protocol: str
    time: datetime
    verdict: str  # identical | close | different
    runtime: str  # what answered the replay: "onnx" or the model's flavor
    logged: Any  # the logged response, parsed
    replayed: Any  # the replayed response, parsed (or {"error": ...} when it raised)
    max_abs_diff: float | None = None  # over every number compared
    differences: list[str] = field(default_factory=list)  # path: logged -> replayed
    different_fields: int = 0
    reasons: list[str] = field(default_factory=list)  # what changed since the request
    error: str | None = None  # the replay raised this

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def reproduced(self) -> bool:
        return self.verdict in (IDENTICAL, CLOSE)

    @property
    def exit_code(self) -> int:
        return 0 if self.reproduced else 1

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["time"] = self.time.isoformat()
        document["ref"] = self.ref
        return document


@dataclass
class _Attempt:
    runtime: str
    replayed: Any
    error: str | None


@dataclass
class _Comparison:
    verdict: str
    max_abs_diff: float | None
    differences: list[str]
    count: int


def replay(
    request_id: str,
    *,
    project: Project | None = None,
    arm: str | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    folder: str | None = None,
) -> ReplayReport:
    """Re-run the logged request `request_id` on its exact model version and compare.

    `arm` picks the record when the request was answered by several (shadow traffic); `rtol`
    and `atol` decide what counts as close.
    """
    from shipyard.predictions.query import find
    from shipyard.project import current
    from shipyard.registry.versions import get

    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidInput(f"{name} must be a number >= 0; got {value!r}")
    project = project or current()
    record = _pick(find(request_id, project=project, folder=folder), request_id, arm)
    version = get(f"{record['model']}@{record['version']}", project=project)
    logged = _parse(record["outputs"])

    attempt = _attempt(version, record, project, onnx=True)
    comparison = _compare(logged, attempt, rtol, atol)
    notes: list[str] = []  # which runtime answered: said whatever the verdict
    if comparison.verdict != IDENTICAL and version.onnx is not None:
        # ONNX answers now; the request may have been answered by the native model (or the
        # reverse): try the other runtime, and keep whichever reproduces the log better.
        other = _attempt(version, record, project, onnx=False)
        other_comparison = _compare(logged, other, rtol, atol)
        ranks = {IDENTICAL: 0, CLOSE: 1, DIFFERENT: 2}
        if ranks[other_comparison.verdict] < ranks[comparison.verdict]:
            notes.append(
                f"the native {version.flavor} model reproduces the log ({other_comparison.verdict})"
                f" where its ONNX sibling gives {comparison.verdict}: the request was answered "
                "by the native model"
            )
            attempt, comparison = other, other_comparison
        else:
            notes.append(
                f"the native {version.flavor} model does not reproduce the log either "
                f"({other_comparison.verdict}): the runtime (ONNX or not) does not explain it"
            )
    elif version.onnx is not None:
        notes.append("answered by the ONNX sibling, as the server does by default")

    reasons = list(notes)
    if comparison.verdict != IDENTICAL:
        reasons.extend(
            _hook_changes(_parse_hooks(record.get("hooks")), _current_hooks(version, project))
        )
        reasons.extend(_environment_changes(version, project))

    return ReplayReport(
        request_id=request_id,
        model=record["model"],
        version=int(record["version"]),
        arm=record["arm"],
        protocol=record["protocol"],
        time=record["time"],
        verdict=comparison.verdict,
        runtime=attempt.runtime,
        logged=logged,
        replayed=attempt.replayed,
        max_abs_diff=comparison.max_abs_diff,
        differences=comparison.differences,
        different_fields=comparison.count,
        reasons=reasons,
        error=attempt.error,
    )


def _pick(records: list[dict[str, Any]], request_id: str, arm: str | None) -> dict[str, Any]:
    arms = sorted({str(r["arm"]) for r in records})
    if arm is not None:
        chosen = [r for r in records if r["arm"] == arm]
        if not chosen:
            raise InvalidInput(
                f"request {request_id!r} was not answered by arm {arm!r}; it was by "
                f"{', '.join(arms)}"
            )
        return chosen[0]
    if len(arms) > 1:
        raise InvalidInput(
            f"request {request_id!r} was answered by {len(arms)} arms ({', '.join(arms)}); "
            "say which to replay (--arm)"
        )
    return records[0]  # the same record landed twice (at-least-once) is the same request


def _attempt(
    version: ModelVersion, record: dict[str, Any], project: Project, *, onnx: bool
) -> _Attempt:
    import orjson

    from shipyard.serving import protocols
    from shipyard.serving.predictor import Predictor

    runtime = "onnx" if onnx and version.onnx is not None else version.flavor
    predictor = Predictor.load(version.ref, project=project, onnx=onnx)
    protocol = record["protocol"]
    if protocol not in protocols.PROTOCOLS:
        raise InvalidInput(
            f"request {record['request_id']!r} was logged by {protocol!r}; replay re-runs the "
            f"server's protocols ({', '.join(protocols.PROTOCOLS)})"
        )
    body, headers = protocols.request_from_log(record["inputs"])
    try:
        response: Any = protocols.answer(
            protocol, body, predictor, headers=headers, request_id=record["request_id"]
        )
        error = None
    except ShipyardError as exc:  # the request fails now: show how, as the server would
        to_json = getattr(exc, "to_json", None)
        response = to_json() if callable(to_json) else {"error": exc.message}
        error = exc.message
    # Serialised as the server does, so numpy values, NaN and tuples compare as logged.
    replayed = orjson.loads(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY))
    return _Attempt(runtime, replayed, error)


def _current_hooks(version: ModelVersion, project: Project) -> dict[str, str]:
    from shipyard.serving.options import ModelOptions

    try:
        options = ModelOptions.from_settings(
            version.name, project.settings.serving.get(version.name)
        )
    except ShipyardError:
        return {}
    return dict(options.hooks)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_hooks(text: Any) -> dict[str, str]:
    if not text:
        return {}
    try:
        hooks = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in hooks.items()} if isinstance(hooks, dict) else {}


# -- comparing -------------------------------------------------------------------------------


@dataclass
class _State:
    close: bool = False
    different: int = 0
    max_abs: float | None = None


def _compare(logged: Any, attempt: _Attempt, rtol: float, atol: float) -> _Comparison:
    differences: list[str] = []
    state = _State()
    _walk(logged, attempt.replayed, "", differences, state, rtol, atol)
    if state.different:
        verdict = DIFFERENT
    elif state.close:
        verdict = CLOSE
    else:
        verdict = IDENTICAL
    return _Comparison(verdict, state.max_abs, differences, state.different)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _walk(
    logged: Any,
    replayed: Any,
    path: str,
    differences: list[str],
    state: _State,
    rtol: float,
    atol: float,
) -> None:
    def differ(where: str, message: str) -> None:
        state.different += 1
        if len(differences) < MAX_DIFFERENCES:
            differences.append(f"{where or '(response)'}: {message}")

    if isinstance(logged, dict) and isinstance(replayed, dict):
        for key in [*logged, *(k for k in replayed if k not in logged)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in replayed:
                differ(where, f"logged {_short(logged[key])}, missing now")
            elif key not in logged:
                differ(where, f"not logged, now {_short(replayed[key])}")
            else:
                _walk(logged[key], replayed[key], where, differences, state, rtol, atol)
        return
    if isinstance(logged, list) and isinstance(replayed, list):
        if len(logged) != len(replayed):
            differ(path, f"logged {len(logged)} items, now {len(replayed)}")
            return
        for index, (a, b) in enumerate(zip(logged, replayed, strict=True)):
            _walk(a, b, f"{path}[{index}]", differences, state, rtol, atol)
        return
    if _is_number(logged) and _is_number(replayed):
        if logged == replayed and type(logged) is type(replayed):
            return
        gap = abs(float(logged) - float(replayed))
        if math.isfinite(gap):
            state.max_abs = gap if state.max_abs is None else max(state.max_abs, gap)
        if math.isclose(float(logged), float(replayed), rel_tol=rtol, abs_tol=atol):
            state.close = True
        else:
            differ(path, f"logged {logged!r}, now {replayed!r} (difference {gap:.3g})")
        return
    if logged != replayed or type(logged) is not type(replayed):
        differ(path, f"logged {_short(logged)}, now {_short(replayed)}")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


# -- explaining ------------------------------------------------------------------------------


def _hook_changes(logged: dict[str, str], now: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(logged) | set(now)):
        before, after = logged.get(name), now.get(name)
        if before == after:
            continue
        if after is None:
            lines.append(f"hook {name!r} shaped the logged answer but is no longer configured")
        elif before is None:
            lines.append(f"hook {name!r} is configured now but did not run for the logged answer")
        else:
            lines.append(
                f"hook {name!r} changed since (code sha256 {before[:12]} then, {after[:12]} now)"
            )
    return lines


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment_changes(version: ModelVersion, project: Project) -> list[str]:
    from shipyard.tracking.environment import current_environment, describe_package_changes

    now = current_environment()
    installed = {_canonical(k): v for k, v in now.packages.items()}
    lines = []
    recorded_python = version.dependencies.get("python")
    if recorded_python and recorded_python != platform.python_version():
        lines.append(
            f"Python {recorded_python} when {version.ref} was registered, "
            f"{platform.python_version()} now"
        )
    for name, before in sorted(version.dependencies.items()):
        if name == "python":
            continue
        after = installed.get(_canonical(name))
        if after != before:
            lines.append(
                f"{name} {before} when {version.ref} was registered, "
                f"{after or 'not installed'} now (a package the model itself depends on)"
            )
    environment = _training_environment(version, project)
    if environment is not None:
        own = {_canonical(n) for n in version.dependencies}
        trained = {_canonical(k): str(v) for k, v in environment.items()}
        changes = [
            line
            for line in describe_package_changes(trained, installed)
            if _canonical(line.lstrip("+- ").split(" ")[0]) not in own
        ]
        if changes:
            shown = changes[:MAX_PACKAGE_LINES]
            more = len(changes) - len(shown)
            lines.append(
                f"packages differ from the training run's environment ({len(changes)}): "
                + "; ".join(shown)
                + (f"; and {more} more" if more else "")
            )
    return lines


def _training_environment(version: ModelVersion, project: Project) -> dict[str, Any] | None:
    from shipyard.registry.versions import run_of
    from shipyard.tracking.runs import get_environment

    run = run_of(version, project=project)
    if run is None:
        return None
    try:
        return dict(get_environment(run.environment_id, project=project).packages)
    except ShipyardError:
        return None
