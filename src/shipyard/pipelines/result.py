"""What running a pipeline returns: the run (if one was recorded) and each step's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.tracking.values import StoredValue, load_value

if TYPE_CHECKING:
    from shipyard.project import Project

UP_TO_DATE = "up-to-date"


@dataclass
class StepReport:
    """How one step went in a run."""

    name: str
    status: str  # finished | cached | failed | skipped
    reason: str  # why it ran, or where its cached result came from
    cached_from: str | None = None
    seconds: float = 0.0
    outputs: dict[str, StoredValue] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """A pipeline run: its id, status, and each step's report.

    A re-run with every step in the cache is a no-op (status "up-to-date"): it records no run,
    so `run_id` is None and each step's `cached_from` names the run that produced its result.
    """

    run_id: str | None
    pipeline: str
    status: str
    params: dict[str, Any]
    seed: int
    steps: dict[str, StepReport]
    project: Project | None = None

    @property
    def executed(self) -> list[str]:
        return [name for name, report in self.steps.items() if report.status == "finished"]

    @property
    def cached(self) -> list[str]:
        return [name for name, report in self.steps.items() if report.status == "cached"]

    def output(self, step: str, name: str | None = None) -> Any:
        """Load the output of a step (its only output when `name` is omitted)."""
        if step not in self.steps:
            raise InvalidInput(f"no step {step!r} in this run; steps: {', '.join(self.steps)}")
        outputs = self.steps[step].outputs
        if name is None:
            if len(outputs) != 1:
                raise InvalidInput(f"step {step} has outputs {', '.join(outputs)}: name one")
            (name,) = outputs
        if name not in outputs:
            raise InvalidInput(f"step {step} has no output {name!r}: {', '.join(outputs)}")
        if self.project is None:
            from shipyard.project import current

            self.project = current()
        return load_value(outputs[name], self.project)
