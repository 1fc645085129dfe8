"""Running a pipeline: trace the DAG, then for each step reuse a cached result or execute it.

A step's cache key hashes four parts, and every step run stores them, so that a step that runs
again can say which part changed:

- code: the step's code closure (its source and the project functions, classes and constants it
  reaches, however deep; see `fingerprint`);
- params: its literal arguments (dataset versions by content hash);
- inputs: the sha256 of each upstream output it takes;
- deps: the locked dependency set (the lock file's hash, else the installed packages).

The driver (this process) stores every output in the artifact store and records every step in
the metadata store; runners only execute functions.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.pipelines.cache import (
    DEFAULT_SEED,
    CacheEntry,
    StepKey,
    dependency_hash,
    step_key,
    write_entry,
)
from shipyard.pipelines.fingerprint import CodeFingerprint, describe_changes, fingerprint
from shipyard.pipelines.graph import Graph, Node, canonical_literal, is_dataset_version
from shipyard.pipelines.progress import RunDisplay
from shipyard.pipelines.result import PipelineResult, StepReport
from shipyard.pipelines.runners import (
    InProcessRunner,
    Runner,
    StepTask,
    TaskResult,
    execute_task,
    make_runner,
    project_modules,
)
from shipyard.pipelines.step import StepOutput
from shipyard.project import Project, current
from shipyard.store.models import DatasetVersionRecord, RunRecord, StepRunRecord, utcnow
from shipyard.tracking.environment import code_state
from shipyard.tracking.runs import Run, RunOrigin, get_run, start_run
from shipyard.tracking.seeds import derive_seed
from shipyard.tracking.values import StoredValue, load_value, store_value

if TYPE_CHECKING:
    from shipyard.pipelines.pipeline import Pipeline

DONE = ("finished", "cached")
RECENT_FOR_REASONS = 20  # earlier runs of a step searched for the closest key


class StepFailed(ShipyardError):
    """A step raised; the run is recorded as failed and can be resumed."""

    exit_code = 1

    def __init__(self, message: str, *, run_id: str, step: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step


class _Execution:
    """One run of one pipeline; `run()` drives the DAG to the end."""

    def __init__(
        self,
        pipeline: Pipeline,
        graph: Graph,
        run: Run,
        runner: Runner,
        display: RunDisplay,
        *,
        no_cache: bool,
        resume_steps: dict[str, StepRunRecord],
        fingerprints: dict[str, CodeFingerprint],
        deps: str,
    ) -> None:
        self.pipeline = pipeline
        self.graph = graph
        self.run = run
        self.project = run.project
        self.runner = runner
        self.display = display
        self.no_cache = no_cache
        self.resume_steps = resume_steps
        self.fingerprints = fingerprints
        self.deps = deps
        self.reports: dict[str, StepReport] = {}
        self.loaded: dict[str, Any] = {}  # digest -> value, so a value is loaded once per run
        self.failed_exception: BaseException | None = None
        self.failed_traceback: str | None = None
        # Steps whose key matched an earlier run whose outputs are gone from the artifact store.
        self.outputs_gone: set[str] = set()

    # -- planning ---------------------------------------------------------------------------

    def plan(self, node: Node) -> StepKey:
        return step_key(
            node,
            self.fingerprints[node.name],
            lambda output: self._upstream_value(output).digest,
            self.deps,
            self.run.seed,
        )

    def _upstream_value(self, output: StepOutput) -> StoredValue:
        return self.reports[output.node].outputs[output.output]

    # -- the cache --------------------------------------------------------------------------

    def find_reusable(self, node: Node, planned: StepKey) -> StepRunRecord | None:
        earlier = self.resume_steps.get(node.name)
        if earlier is not None and earlier.cache_key == planned.key and self._intact(earlier):
            return earlier
        if self.no_cache or not node.step.cache:
            return None
        with self.project.metadata.read() as session:
            candidates = session.scalars(
                select(StepRunRecord)
                .where(StepRunRecord.cache_key == planned.key, StepRunRecord.status.in_(DONE))
                .order_by(StepRunRecord.id.desc())
                .limit(5)
            ).all()
        found = next((record for record in candidates if self._intact(record)), None)
        if found is None and candidates:
            self.outputs_gone.add(node.name)
        return found

    def _intact(self, record: StepRunRecord) -> bool:
        """Every output of the earlier step run is still in the artifact store."""
        for document in record.outputs.get("values", {}).values():
            stored = StoredValue.from_json(document)
            if stored.kind != "dataset" and not self.project.artifacts.exists(stored.digest):
                return False
        return True

    def why_it_runs(self, node: Node, planned: StepKey) -> str:
        if self.no_cache:
            return "--no-cache"
        if not node.step.cache:
            return "caching is off for this step"
        if node.name in self.outputs_gone:
            # The key matched: comparing with the latest run would name an unrelated change.
            return "its cached outputs are no longer in the artifact store"
        previous = self._closest_record(node.name, planned)
        if previous is None:
            return "first run of this step"
        return _describe_key_change(previous.key_parts, planned.parts) or (
            "its cached outputs are no longer in the artifact store"
        )

    def _closest_record(self, step: str, planned: StepKey) -> StepRunRecord | None:
        """Of this step's recent runs, the one whose key differs in the fewest parts: what
        changed since it is the most useful answer to "why does this step run?"."""
        with self.project.metadata.read() as session:
            recent = session.scalars(
                select(StepRunRecord)
                .join(RunRecord, RunRecord.id == StepRunRecord.run_id)
                .where(
                    RunRecord.pipeline == self.pipeline.name,
                    StepRunRecord.step == step,
                    StepRunRecord.status.in_(DONE),
                )
                .order_by(StepRunRecord.id.desc())
                .limit(RECENT_FOR_REASONS)
            ).all()
        if not recent:
            return None
        return min(recent, key=lambda record: _count_key_changes(record.key_parts, planned.parts))

    # -- executing --------------------------------------------------------------------------

    def task_for(self, node: Node) -> list[StepTask]:
        # What earlier steps logged is written before this one starts: a step that reads the
        # run (registering a model copies its metrics and inputs) sees all of it.
        self.run.flush()
        seed = derive_seed(self.run.seed, node.name)
        kwargs = {
            parameter: self._load(value) if isinstance(value, StepOutput) else value
            for parameter, value in node.arguments.items()
        }
        if node.mapped is None:
            return [StepTask(node.name, node.step.fn, kwargs, seed, self.run.id, self._local)]
        items = self._load(node.mapped) if isinstance(node.mapped, StepOutput) else node.mapped
        if not isinstance(items, list | tuple):
            raise InvalidInput(
                f"step {node.name} maps over the output of {node.mapped.node}, which is a "
                f"{type(items).__name__}, not a list"
            )
        assert node.map_parameter is not None
        return [
            StepTask(
                f"{node.name}[{index}]",
                node.step.fn,
                {node.map_parameter: item, **kwargs},
                derive_seed(seed, str(index)),
                self.run.id,
                self._local,
            )
            for index, item in enumerate(items)
        ]

    @property
    def _local(self) -> Project | None:
        """The project, for steps that run in this process (a Dask worker opens its own)."""
        return self.project if isinstance(self.runner, InProcessRunner) else None

    def _load(self, output: StepOutput) -> Any:
        stored = self._upstream_value(output)
        if stored.digest not in self.loaded:
            self.loaded[stored.digest] = load_value(stored, self.project)
        return self.loaded[stored.digest]

    def store_outputs(self, node: Node, value: Any) -> dict[str, StoredValue]:
        names = node.step.outputs
        if len(names) == 1:
            values = [value]
        else:
            if not isinstance(value, tuple | list) or len(value) != len(names):
                raise InvalidInput(
                    f"step {node.name} declares {len(names)} outputs ({', '.join(names)}) but "
                    f"returned {_describe_value(value)}"
                )
            values = list(value)
        stored = {}
        for name, item in zip(names, values, strict=True):
            try:
                stored[name] = store_value(item, self.project)
            except InvalidInput as exc:
                raise InvalidInput(f"step {node.name} output {name!r}: {exc}") from None
        return stored

    def record(
        self,
        node: Node,
        planned: StepKey,
        status: str,
        *,
        outputs: dict[str, StoredValue] | None = None,
        logged: list[Any] | None = None,
        cached_from: str | None = None,
        error: str | None = None,
        started: Any = None,
    ) -> None:
        values = {name: item.to_json() for name, item in (outputs or {}).items()}
        logged_lists = [list(entry) for entry in logged or []]
        document = {"values": values, "logged": logged_lists}
        with self.project.metadata.write() as session:
            session.add(
                StepRunRecord(
                    run_id=self.run.id,
                    step=node.name,
                    cache_key=planned.key,
                    key_parts=planned.parts,
                    status=status,
                    cached_from=cached_from,
                    outputs=document,
                    seed=derive_seed(self.run.seed, node.name),
                    started_at=started or utcnow(),
                    ended_at=utcnow(),
                    error=error,
                )
            )
        if status in DONE:
            write_entry(
                self.project.home,
                CacheEntry(
                    key=planned.key,
                    step=node.name,
                    run_id=cached_from or self.run.id,
                    outputs=values,
                    logged=logged_lists,
                ),
            )
        for name, item in (outputs or {}).items():
            self.run.record_stored("output", f"{node.name}.{name}", item, step=node.name)
            if item.kind == "dataset" and not self._created_here(item):
                # A step that hands on an existing dataset version is how a pipeline reads it.
                self.run.record_stored("input", f"{node.name}.{name}", item, step=node.name)
        for name, value in node.literals().items():
            _record_dataset_input(self.run, node, name, value)

    def _created_here(self, item: StoredValue) -> bool:
        with self.project.metadata.read() as session:
            creators = session.scalars(
                select(DatasetVersionRecord.run_id).where(
                    DatasetVersionRecord.artifact == item.digest
                )
            ).all()
        return self.run.id in creators

    def replay_logged(self, logged: list[Any]) -> None:
        for kind, key, value, at in logged:
            if kind == "metric":
                self.run.log_metric(key, value, at)
            elif kind == "param":
                self.run.log_param(key, value)
            else:
                self.run.set_tag(key, value)


def _record_dataset_input(run: Run, node: Node, name: str, value: Any) -> None:
    if is_dataset_version(value):
        stored = StoredValue(
            "dataset",
            value.artifact,
            value.size_bytes,
            {"ref": value.ref, "content_hash": value.content_hash},
        )
        run.record_stored("input", f"{node.name}.{name}", stored, step=node.name)


def _describe_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _count_key_changes(old: dict[str, Any], new: dict[str, Any]) -> int:
    parts = ("code", "deps", "seed", "outputs")
    changed = sum(1 for part in parts if old.get(part) != new.get(part))
    for part in ("params", "inputs"):
        before: dict[str, Any] = old.get(part, {})
        after: dict[str, Any] = new.get(part, {})
        changed += sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k))
    return changed


def _describe_key_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    reasons = []
    if old.get("code") != new.get("code"):
        changes = describe_changes(old.get("code_parts", {}), new.get("code_parts", {}))
        reasons.append("code changed: " + ("; ".join(changes) or "the step's code"))
    old_params, new_params = old.get("params", {}), new.get("params", {})
    for key in sorted(set(old_params) | set(new_params)):
        if old_params.get(key) != new_params.get(key):
            before = json.dumps(old_params.get(key))
            after = json.dumps(new_params.get(key))
            reasons.append(f"parameter {key}: {before} -> {after}")
    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    changed_inputs = [k for k in sorted(set(old_inputs) | set(new_inputs))
                      if old_inputs.get(k) != new_inputs.get(k)]  # fmt: skip
    if changed_inputs:
        reasons.append(f"input changed: {', '.join(changed_inputs)}")
    if old.get("deps") != new.get("deps"):
        reasons.append("dependencies changed (lock file or installed packages)")
    if old.get("seed") != new.get("seed"):
        reasons.append(f"seed changed: {old.get('seed')} -> {new.get('seed')}")
    if old.get("outputs") != new.get("outputs"):
        reasons.append("declared outputs changed")
    return "; ".join(reasons)


def _drive(execution: _Execution) -> str:
    """Run the DAG: reuse or submit each ready step; stop submitting after a failure."""
    graph, display = execution.graph, execution.display
    executor = execution.runner.executor()
    remaining = {name: set(graph.nodes[name].upstream()) for name in graph.order}
    in_flight: dict[Future[Any], tuple[Node, StepKey, list[Future[Any]], Any]] = {}
    failure: str | None = None

    def start_ready() -> None:
        # Reusing a cached step makes its dependents ready at once: loop until none is.
        while ready := [n for n, waits in remaining.items() if not waits]:
            start_each(ready)

    def start_each(ready: list[str]) -> None:
        for name in ready:
            del remaining[name]
            node = graph.nodes[name]
            planned = execution.plan(node)
            reusable = execution.find_reusable(node, planned)
            if reusable is not None:
                _reuse(execution, node, planned, reusable)
                _mark_done(remaining, name)
                continue
            reason = execution.why_it_runs(node, planned)
            display.started(name, reason)
            futures = [executor.submit(execute_task, t) for t in execution.task_for(node)]
            in_flight[futures[0]] = (node, planned, futures, (utcnow(), reason))

    start_ready()
    while in_flight:
        wait([f for group in in_flight.values() for f in group[2]], return_when=FIRST_COMPLETED)
        for first, (node, planned, futures, (started, reason)) in list(in_flight.items()):
            if not all(f.done() for f in futures):
                continue
            del in_flight[first]
            problem = _finish(execution, node, planned, futures, started, reason)
            if problem is None:
                _mark_done(remaining, node.name)
            elif failure is None:
                failure = problem
        if failure is None:
            start_ready()
    for name in remaining:
        execution.reports[name] = StepReport(name, "skipped", "an upstream step failed")
        display.skipped(name)
    return failure or ""


def _mark_done(remaining: dict[str, set[str]], name: str) -> None:
    for waits in remaining.values():
        waits.discard(name)


def _reuse(execution: _Execution, node: Node, planned: StepKey, record: StepRunRecord) -> None:
    source = record.cached_from or record.run_id
    outputs = {
        name: StoredValue.from_json(doc) for name, doc in record.outputs.get("values", {}).items()
    }
    logged = [tuple(entry) for entry in record.outputs.get("logged", [])]
    execution.record(node, planned, "cached", outputs=outputs, logged=logged, cached_from=source)
    execution.replay_logged(logged)
    execution.reports[node.name] = StepReport(
        node.name, "cached", f"cached from run {source[:12]}", source, 0.0, outputs
    )
    execution.display.cached(node.name, source)


def _finish(
    execution: _Execution,
    node: Node,
    planned: StepKey,
    futures: list[Future[Any]],
    started: Any,
    reason: str,
) -> str | None:
    results: list[TaskResult] = []
    for future in futures:
        try:
            results.append(future.result())
        except Exception as exc:
            results.append(TaskResult(error=str(exc), error_type=type(exc).__name__,
                                      traceback=str(exc)))  # fmt: skip
    logged = [entry for result in results for entry in result.logged]
    seconds = sum(result.seconds for result in results)
    failed = next((result for result in results if result.error_type is not None), None)
    outputs: dict[str, StoredValue] = {}
    if failed is None:
        if node.mapped is None:
            value = results[0].value
        else:
            value = [_as_if_sent(r.value, execution.runner) for r in results]
        try:
            outputs = execution.store_outputs(node, value)
        except InvalidInput as exc:
            failed = TaskResult(error=str(exc), error_type="InvalidInput", traceback=str(exc))
    if failed is not None:
        message = _failure_message(execution, node, failed)
        execution.record(node, planned, "failed", logged=logged, error=failed.traceback,
                         started=started)  # fmt: skip
        execution.replay_logged(logged)
        execution.reports[node.name] = StepReport(node.name, "failed", message, None, seconds)
        execution.display.failed(node.name, f"{failed.error_type}: {failed.error}")
        execution.failed_exception = failed.exception
        execution.failed_traceback = failed.traceback
        return message
    execution.record(node, planned, "finished", outputs=outputs, logged=logged, started=started)
    execution.replay_logged(logged)
    execution.reports[node.name] = StepReport(node.name, "finished", reason, None, seconds, outputs)
    execution.display.finished(node.name, seconds)
    return None


def _as_if_sent(value: Any, runner: Runner) -> Any:
    """A shard's result as a Dask worker would hand it back: through one pickling.

    The list of a mapped step's results is stored as one value; a pickle's bytes depend on
    which objects are shared in memory, and results that each crossed the wire share nothing.
    Sending in-process results through the same round trip makes the stored bytes (so the
    cache key of every step downstream) the same on every runner.
    """
    if not isinstance(runner, InProcessRunner):
        return value
    try:
        return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return value


def _failure_message(execution: _Execution, node: Node, failed: TaskResult) -> str:
    inputs = []
    for parameter, value in node.arguments.items():
        if isinstance(value, StepOutput):
            stored = execution._upstream_value(value)
            inputs.append(f"{parameter}=<{stored.kind} from step {value.node}>")
        else:
            inputs.append(f"{parameter}={canonical_literal(value)!r}")
    return (
        f"step {node.name} failed: {failed.error_type}: {failed.error}\n"
        f"  inputs: {', '.join(inputs) or 'none'}\n"
        f"  run {execution.run.id} is recorded as failed with the traceback; fix the step and "
        f"resume it with `shipyard run ... --resume {execution.run.id}`"
    )


def _resume_steps(project: Project, run_id: str, pipeline: Pipeline) -> dict[str, StepRunRecord]:
    info = get_run(run_id, project=project)
    if info.pipeline != pipeline.name:
        raise InvalidInput(
            f"run {info.id} is not a run of pipeline {pipeline.name} "
            f"({info.pipeline or 'a tracked run'}); resume it with its own pipeline"
        )
    if info.status == "finished":
        raise InvalidInput(f"run {info.id} finished; there is nothing to resume")
    with project.metadata.read() as session:
        records = session.scalars(
            select(StepRunRecord).where(
                StepRunRecord.run_id == info.id, StepRunRecord.status.in_(DONE)
            )
        ).all()
    return {record.step: record for record in records}


def run_pipeline(
    pipeline: Pipeline,
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
) -> PipelineResult:
    """Run `pipeline`: cached steps are reused, the others executed by `runner`.

    `resume=RUN` continues a failed run: its parameters and seed are reused and the steps it
    completed are not redone. Raises `StepFailed` when a step fails (the run is recorded).
    """
    project = project or current()
    resume_steps: dict[str, StepRunRecord] = {}
    if resume is not None:
        earlier = get_run(resume, project=project)
        resume_steps = _resume_steps(project, earlier.id, pipeline)
        if params and dict(params) != {k: earlier.params.get(k) for k in params}:
            raise InvalidInput(
                f"a resumed run keeps the parameters of run {earlier.id}; start a new run to "
                "change them"
            )
        params, seed, resume = earlier.params, earlier.seed, earlier.id
    seed = DEFAULT_SEED if seed is None else seed
    resolved = pipeline.resolve_params(params)
    graph = pipeline.build(resolved)
    code_root = Path(code_state().root)
    source = source or _source_file(pipeline, code_root)
    fingerprints = {name: fingerprint(node.step.fn) for name, node in graph.nodes.items()}
    deps = dependency_hash()
    active_runner = make_runner(runner, parallel=parallel)
    display = RunDisplay(pipeline.name, list(graph.order), enabled=progress)
    try:
        active_runner.prepare(project_modules(code_root) + _step_modules(graph))
        run = start_run(
            name or pipeline.name,
            params=resolved,
            seed=seed,
            project=project,
            origin=RunOrigin(
                kind="pipeline",
                pipeline=pipeline.name,
                source=source,
                resumed_from=resume,
                reproduces=reproduces,
                seed_process=False,
            ),
        )
        display.begin(run.id, active_runner.name)
        execution = _Execution(
            pipeline, graph, run, active_runner, display,
            no_cache=no_cache, resume_steps=resume_steps, fingerprints=fingerprints, deps=deps,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            failure = _drive(execution)
        except BaseException as exc:
            run.end("killed" if isinstance(exc, KeyboardInterrupt) else "failed", repr(exc))
            raise
        # The run's error keeps the step's traceback too: the message alone names no line.
        error = f"{failure}\n\n{execution.failed_traceback or ''}".rstrip() if failure else None
        run.end("failed" if failure else "finished", error)
        display.end(run.status, time.perf_counter() - started)
    finally:
        active_runner.close()
    result = PipelineResult(
        run.id, pipeline.name, run.status, resolved, run.seed, execution.reports, project
    )
    if failure:
        failing = next(name for name, r in execution.reports.items() if r.status == "failed")
        raise StepFailed(failure, run_id=run.id, step=failing) from execution.failed_exception
    return result


def _source_file(pipeline: Pipeline, code_root: Path) -> str | None:
    """Where the pipeline is defined, for reproductions: `path:name` under the code root."""
    import inspect

    from shipyard.pipelines.loading import source_of

    try:
        file = inspect.getsourcefile(pipeline.fn)
    except TypeError:
        return None
    return source_of(Path(file), pipeline, code_root) if file else None


def _step_modules(graph: Graph) -> list[str]:
    return sorted({node.step.fn.__module__ for node in graph.nodes.values()})
