"""Runners: the same pipeline in this process, in threads and on a real Dask cluster gives the
same outputs, byte for byte; bad runner specs fail before anything runs.

The cluster is a real `distributed.LocalCluster` with worker processes, started once for the
module. Steps are defined here; the Dask runner ships this module to the workers by value.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.errors import ConfigError, InvalidInput
from shipyard.pipelines import pipeline, step, step_context
from shipyard.pipelines.runners import InProcessRunner, make_runner
from shipyard.project import Project
from shipyard.tracking import get_run, log_metric

SHARDS = 6


@step
def make_shards(count: int) -> list[dict[str, int]]:
    return [{"shard": index, "rows": 50 + index} for index in range(count)]


@step
def crunch(shard: dict[str, int], scale: float) -> dict[str, Any]:
    # Seeded by the shard's own seed, whichever process or thread runs it.
    rng = np.random.default_rng(step_context().seed)
    data = rng.normal(size=(shard["rows"], 4)) * scale
    return {
        "shard": shard["shard"],
        "mean": data.mean(axis=0).tolist(),
        "draw": rng.random(3).tolist(),
    }


@step
def combine(parts: list[dict[str, Any]]) -> np.ndarray:
    log_metric("shards", len(parts))
    return np.stack([part["mean"] for part in parts])


@step
def left(n: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(step_context().seed).random(n))


@step
def right(n: int) -> list[int]:
    rng = np.random.default_rng(step_context().seed)
    return sorted(int(v) for v in rng.integers(0, 1000, size=n))


@step(outputs=("matrix", "summary"))
def finish(matrix: np.ndarray, a: np.ndarray, b: list[int]) -> tuple[np.ndarray, dict[str, float]]:
    return matrix, {"a": float(a[-1]), "b": float(sum(b)), "m": float(matrix.sum())}


@pipeline
def fanout(shards: int = SHARDS, scale: float = 2.0, n: int = 20) -> None:
    parts = crunch.map(make_shards(shards), scale=scale)
    fixed = crunch.map([{"shard": 99, "rows": 5}], scale=1.0)
    finish(combine(parts), left(n), right(n))
    combine(fixed)


@step
def legacy_draw(index: int) -> list[float]:
    # The global generators, which the runner seeds for each task.
    return [float(v) for v in np.random.rand(2)] + [random.random()]


@pipeline
def legacy(shards: int = 4) -> None:
    legacy_draw.map(list(range(shards)))


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
    )
    try:
        yield str(cluster.scheduler_address).removeprefix("tcp://")
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    created = Project.init(tmp_path_factory.mktemp("runners") / ".shipyard")
    yield created
    created.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_ids(project: Project) -> set[str]:
    from sqlalchemy import select

    from shipyard.store.models import RunRecord

    with project.metadata.read() as session:
        return set(session.scalars(select(RunRecord.id)).all())


def _digests(result: Any) -> dict[str, dict[str, str]]:
    return {
        name: {output: stored.digest for output, stored in report.outputs.items()}
        for name, report in result.steps.items()
    }


@pytest.fixture(scope="module")
def in_process(proj: Project) -> Any:
    return fanout.run(project=proj, progress=False, no_cache=True, seed=11)


def test_in_process_result(in_process: Any) -> None:
    assert in_process.status == "finished"
    matrix = in_process.output("finish", "matrix")
    assert matrix.shape == (SHARDS, 4)
    parts = in_process.output("crunch")
    assert [part["shard"] for part in parts] == list(range(SHARDS))  # in order
    # Every shard drew its own numbers.
    assert len({tuple(part["draw"]) for part in parts}) == SHARDS
    assert in_process.output("combine_2").shape == (1, 4)


def test_threads_give_the_same_outputs(proj: Project, in_process: Any) -> None:
    threaded = fanout.run(
        project=proj, progress=False, no_cache=True, seed=11, runner=InProcessRunner(parallel=2)
    )
    assert _digests(threaded) == _digests(in_process)


def test_a_dask_cluster_gives_the_same_outputs(
    proj: Project, in_process: Any, cluster_address: str
) -> None:
    on_dask = fanout.run(
        project=proj, progress=False, no_cache=True, seed=11, runner=f"dask://{cluster_address}"
    )
    assert on_dask.status == "finished"
    assert _digests(on_dask) == _digests(in_process)
    assert sorted(on_dask.executed) == sorted(in_process.executed)
    # Metrics logged on the workers reach the run.
    assert get_run(on_dask.run_id, project=proj).metrics["shards"] in (1.0, float(SHARDS))
    np.testing.assert_array_equal(
        on_dask.output("finish", "matrix"), in_process.output("finish", "matrix")
    )


def test_global_generators_are_seeded_per_task_on_dask_too(
    proj: Project, cluster_address: str
) -> None:
    here = legacy.run(project=proj, progress=False, no_cache=True, seed=5)
    there = legacy.run(
        project=proj, progress=False, no_cache=True, seed=5, runner=f"dask://{cluster_address}"
    )
    draws = here.output("legacy_draw")
    assert there.output("legacy_draw") == draws
    assert len({tuple(draw) for draw in draws}) == 4


@step
def pickled(index: int) -> dict[str, Any]:
    # A dict holding an array has no safe format: it is stored as a pickle.
    return {"index": index, "values": np.arange(3.0) * index}


@pipeline
def pickles(count: int = 3) -> None:
    pickled.map(list(range(count)))


def test_pickled_outputs_have_the_same_digest_on_every_runner(
    proj: Project, cluster_address: str
) -> None:
    here = pickles.run(project=proj, progress=False, no_cache=True)
    there = pickles.run(
        project=proj, progress=False, no_cache=True, runner=f"dask://{cluster_address}"
    )
    # Equal values either way...
    for a, b in zip(here.output("pickled"), there.output("pickled"), strict=True):
        assert a["index"] == b["index"]
        np.testing.assert_array_equal(a["values"], b["values"])
    # ...and the same blob: pickles are normalised by a round trip before they are stored.
    assert _digests(here) == _digests(there)


def test_a_dask_run_reuses_the_cache_and_reports_failures(
    proj: Project, in_process: Any, cluster_address: str
) -> None:
    cached = fanout.run(project=proj, progress=False, seed=11, runner=f"dask://{cluster_address}")
    assert cached.executed == []

    from shipyard.pipelines.execution import StepFailed

    @pipeline
    def broken(shards: int = 2) -> None:
        crunch.map(make_shards(shards), scale="x")

    with pytest.raises(StepFailed, match=r"step crunch failed: UFuncTypeError") as caught:
        broken.run(project=proj, progress=False, runner=f"dask://{cluster_address}")
    assert "Traceback" in (get_run(caught.value.run_id, project=proj).error or "")


def test_runner_dask_starts_its_own_local_cluster(proj: Project, in_process: Any) -> None:
    pytest.importorskip("distributed")
    result = fanout.run(project=proj, progress=False, no_cache=True, seed=11, runner="dask")
    assert _digests(result) == _digests(in_process)


@pytest.mark.parametrize(
    "spec", ["spark", "dask:/x", "dask://", "dask://host", "dask://:8786", "dask://host:port"]
)
def test_bad_runner_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInput, match="runner"):
        make_runner(spec)


def test_parallel_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="parallel must be at least 1; got 0"):
        InProcessRunner(parallel=0)


def test_an_unreachable_scheduler_fails_quickly_and_records_nothing(
    proj: Project, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    port = _free_port()
    before = _run_ids(proj)
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        fanout.run(project=proj, progress=False, runner=f"dask://127.0.0.1:{port}")
    assert time.monotonic() - started < 20
    assert _run_ids(proj) == before
