"""A pipeline step that registers the model it is given, so training and registration are one
pipeline and the version records the run, its data and its metrics.

>>> register_churn = registering("churn", target="churned")
>>> @pipeline
... def train(data: str = "customers@1"):
...     version = load(data)
...     register_churn(fit(version), training_data=version)
"""

from __future__ import annotations

from typing import Any

from shipyard.pipelines.step import Step, step_context
from shipyard.registry.versions import check_model_name, register


def registering(name: str, *, target: str | None = None, description: str = "") -> Step:
    """A step registering its `model` input as a version of `name`; its output is the ref.

    The signature is inferred from `training_data` (minus `target`) when it is given; the
    metrics of `evaluation` (e.g. a step's `{"auc": ...}` output) are recorded with the version
    on top of what the run logged, and make the registration wait for that step. Caching is
    off: registering is the point of the step (registering the same files again is harmless,
    it gives back the same version).
    """
    check_model_name(name)

    def register_model(
        model: Any, training_data: Any = None, evaluation: dict[str, float] | None = None
    ) -> str:
        context = step_context()
        for key, value in (evaluation or {}).items():
            context.log_metric(key, value)
        version = register(
            model,
            name,
            run=context.run_id,
            training_data=training_data,
            target=target,
            description=description,
            source="pipeline",
            project=context.project,
            metrics=evaluation,
        )
        return version.ref

    return Step(register_model, name=f"register_{name.replace('.', '_')}", cache=False)
