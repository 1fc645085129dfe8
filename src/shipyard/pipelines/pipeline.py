"""`@pipeline`: a function whose body wires steps together; its parameters are the run's.

>>> @pipeline
... def train(depth: int = 3, data: str = "customers"):
...     frame = load(data)
...     model = fit(frame, depth=depth)
...     evaluate(model, frame)
>>> result = train.run(params={"depth": 5})

The body is traced, not executed: step calls record the DAG, then a runner executes it.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.pipelines.graph import Graph, GraphBuilder, check_literal
from shipyard.pipelines.step import _check_name, building

if TYPE_CHECKING:
    from shipyard.pipelines.result import PipelineResult
    from shipyard.pipelines.runners import Runner
    from shipyard.project import Project

SIMPLE_TYPES: dict[Any, type] = {
    int: int,
    float: float,
    str: str,
    bool: bool,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
}


class Pipeline:
    """A traced pipeline; see the module docstring."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = _check_name(name or fn.__name__, "pipeline")
        self.signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        for parameter in self.signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise InvalidInput(
                    f"pipeline {self.name}: *args/**kwargs cannot be pipeline parameters; "
                    "name each parameter"
                )

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            p.name: p.default
            for p in self.signature.parameters.values()
            if p.default is not inspect.Parameter.empty
        }

    def parameter_type(self, name: str) -> type | None:
        """The simple type (int, float, str, bool) a parameter is declared or defaulted as."""
        parameter = self.signature.parameters[name]
        declared = SIMPLE_TYPES.get(parameter.annotation)
        if declared is not None:
            return declared
        if parameter.default is not inspect.Parameter.empty and parameter.default is not None:
            return SIMPLE_TYPES.get(type(parameter.default))
        return None

    def resolve_params(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The full parameter set: defaults overridden by `given`, each checked by type."""
        given = dict(given or {})
        known = list(self.signature.parameters)
        for key in given:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                accepted = ", ".join(known) or "none"
                raise InvalidInput(
                    f"pipeline {self.name} has no parameter {key!r}{hint} (its parameters: "
                    f"{accepted})"
                )
        params = {**self.defaults, **given}
        missing = [key for key in known if key not in params]
        if missing:
            raise InvalidInput(
                f"pipeline {self.name} needs a value for {', '.join(missing)}: pass "
                + " ".join(f"--param {key}=..." for key in missing)
            )
        for key, value in params.items():
            self._check_type(key, value)
        return {key: params[key] for key in known}

    def _check_type(self, key: str, value: Any) -> None:
        expected = self.parameter_type(key)
        if expected is None:
            check_literal(self.name, key, value)
            return
        fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            fits = True
        if not fits:
            raise InvalidInput(
                f"pipeline {self.name}: parameter {key!r} must be {expected.__name__}; got "
                f"{type(value).__name__} {value!r}"
            )

    def parse_param(self, key: str, text: str) -> Any:
        """A `--param key=value` string as the parameter's type (JSON for untyped ones)."""
        if key not in self.signature.parameters:
            self.resolve_params({key: None})  # raises the unknown-parameter error
        expected = self.parameter_type(key)
        try:
            if expected is bool:
                lowered = text.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                return lowered in ("true", "1", "yes")
            if expected in (int, float, str):
                return expected(text)
        except ValueError:
            assert expected is not None
            raise InvalidInput(
                f"pipeline {self.name}: parameter {key!r} must be {expected.__name__}; got {text!r}"
            ) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def build(self, params: Mapping[str, Any]) -> Graph:
        """Trace the body with `params` into a checked DAG; no step runs."""
        builder = GraphBuilder()
        token = building.set(builder)
        try:
            self.fn(**params)
        except ShipyardError:
            raise
        except Exception as exc:
            # e.g. unpacking 2 outputs into 3 names: say so before anything runs, not as a crash.
            raise InvalidInput(
                f"pipeline {self.name}: tracing its body failed with {type(exc).__name__}: "
                f"{exc} (the body only wires steps together; their outputs have no values yet)"
            ) from exc
        finally:
            building.reset(token)
        return Graph.from_nodes(builder.nodes)

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        no_cache: bool = False,
        resume: str | None = None,
        seed: int | None = None,
        runner: Runner | str | None = None,
        project: Project | None = None,
        progress: bool | None = None,
        name: str = "",
        source: str | None = None,
        reproduces: str | None = None,
        parallel: int = 1,
        record: bool = False,
    ) -> PipelineResult:
        """Run the pipeline; see `shipyard.pipelines.execution.run_pipeline`.

        When every step's result is already in the cache there is nothing to do: no step runs,
        no run is recorded, and the result (status "up-to-date") says where each step's result
        came from. `no_cache=True` always runs; `record=True` records a run (of cached steps)
        even when there is nothing to do.
        """
        if not (no_cache or record) and resume is None:
            done = self._up_to_date(params, seed, project, progress)
            if done is not None:
                return done
        from shipyard.pipelines.execution import run_pipeline

        return run_pipeline(
            self,
            params,
            no_cache=no_cache,
            resume=resume,
            seed=seed,
            runner=runner,
            project=project,
            progress=progress,
            name=name,
            source=source,
            reproduces=reproduces,
            parallel=parallel,
        )

    def _up_to_date(
        self,
        params: Mapping[str, Any] | None,
        seed: int | None,
        project: Project | None,
        progress: bool | None,
    ) -> PipelineResult | None:
        from shipyard.home import current_home, local_artifact_folder
        from shipyard.pipelines.cache import DEFAULT_SEED, up_to_date
        from shipyard.pipelines.result import UP_TO_DATE, PipelineResult, StepReport
        from shipyard.tracking.values import StoredValue

        if project is not None:
            home = project.home
            folder = Path(project.artifacts.root) if project.artifacts.is_local else None
        else:
            home = current_home()
            folder = local_artifact_folder(home)
        found = up_to_date(self, params, seed, home, folder)
        if found is None:
            return None
        resolved, entries = found
        steps = {
            name: StepReport(
                name,
                "cached",
                f"cached from run {entry.run_id[:12]}",
                entry.run_id,
                0.0,
                {key: StoredValue.from_json(doc) for key, doc in entry.outputs.items()},
            )
            for name, entry in entries.items()
        }
        if progress is not False:
            from shipyard.pipelines.progress import show_up_to_date

            show_up_to_date(self.name, {name: entry.run_id for name, entry in entries.items()})
        run_seed = DEFAULT_SEED if seed is None else seed
        return PipelineResult(None, self.name, UP_TO_DATE, resolved, run_seed, steps, project)


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make a function a pipeline: `@pipeline` or `@pipeline(name="train")`."""
    if fn is not None:
        return Pipeline(fn)
    return lambda function: Pipeline(function, name=name)
