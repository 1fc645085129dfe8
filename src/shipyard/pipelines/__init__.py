"""Pipelines: `@step` and `@pipeline`, the DAG traced from data flow, step caching on the code
closure, and runners (in-process, Dask)."""

from shipyard.pipelines.pipeline import Pipeline, pipeline
from shipyard.pipelines.step import Step, StepContext, step, step_context

__all__ = ["Pipeline", "Step", "StepContext", "pipeline", "step", "step_context"]
