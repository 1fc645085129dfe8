"""`@step`: a plain Python function that a pipeline runs, caches and records.

Outside a pipeline a step is just its function: calling it calls the function. Inside a
`@pipeline` body, calling a step records a node of the DAG and returns placeholders for its
outputs; passing a placeholder to another step is what makes an edge.

>>> @step
... def clean(frame: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame: ...
>>> @step(outputs=("train", "test"))
... def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]: ...
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.pipelines.graph import GraphBuilder

DEFAULT_OUTPUT = "output"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")

# The pipeline whose body is being traced, if any.
building: ContextVar[GraphBuilder | None] = ContextVar("shipyard_building", default=None)


class Step:
    """A function made into a pipeline step; see the module docstring."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        cache: bool = True,
        outputs: tuple[str, ...] | None = None,
    ) -> None:
        if not callable(fn) or inspect.isclass(fn):
            raise InvalidInput(f"@step decorates a function; got {fn!r}")
        functools.update_wrapper(self, fn)  # also sets __wrapped__, which fingerprints follow
        self.fn = fn
        self.name = _check_name(name or fn.__name__, "step")
        self.cache = cache
        self.outputs = _check_outputs(outputs)
        self.signature = inspect.signature(fn)

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = building.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add(self, args, kwargs, mapped=None)

    def map(self, items: Any, /, **fixed: Any) -> Any:
        """Run the step once per item of `items`, fanning out on the runner; the output is the
        list of results, in order. The items go to the first parameter not given in `fixed`.

        >>> scores = evaluate.map([{"depth": d} for d in (2, 4, 8)], data=train_set)
        """
        over = self.map_parameter(fixed)
        builder = building.get()
        if builder is None:
            return [self.fn(**{over: item}, **fixed) for item in items]
        return builder.add(self, (), fixed, mapped=items)

    def map_parameter(self, fixed: dict[str, Any]) -> str:
        """The parameter that `map` feeds: the first one not bound by `fixed`."""
        for parameter in self.signature.parameters.values():
            if parameter.name not in fixed and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD,
                parameter.KEYWORD_ONLY,
            ):
                return parameter.name
        raise InvalidInput(
            f"step {self.name}.map(): every parameter is already given, none is left to map over"
        )


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{what} name {name!r} is not valid: use letters, digits, '_', '.' and '-', "
            "starting with a letter or '_'"
        )
    return name


def _check_outputs(outputs: tuple[str, ...] | None) -> tuple[str, ...]:
    if outputs is None:
        return (DEFAULT_OUTPUT,)
    if isinstance(outputs, str) or not outputs:
        raise InvalidInput(
            f"outputs= takes a tuple of names, e.g. ('train', 'test'); got {outputs!r}"
        )
    names = tuple(_check_name(item, "output") for item in outputs)
    if len(set(names)) != len(names):
        raise InvalidInput(f"output names must be unique; got {outputs!r}")
    return names


@overload
def step(fn: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *, name: str | None = None, cache: bool = True, outputs: tuple[str, ...] | None = None
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    outputs: tuple[str, ...] | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a pipeline step: `@step` or `@step(cache=False, outputs=("a", "b"))`."""
    if fn is not None:
        return Step(fn)
    return lambda function: Step(function, name=name, cache=cache, outputs=outputs)


@dataclass(frozen=True)
class StepOutput:
    """A placeholder for one output of a step call, while a pipeline body is traced."""

    node: str
    output: str

    def __repr__(self) -> str:
        return f"<output {self.output!r} of step {self.node}>"

    def __bool__(self) -> bool:
        raise InvalidInput(
            f"{self!r} has no value while the pipeline is being defined: branch inside a step, "
            "not in the pipeline body"
        )

    def __iter__(self) -> Any:
        raise InvalidInput(
            f"{self!r} is one value: declare several with @step(outputs=(...)) to unpack them"
        )


@dataclass
class StepContext:
    """What a running step can ask about itself: `shipyard.pipelines.step_context()`."""

    step: str
    run_id: str
    seed: int
    logged: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    # The pipeline's project when the step runs in-process; None on a Dask worker, where
    # shipyard opens the project from its settings (SHIPYARD_HOME, ...) like any process.
    project: Any = None

    # The same logging calls as a run: recorded here and written to the pipeline's run by
    # the driver, so steps log the same way in-process and on Dask workers.
    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.logged.append(("metric", key, value, step))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_param(self, key: str, value: Any) -> None:
        self.logged.append(("param", key, value, None))

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.log_param(key, value)

    def set_tag(self, key: str, value: Any) -> None:
        self.logged.append(("tag", key, str(value), None))


_context: ContextVar[StepContext | None] = ContextVar("shipyard_step_context", default=None)


def step_context() -> StepContext:
    """The running step's context (its name, seed and run id)."""
    context = _context.get()
    if context is None:
        raise InvalidInput("step_context() is only available while a pipeline step runs")
    return context
