"""Batch scoring on a real Dask LocalCluster of two worker processes."""

from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest

from shipyard.errors import ConfigError
from shipyard.project import Project
from shipyard.scoring import score
from shipyard.scoring.chunks import worker_state


def test_dask_scores_match_in_process_byte_for_byte(project: Project, dask_address: str) -> None:
    from distributed import Client

    local = score("churn@champion", "customers", chunk_rows=400, project=project)
    spread = score(
        "churn@champion", "customers", chunk_rows=400, runner=f"dask://{dask_address}",
        project=project,
    )  # fmt: skip
    assert spread.runner == f"dask (tcp://{dask_address})"
    # The same bytes: the Parquet file hashes the same, so it is the same dataset version.
    assert spread.dataset.ref == local.dataset.ref == "customers-scored@1"
    assert not spread.created
    assert pq.read_table(spread.dataset.path()).equals(pq.read_table(local.dataset.path()))
    assert spread.withheld == local.withheld and spread.rows == 3000
    assert spread.run_id != local.run_id  # each job is its own run, both with lineage

    # 8 chunks went to the workers; each worker loaded the model once and kept it, so a second
    # job (other columns, same model) loads nothing.
    again = score(
        "churn@1", "customers", keep_columns=["id"], name="ids", chunk_rows=400,
        runner=f"dask://{dask_address}", project=project,
    )  # fmt: skip
    assert again.columns == ["id", "prediction", "filtered"]
    with Client(dask_address, timeout=30) as client:
        states = client.run(worker_state)
    assert len(states) == 2
    assert sum(state["loads"] for state in states.values()) >= 1
    assert all(state["loads"] <= 1 for state in states.values()), states
    assert all(state["models"] in ([], ["churn@1"]) for state in states.values()), states


def test_unreachable_scheduler_fails_fast_and_writes_nothing(project: Project) -> None:
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1"
    ):
        score("churn@1", "customers", runner="dask://127.0.0.1:1", project=project)
    assert time.monotonic() - started < 10
    from shipyard.data import list_datasets

    assert [s.name for s in list_datasets(project=project)] == ["customers"]
