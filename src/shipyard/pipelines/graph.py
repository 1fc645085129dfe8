"""The DAG of a pipeline, traced from its body: nodes are step calls, edges follow the data.

Everything that can be known before a step runs is checked here: arguments that do not fit
the step's signature, literal arguments that cannot be hashed into a cache key, cycles.
"""

from __future__ import annotations

import graphlib
import inspect
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.pipelines.step import Step, StepOutput


@dataclass(frozen=True)
class Node:
    """One call of a step in the pipeline body."""

    name: str
    step: Step
    arguments: dict[str, Any]  # parameter -> StepOutput | literal
    mapped: Any = None  # items (list or StepOutput) when the step maps over its first parameter
    map_parameter: str | None = None

    def upstream(self) -> set[str]:
        found = {value.node for value in _outputs_in(self.arguments.values())}
        if isinstance(self.mapped, StepOutput):
            found.add(self.mapped.node)
        return found

    def literals(self) -> dict[str, Any]:
        return {k: v for k, v in self.arguments.items() if not isinstance(v, StepOutput)}


def _outputs_in(values: Any) -> Iterator[StepOutput]:
    for value in values:
        if isinstance(value, StepOutput):
            yield value


def is_dataset_version(value: Any) -> bool:
    # Without importing shipyard.data (pandas, pyarrow: a second of start-up on a cached run):
    # if it was never imported, no value can be one of its versions.
    versions = sys.modules.get("shipyard.data.versions")
    return versions is not None and isinstance(value, versions.DatasetVersion)


def canonical_literal(value: Any) -> Any:
    """A JSON form of a literal argument, for cache keys; dataset versions by content hash."""
    if is_dataset_version(value):
        return {"dataset": value.ref, "content_hash": value.content_hash}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def check_literal(step: str, parameter: str, value: Any) -> None:
    try:
        json.dumps(canonical_literal(value), sort_keys=True, default=_refuse)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"argument {parameter!r} of step {step!r} is a {type(value).__name__}: a step's "
            "literal arguments must be JSON values or dataset versions; pass data from one "
            "step to another instead"
        ) from None


def _refuse(value: Any) -> Any:
    if is_dataset_version(value):
        return canonical_literal(value)
    raise TypeError(type(value).__name__)


@dataclass
class GraphBuilder:
    """Collects step calls while a pipeline body runs."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], mapped: Any) -> Any:
        name = self._unique_name(step.name)
        map_parameter = None
        if mapped is not None:
            map_parameter = step.map_parameter(kwargs)
            if not isinstance(mapped, StepOutput):
                if not isinstance(mapped, list | tuple):
                    raise InvalidInput(
                        f"{step.name}.map() takes a list of items or a step output; "
                        f"got {type(mapped).__name__}"
                    )
                for index, item in enumerate(mapped):
                    check_literal(step.name, f"{map_parameter}[{index}]", item)
                mapped = list(mapped)
            kwargs = {map_parameter: None, **kwargs}
        arguments = self._bind(step, args, kwargs)
        if map_parameter is not None:
            del arguments[map_parameter]
        for parameter, value in arguments.items():
            if not isinstance(value, StepOutput):
                check_literal(step.name, parameter, value)
            elif value.node not in self.nodes:
                raise InvalidInput(f"{value!r} comes from another pipeline")
        self.nodes[name] = Node(name, step, arguments, mapped, map_parameter)
        outputs = tuple(StepOutput(name, output) for output in step.outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def _unique_name(self, base: str) -> str:
        name, index = base, 2
        while name in self.nodes:
            name, index = f"{base}_{index}", index + 1
        return name

    @staticmethod
    def _bind(step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"step {step.name}{step.signature}: {exc}") from None
        kinds = {p.name: p.kind for p in step.signature.parameters.values()}
        if any(kinds[n] in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
               for n in bound.arguments):  # fmt: skip
            raise InvalidInput(f"step {step.name}: *args and **kwargs cannot be step inputs")
        bound.apply_defaults()
        return dict(bound.arguments)


@dataclass(frozen=True)
class Graph:
    """A checked DAG: nodes in a topological order."""

    nodes: dict[str, Node]
    order: tuple[str, ...]

    @classmethod
    def from_nodes(cls, nodes: dict[str, Node]) -> Graph:
        if not nodes:
            raise InvalidInput("the pipeline calls no step: call at least one @step in its body")
        sorter = graphlib.TopologicalSorter({name: node.upstream() for name, node in nodes.items()})
        try:
            order = tuple(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise InvalidInput(f"the pipeline's steps form a cycle: {cycle}") from None
        unknown = {up for node in nodes.values() for up in node.upstream()} - set(nodes)
        if unknown:
            raise InvalidInput(f"steps depend on unknown steps: {', '.join(sorted(unknown))}")
        return cls(nodes, order)

    def downstream(self, name: str) -> set[str]:
        """Every node that depends on `name`, however indirectly."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for other, node in self.nodes.items():
                if current in node.upstream() and other not in found:
                    found.add(other)
                    frontier.append(other)
        return found
