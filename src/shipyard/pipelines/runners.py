"""Where steps execute: in this process (the default) or on a Dask cluster.

A runner is a `concurrent.futures.Executor`: the driver submits one task per step (one per item
for a step that maps over shards) and stores the results itself, so runners never touch the
metadata or artifact stores. In-process, steps run one after another in the driver's thread
unless `parallel` is more than 1: `random` and numpy's global generator are per process, so
steps sharing a process in threads would draw from each other's seeds. Dask workers are separate
processes, so independent steps and shards run in parallel there with their own seeds.
"""

from __future__ import annotations

import importlib
import socket
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipyard.errors import ConfigError, InvalidInput
from shipyard.pipelines.step import StepContext, _context
from shipyard.tracking.seeds import seed_everything


@dataclass
class StepTask:
    """Everything one execution of a step function needs; picklable for Dask."""

    step: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    seed: int
    run_id: str
    project: Any = None  # the pipeline's project, in-process only (it does not pickle)


@dataclass
class TaskResult:
    """What came back: the value, or the error as text (exceptions may not pickle)."""

    value: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    exception: BaseException | None = None
    logged: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    seconds: float = 0.0


def execute_task(task: StepTask) -> TaskResult:
    """Run one step function with its seed planted and its logging captured."""
    from shipyard.tracking import active

    context = StepContext(task.step, task.run_id, task.seed, project=task.project)
    token = _context.set(context)
    # `shipyard.tracking.log_metric` inside the step logs to the step's context.
    run_token = active.activate(context)
    seed_everything(task.seed)
    started = time.perf_counter()
    try:
        value = task.fn(**task.kwargs)
        return TaskResult(value=value, logged=context.logged, seconds=_since(started))
    except Exception as exc:
        return TaskResult(
            error=str(exc),
            error_type=type(exc).__name__,
            traceback="".join(traceback.format_exception(exc)),
            exception=exc if _picklable(exc) else None,
            logged=context.logged,
            seconds=_since(started),
        )
    finally:
        active.deactivate(run_token)
        _context.reset(token)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _picklable(exc: BaseException) -> bool:
    import pickle

    try:
        pickle.dumps(exc)
    except Exception:
        return False
    return True


class Runner(Protocol):
    """A place to execute step tasks."""

    name: str

    def executor(self) -> Executor: ...

    def prepare(self, modules: list[str]) -> None:
        """Make the project's modules available to the workers."""

    def close(self) -> None: ...


class _Synchronous(Executor):
    """Runs each task when it is submitted, in the caller's thread and context."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _ThreadsWithContext(ThreadPoolExecutor):
    """A thread pool whose tasks see the submitter's context (active run, settings)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(copy_context().run, fn, *args, **kwargs)


class InProcessRunner:
    """Steps in this process; `parallel` > 1 runs independent steps in threads."""

    name = "in-process"

    def __init__(self, parallel: int = 1) -> None:
        if parallel < 1:
            raise InvalidInput(f"parallel must be at least 1; got {parallel}")
        self.parallel = parallel
        self._executor: Executor = (
            _Synchronous() if parallel == 1 else _ThreadsWithContext(max_workers=parallel)
        )

    def executor(self) -> Executor:
        return self._executor

    def prepare(self, modules: list[str]) -> None:
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class DaskRunner:
    """Steps on a Dask cluster: `dask://host:port`, or a LocalCluster started (and stopped) here."""

    def __init__(self, address: str | None = None, *, workers: int = 2) -> None:
        try:
            distributed: Any = importlib.import_module("distributed")  # untyped: used as Any
        except ImportError:
            raise ConfigError(
                "the Dask runner needs dask.distributed: pip install 'shipyard[dask]'"
            ) from None
        self._cluster: Any = None
        if address is None:
            self._cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # one step per process: global seeds stay per step
                processes=True,
                dashboard_address=":0",  # any free port: two clusters never collide
                host="127.0.0.1",
            )
            address = self._cluster.scheduler_address
        else:
            check_scheduler_reachable(address)
        self.address = address
        self.name = f"dask ({address})"
        try:
            self.client: Any = distributed.Client(address, timeout=30)
        except OSError as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}; check the address"
            ) from None

    def executor(self) -> Executor:
        executor: Executor = self.client.get_executor(pure=False)
        return executor

    def prepare(self, modules: list[str]) -> None:
        # Workers cannot import a pipeline file loaded by path: send its code along by value.
        import cloudpickle

        for name in modules:
            module = sys.modules.get(name)
            if module is not None and name not in _by_value:
                cloudpickle.register_pickle_by_value(module)
                _by_value.add(name)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


_by_value: set[str] = set()


def check_scheduler_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at `address`: the Dask client would retry for 30 s."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address}: {exc}; check the address and that "
            "the scheduler is running"
        ) from None


def make_runner(spec: Runner | str | None, *, parallel: int = 1) -> Runner:
    """A runner from `None`/"local" (in-process), "dask" (a LocalCluster) or "dask://host:port"."""
    if spec is None or spec in ("local", "in-process"):
        return InProcessRunner(parallel)
    if not isinstance(spec, str):
        return spec
    if spec == "dask":
        return DaskRunner()
    if spec.startswith("dask://"):
        address = spec.removeprefix("dask://")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInput(f"a Dask runner address is dask://host:port; got {spec!r}")
        return DaskRunner(f"tcp://{address}")
    raise InvalidInput(f"unknown runner {spec!r}: expected local, dask, or dask://host:port")


def project_modules(root: Path) -> list[str]:
    """Names of loaded modules whose files live under `root`, outside any site-packages."""
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (
            name.split(".")[0] == "shipyard"
            or not file
            or "site-packages" in file
            or "dist-packages" in file
        ):
            continue
        try:
            if Path(file).resolve().is_relative_to(root):
                found.append(name)
        except OSError:
            continue
    return found
