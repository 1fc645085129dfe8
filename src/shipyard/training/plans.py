"""`[training.MODEL]`: how continuous training retrains, judges and releases one model.

    [training.weather]
    pipeline = "examples/weather_pipeline.py:weather"   # relative to the project's root folder
    params = { trees = 60 }
    dataset = "weather"          # its newest version ref ("weather@7") is passed as ...
    data_param = "data"          # ... this pipeline parameter
    policy = "champion"          # the gates the new version must pass
    auto_rollout = true          # false: the version waits for `shipyard ct approve`
    cooldown = "1h"              # at least this long between two firings of the model
    rollout = { strategy = "canary", steps = [{ weight = 10, hold = "10m" }, { weight = 100 }] }

    [[training.weather.triggers]]
    name = "nightly"
    kind = "schedule"
    cron = "0 3 * * *"

Every table is checked whole before anything runs: one `ConfigError` lists each problem with
the model, the trigger and the key, so a bad setting never leaves a firing half-recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, InvalidInput
from shipyard.registry.versions import check_model_name
from shipyard.release import spec as specs
from shipyard.training.triggers import Trigger, parse_trigger

if TYPE_CHECKING:
    from shipyard.project import Project

DEFAULT_COOLDOWN = "1h"
DEFAULT_STALE_AFTER = "6h"
_KEYS = {
    "pipeline", "params", "data_param", "dataset", "policy", "rollout", "auto_rollout",
    "cooldown", "stale_after", "triggers",
}  # fmt: skip
_FILLED_IN = ("model", "candidate")  # the rollout keys CT fills in for each new version


@dataclass(frozen=True)
class TrainingPlan:
    """What continuous training does for one model (its `[training.MODEL]` table, checked)."""

    model: str
    pipeline: str  # as declared: path/to/file.py[:name], relative to the project's root
    pipeline_target: str  # the same with an absolute path, as `load_pipeline` takes it
    params: dict[str, Any]
    data_param: str | None
    dataset: str | None
    policy: str
    rollout: dict[str, Any]  # a rollout declaration without model and candidate
    auto_rollout: bool
    cooldown_s: float
    stale_after_s: float
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)

    def rollout_spec(self, version: int) -> specs.RolloutSpec:
        """The rollout of `version`, from the template."""
        name = f"{self.rollout.get('name') or self.model}-v{version}"
        declared = {**self.rollout, "model": self.model, "candidate": version, "name": name}
        return specs.parse(declared, where=f"[training.{self.model}] rollout")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pipeline": self.pipeline,
            "params": self.params,
            "data_param": self.data_param,
            "dataset": self.dataset,
            "policy": self.policy,
            "rollout": self.rollout,
            "auto_rollout": self.auto_rollout,
            "cooldown_s": self.cooldown_s,
            "stale_after_s": self.stale_after_s,
            "triggers": [trigger.to_dict() for trigger in self.triggers],
        }


def load_plans(project: Project, model: str | None = None) -> list[TrainingPlan]:
    """The checked `[training.*]` plans of the project (only `model`'s when given)."""
    configured = project.settings.training
    if model is not None and model not in configured:
        listed = ", ".join(sorted(configured)) or "none"
        raise ConfigError(
            f"model {model!r} has no continuous training configured (configured: {listed}); "
            f"add a [training.{model}] table to {project.settings.settings_file}"
        )
    root = project.home.resolve().parent
    plans = parse_plans(configured, policies=project.settings.policies, root=root)
    return [plan for plan in plans if model is None or plan.model == model]


def parse_plans(
    training: Mapping[str, Any], *, policies: Mapping[str, Any], root: Path
) -> list[TrainingPlan]:
    """Check every model's table; raise one `ConfigError` naming every problem."""
    problems: list[str] = []
    plans = [
        plan
        for name, table in training.items()
        if (plan := _parse_plan(name, table, policies, root, problems)) is not None
    ]
    if problems:
        raise ConfigError(
            "invalid continuous-training settings: "
            + "; ".join(problems)
            + " (see docs/continuous-training.md)"
        )
    return plans


def _parse_plan(
    model: str, table: Any, policies: Mapping[str, Any], root: Path, problems: list[str]
) -> TrainingPlan | None:
    where = f"[training.{model}]"
    before = len(problems)
    try:
        check_model_name(model)
    except InvalidInput as exc:
        problems.append(f"{where}: {exc}")
    if not isinstance(table, Mapping):
        problems.append(f"{where}: expected a table, got {table!r}")
        return None
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    pipeline, target = _pipeline(table.get("pipeline"), where, root, problems)
    dataset, data_param = _data(table, where, problems)
    params = _params(table.get("params", {}), data_param, where, problems)
    policy = _policy(table.get("policy", "champion"), policies, where, problems)
    auto_rollout = table.get("auto_rollout", True)
    if not isinstance(auto_rollout, bool):
        problems.append(f"{where}: `auto_rollout` must be true or false; got {auto_rollout!r}")
    rollout = _rollout(table.get("rollout"), model, where, problems)
    cooldown = _duration(table.get("cooldown", DEFAULT_COOLDOWN), f"{where} cooldown", problems)
    stale = _duration(
        table.get("stale_after", DEFAULT_STALE_AFTER), f"{where} stale_after", problems
    )
    triggers = _triggers(table.get("triggers"), where, dataset, problems)
    if len(problems) > before:
        return None
    return TrainingPlan(
        model=model,
        pipeline=str(pipeline),
        pipeline_target=str(target),
        params=params,
        data_param=data_param,
        dataset=dataset,
        policy=str(policy),
        rollout=rollout,
        auto_rollout=bool(auto_rollout),
        cooldown_s=cooldown,
        stale_after_s=stale,
        triggers=triggers,
    )


def _pipeline(value: Any, where: str, root: Path, problems: list[str]) -> tuple[str, str]:
    example = (
        'pipeline = "pipelines/train.py:train" (a pipeline file[:name], as `shipyard run` takes it)'
    )
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: `pipeline` is required, e.g. {example}; got {value!r}")
        return "", ""
    path_text, _, name = value.partition(":") if value.count(":") == 1 else (value, "", "")
    if not path_text.endswith(".py"):
        problems.append(
            f"{where}: `pipeline` must be path/to/file.py[:name], e.g. {example}; got {value!r}"
        )
        return value, ""
    path = Path(path_text) if Path(path_text).is_absolute() else root / path_text
    if not path.is_file():
        problems.append(
            f"{where}: pipeline file {path_text!r} not found (looked for {path}; relative "
            "paths start at the project's root folder, the one holding .shipyard/)"
        )
    return value, f"{path}:{name}" if name else str(path)


def _data(
    table: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[str | None, str | None]:
    dataset, data_param = table.get("dataset"), table.get("data_param")
    for key, value in (("dataset", dataset), ("data_param", data_param)):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{where}: `{key}` must be a non-empty text; got {value!r}")
            return None, None
    if isinstance(dataset, str) and "@" in dataset:
        problems.append(
            f"{where}: `dataset` names a dataset, not a version (its newest version is used); "
            f"got {dataset!r}"
        )
    if (dataset is None) != (data_param is None):
        problems.append(
            f"{where}: set `dataset` and `data_param` together: the newest version of the "
            'dataset is passed to the pipeline as that parameter (e.g. dataset = "weather", '
            f'data_param = "data"); got dataset={dataset!r}, data_param={data_param!r}'
        )
    return dataset, data_param


def _params(value: Any, data_param: str | None, where: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        problems.append(
            f"{where}: `params` must be a table, e.g. params = {{ trees = 60 }}; got {value!r}"
        )
        return {}
    if data_param is not None and data_param in value:
        problems.append(
            f"{where}: `params` sets {data_param!r}, which continuous training fills with the "
            "newest dataset version; remove it from params"
        )
    return dict(value)


def _policy(value: Any, policies: Mapping[str, Any], where: str, problems: list[str]) -> str:
    if not isinstance(value, str) or value not in policies:
        listed = ", ".join(sorted(policies)) or "none configured"
        problems.append(
            f"{where}: `policy` {value!r} is not a configured promotion policy (policies: "
            f"{listed}); add [policies.{value}] (see docs/gates.md) or name another"
        )
    return str(value)


def _rollout(value: Any, model: str, where: str, problems: list[str]) -> dict[str, Any]:
    example = (
        'rollout = { strategy = "canary", steps = [{ weight = 10, hold = "10m" }, '
        "{ weight = 100 }] }"
    )
    if not isinstance(value, Mapping):
        problems.append(
            f"{where}: `rollout` (the rollout of each new version, as in a rollout file without "
            f"model and candidate) is required, e.g. {example}; got {value!r}"
        )
        return {}
    filled = [key for key in _FILLED_IN if key in value]
    if filled:
        problems.append(
            f"{where} rollout: {', '.join(filled)} is filled in by continuous training for "
            "each new version; remove it"
        )
        return {}
    try:  # checked now with a stand-in version, so a bad template fails before any training
        specs.parse({**value, "model": model, "candidate": 1}, where=f"{where} rollout")
    except InvalidInput as exc:
        problems.append(str(exc))
    return dict(value)


def _duration(value: Any, where: str, problems: list[str]) -> float:
    try:
        return specs.parse_duration(value, where)
    except InvalidInput as exc:
        problems.append(str(exc))
        return 0.0


def _triggers(
    value: Any, where: str, dataset: str | None, problems: list[str]
) -> tuple[Trigger, ...]:
    if not isinstance(value, list) or not value:
        problems.append(
            f"{where}: declare at least one trigger as a [[{where[1:-1]}.triggers]] table with "
            f"name and kind ({', '.join(('schedule', 'dataset', 'drift', 'slo', 'quality'))})"
        )
        return ()
    triggers = [
        trigger
        for position, raw in enumerate(value, 1)
        if (trigger := parse_trigger(raw, position, where, dataset, problems)) is not None
    ]
    names = [trigger.name for trigger in triggers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{where}: two triggers are named {name!r}; give each its own name")
    return tuple(triggers)
