"""The metadata store on SQLite and PostgreSQL: schema, migrations, locking and clear errors."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shipyard.errors import ConfigError, DatabaseLocked, DatabaseUnavailable
from shipyard.project import Project
from shipyard.store.metadata import MetadataStore
from shipyard.store.models import SCHEMA_REVISION, DatasetRecord

TABLES = [
    "alembic_version",
    "alerts",
    "alias_events",
    "api_tokens",
    "audit_events",
    "dataset_versions",
    "datasets",
    "drift_references",
    "drift_results",
    "environments",
    "feedback",
    "flag_events",
    "flags",
    "gate_results",
    "model_aliases",
    "model_versions",
    "quality_estimates",
    "registered_models",
    "release_revision",
    "rollout_decisions",
    "rollouts",
    "run_artifacts",
    "run_metrics",
    "run_params",
    "run_tags",
    "runs",
    "slo_evaluations",
    "step_runs",
    "trigger_firings",
]

# Holds SQLite's write lock until told to let go on stdin (a second process, not a thread).
HOLD_WRITE_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
connection.close()
print("released", flush=True)
"""


def _count_datasets(store: MetadataStore) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(DatasetRecord)) or 0)


def _add_dataset(store: MetadataStore, name: str) -> None:
    with store.write() as session:
        session.add(DatasetRecord(name=name, created_by="tests"))


def _closed_port() -> int:
    """A port nothing listens on: bound once by us, then let go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store(database_url: str) -> MetadataStore:
    return MetadataStore(database_url)


# -- schema and migrations ----------------------------------------------------------------


def test_migrate_creates_the_schema(store: MetadataStore) -> None:
    assert store.current_revision() is None
    store.migrate()
    assert store.table_names() == TABLES
    assert store.current_revision() == store.head_revision() == SCHEMA_REVISION
    store.require_schema()  # passes
    _add_dataset(store, "first")
    assert _count_datasets(store) == 1
    store.dispose()


def test_require_schema_on_an_empty_database_says_to_init(store: MetadataStore) -> None:
    with pytest.raises(ConfigError, match="`shipyard init`") as caught:
        store.require_schema()
    assert "has no shipyard schema" in str(caught.value)
    # Checking created nothing.
    assert store.table_names() == []
    store.dispose()


def test_init_migrates_and_open_requires_the_schema(project: Project, database_url: str) -> None:
    assert project.metadata.table_names() == TABLES
    assert project.metadata.current_revision() == SCHEMA_REVISION
    project.metadata.require_schema()
    reopened = Project.open(project.home, database_url=database_url)
    reopened.metadata.require_schema()
    reopened.close()
    # The metadata went where the URL says, not to the default file in the project folder.
    assert not (project.home / "shipyard.db").exists()
    assert Path(project.metadata.url.database or "").is_file() == project.metadata.is_sqlite


def test_open_on_an_empty_database_says_to_init(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "never-initialised"
    home.mkdir()
    with pytest.raises(ConfigError, match="run `shipyard init` first"):
        Project.open(home, database_url=database_url)


def test_migrating_twice_is_a_no_op(store: MetadataStore, database_url: str) -> None:
    store.migrate()
    _add_dataset(store, "kept")
    store.migrate()
    store.migrate()
    assert store.table_names() == TABLES
    assert store.current_revision() == SCHEMA_REVISION
    assert _count_datasets(store) == 1
    store.require_schema()
    # A second store on the same database (another process starting up) sees it done.
    other = MetadataStore(database_url)
    other.migrate()
    other.require_schema()
    assert _count_datasets(other) == 1
    other.dispose()
    store.dispose()


def test_a_failed_write_leaves_no_row(store: MetadataStore) -> None:
    store.migrate()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.write() as session:
        session.add(DatasetRecord(name="half-written", created_by="tests"))
        session.flush()  # the row reached the database inside the transaction
        raise Boom
    assert _count_datasets(store) == 0
    # The store is still usable afterwards.
    _add_dataset(store, "whole")
    with store.read() as session:
        assert list(session.scalars(select(DatasetRecord.name))) == ["whole"]
    store.dispose()


# -- SQLite -------------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = MetadataStore(f"sqlite:///{path}")
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.dispose()
    # WAL is a property of the file: a plain connection sees it too.
    plain = sqlite3.connect(path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    MetadataStore(url).migrate()
    store = MetadataStore(url, timeout=0.5)

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"

        with pytest.raises(DatabaseLocked) as caught:
            _add_dataset(store, "blocked")
        message = str(caught.value)
        assert "locked by another process" in message
        assert "retry" in message
        assert "SHIPYARD_DATABASE_TIMEOUT" in message
        assert str(path) in message
        # WAL: readers are not blocked by the writer.
        assert _count_datasets(store) == 0

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:  # only when the test failed half-way
            holder.kill()
        holder.communicate(timeout=30)

    _add_dataset(store, "after")
    assert _count_datasets(store) == 1
    store.dispose()


# -- connection errors and bad URLs -------------------------------------------------------


def test_unreachable_postgres_is_described_without_the_password() -> None:
    port = _closed_port()
    store = MetadataStore(f"postgresql://u:secret@127.0.0.1:{port}/db", timeout=1)
    assert "secret" not in repr(store)
    for attempt in (store.current_revision, store.require_schema, lambda: _count_datasets(store)):
        with pytest.raises(DatabaseUnavailable) as caught:
            attempt()
        message = str(caught.value)
        assert f"u:***@127.0.0.1:{port}/db" in message  # the URL, its password masked
        assert "secret" not in message
        assert "SHIPYARD_DATABASE_URL" in message
    with pytest.raises(DatabaseUnavailable) as caught:
        _add_dataset(store, "nowhere")
    assert "secret" not in str(caught.value)
    store.dispose()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("mysql://x/y", "'mysql' is not supported"),
    ],
)
def test_invalid_urls_are_config_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MetadataStore(url)
