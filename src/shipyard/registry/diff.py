"""What changed between two model versions: signature, flavor, params, metrics, data, packages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.project import Project, current
from shipyard.registry.versions import ModelVersion, get


@dataclass(frozen=True)
class ValueChange:
    key: str
    before: Any
    after: Any


@dataclass
class ModelDiff:
    """`models diff A B`: everything that differs, part by part."""

    a: str
    b: str
    flavor: tuple[str, str] | None
    signature: list[str]
    params: list[ValueChange] = field(default_factory=list)
    metrics: list[ValueChange] = field(default_factory=list)
    datasets: tuple[list[str], list[str]] = ([], [])  # only in A, only in B
    dependencies: list[ValueChange] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (
            self.flavor
            or self.signature
            or self.params
            or self.metrics
            or any(self.datasets)
            or self.dependencies
        )


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[ValueChange]:
    return [
        ValueChange(key, before.get(key), after.get(key))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _signature_changes(a: ModelVersion, b: ModelVersion) -> list[str]:
    left, right = a.signature, b.signature
    if left is None and right is None:
        return []
    if left is None or right is None:
        return [f"signature {'added' if left is None else 'removed'}"]
    return left.describe_differences(right)


def diff(a: str, b: str, *, project: Project | None = None) -> ModelDiff:
    """The differences between versions `a` and `b` (`name@3`, `name@champion`, ...)."""
    project = project or current()
    left, right = get(a, project=project), get(b, project=project)
    only_a = sorted(set(left.datasets) - set(right.datasets))
    only_b = sorted(set(right.datasets) - set(left.datasets))
    return ModelDiff(
        a=left.ref,
        b=right.ref,
        flavor=None if left.flavor == right.flavor else (left.flavor, right.flavor),
        signature=_signature_changes(left, right),
        params=_changes(left.params, right.params),
        metrics=_changes(left.metrics, right.metrics),
        datasets=(only_a, only_b),
        dependencies=_changes(left.dependencies, right.dependencies),
    )
