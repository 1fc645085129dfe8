"""Several processes writing one metadata store at once, on SQLite and PostgreSQL.

The workers are module-level functions run in "spawn" processes (a fresh interpreter each, as
separate CLI invocations would be); they start together on a barrier and report back on a
queue: ("ok", result) or ("error", traceback). Nothing here measures time; the timeouts only
keep a hung worker from hanging the suite.

A spawned process imports this module to find its worker, so pandas and `shipyard.data` are
imported inside the functions that need them: the migration workers start faster without.
"""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processes import run_together
from shipyard.project import Project
from shipyard.store.metadata import MetadataStore
from shipyard.store.models import SCHEMA_REVISION, Base

if TYPE_CHECKING:
    import pandas as pd

WORKERS = 4
ADDS_PER_WORKER = 5
WAIT_S = 120  # a hung worker fails the test instead of hanging it

SPAWN = multiprocessing.get_context("spawn")


def _frame(worker: int, index: int) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {"worker": [worker] * 3, "index": [index] * 3, "x": [0.5, 1.5, 2.5 + worker + index]}
    )


def _shared_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


# -- workers (module level: a spawned process imports them by name) ---------------------------


def add_versions_worker(url: str, home: str, worker: int, barrier: Any, results: Any) -> None:
    """Add ADDS_PER_WORKER distinct frames to `shared`, then the same frame to `same`."""
    try:
        import shipyard.data as data

        project = Project.open(Path(home), database_url=url)
        try:
            barrier.wait(WAIT_S)
            added = [
                data.add(_frame(worker, index), "shared", project=project)
                for index in range(ADDS_PER_WORKER)
            ]
            barrier.wait(WAIT_S)
            same = data.add(_shared_frame(), "same", project=project)
        finally:
            project.close()
        results.put(
            (
                worker,
                "ok",
                {
                    "added": [(v.version, v.content_hash, v.created) for v in added],
                    "same": same.version,
                    "same_created": same.created,
                },
            )
        )
    except BaseException:
        barrier.abort()  # the others fail fast instead of waiting for this one
        results.put((worker, "error", traceback.format_exc()))


def migrate_worker(url: str, home: str, worker: int, barrier: Any, results: Any) -> None:
    """Migrate a fresh database, as several `shipyard init` runs starting at once would."""
    del home
    try:
        store = MetadataStore(url)
        try:
            barrier.wait(WAIT_S)
            store.migrate()
            store.require_schema()
            revision = store.current_revision()
        finally:
            store.dispose()
        results.put((worker, "ok", revision))
    except BaseException:
        barrier.abort()  # the others fail fast instead of waiting for this one
        results.put((worker, "error", traceback.format_exc()))


def test_concurrent_adds_number_versions_without_gaps(project: Project, database_url: str) -> None:
    import shipyard.data as data

    reports = run_together(add_versions_worker, database_url, project.home, WORKERS)

    versions = data.versions("shared", project=project)
    total = WORKERS * ADDS_PER_WORKER
    assert [v.version for v in versions] == list(range(1, total + 1))
    hashes = [v.content_hash for v in versions]
    assert len(set(hashes)) == total
    # Every add created its own version, and each worker saw its own numbers in order.
    reported = [entry for report in reports.values() for entry in report["added"]]
    assert sorted(number for number, _, _ in reported) == list(range(1, total + 1))
    assert {content for _, content, _ in reported} == set(hashes)
    assert all(created for _, _, created in reported)
    for report in reports.values():
        numbers = [number for number, _, _ in report["added"]]
        assert numbers == sorted(numbers)
    # Every version's data reads back intact.
    assert {len(v.to_pandas()) for v in versions} == {3}

    # The same content added by everyone at once is one version, created by exactly one.
    same = data.versions("same", project=project)
    assert [v.version for v in same] == [1]
    assert sorted(report["same_created"] for report in reports.values()) == [False] * (
        WORKERS - 1
    ) + [True]
    assert {report["same"] for report in reports.values()} == {1}
    assert len(data.list_datasets(project=project)) == 2


def test_concurrent_migrations_all_succeed(database_url: str, tmp_path: Path) -> None:
    reports = run_together(migrate_worker, database_url, tmp_path, WORKERS)
    assert set(reports.values()) == {SCHEMA_REVISION}
    store = MetadataStore(database_url)
    assert store.current_revision() == store.head_revision()
    assert store.table_names() == sorted(["alembic_version", *Base.metadata.tables])
    store.require_schema()
    store.dispose()
