"""SQL over the prediction log with DuckDB: one view, `predictions`, read-only.

    SELECT model, version, count(*), avg(latency_ms) FROM predictions
    WHERE hour >= '2024-05-01T00' GROUP BY ALL

The view holds every finished Parquet file of the log (`model` and `hour` come from the paths,
so filtering on them skips whole folders); with no file yet it exists, empty, with the same
columns. Each query runs on a fresh in-memory DuckDB connection that may read only the log's
folder (an object store's files are handed to it as an Arrow dataset instead); external access
is then switched off and the configuration locked, so a query can neither read other files nor
load extensions. Only one SELECT-like statement is accepted (SELECT, WITH, FROM, VALUES,
DESCRIBE, SHOW, SUMMARIZE, EXPLAIN), so none can write a file (no COPY, EXPORT, ATTACH).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.predictions.parquet import COLUMNS, PartitionedFolder

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from shipyard.config import Settings
    from shipyard.project import Project

VIEW = "predictions"
_SOURCE = "prediction_files"
COLUMNS_HINT = (
    "the view `predictions` has columns "
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    + ", hour string (YYYY-MM-DDTHH, UTC)"
)


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise InvalidInput(
            "querying the prediction log needs DuckDB: pip install 'shipyard[serve]'"
        ) from None
    return duckdb


def project_settings(project: Project | None = None) -> Settings:
    """The settings of `project`, or of the current one, without opening its database (a
    query over the log needs no metadata: it stays fast)."""
    if project is not None:
        return project.settings
    from shipyard.config import load_settings

    settings = load_settings()
    if not settings.home.is_dir() and settings.prediction_log_url is None:
        raise ConfigError(
            f"no shipyard project at {settings.home.resolve()}: run `shipyard init` here, "
            "or set SHIPYARD_HOME to an existing project folder"
        )
    return settings


def default_folder(project: Project | None = None) -> str:
    """The project's Parquet prediction log (where a Kafka log is landed, for a Kafka one)."""
    from shipyard.predictions.log import log_folder

    return log_folder(project_settings(project))


def _open_folder(folder: str | Path | None, project: Project | None) -> PartitionedFolder:
    if folder is not None:
        return PartitionedFolder(folder)
    from shipyard.predictions.log import log_folder, storage_options

    settings = project_settings(project)
    url = log_folder(settings)
    return PartitionedFolder(url, storage_options(settings, url))


DUCKDB_TYPES = {
    "request_id": "VARCHAR",
    "time": "TIMESTAMPTZ",
    "model": "VARCHAR",
    "version": "BIGINT",
    "arm": "VARCHAR",
    "protocol": "VARCHAR",
    "inputs": "VARCHAR",
    "outputs": "VARCHAR",
    "latency_ms": "DOUBLE",
    "filters": "VARCHAR[]",
    "hooks": "VARCHAR",
    "status": "INTEGER",
    "hour": "VARCHAR",
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(folder: PartitionedFolder) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the `predictions` view, unable to touch any other file.

    Local files are read by DuckDB itself, allowed into the log's folder only; files on an
    object store are handed over as an Arrow dataset (read through fsspec). Either way, file
    access is then switched off and the configuration locked.
    """
    db = _duckdb()
    connection: duckdb.DuckDBPyConnection = db.connect(":memory:")
    try:
        for setting in (
            "SET python_enable_replacements = false",  # no Python variables as tables
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
        ):
            connection.execute(setting)
        with contextlib.suppress(db.Error):  # a DuckDB built without ICU has no TimeZone
            connection.execute("SET TimeZone = 'UTC'")  # times shown in UTC, as stored
        empty = (
            "SELECT "
            + ", ".join(f"NULL::{kind} AS {name}" for name, kind in DUCKDB_TYPES.items())
            + " WHERE false"
        )
        source = empty
        files = folder.files()
        if files and folder.is_local and _allow(connection, folder.root):
            listed = ", ".join(_literal(path) for path in files)
            source = (
                f"{empty} UNION ALL BY NAME SELECT * FROM read_parquet([{listed}], "
                "hive_partitioning = true, union_by_name = true, "
                "hive_types = {'model': VARCHAR, 'hour': VARCHAR})"
            )
        elif files:
            connection.register(_SOURCE, folder.dataset())
            source = f"SELECT * FROM {_SOURCE}"
        connection.execute(f"CREATE VIEW {VIEW} AS {source}")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except Exception:
        connection.close()
        raise
    return connection


def _allow(connection: duckdb.DuckDBPyConnection, root: str) -> bool:
    """Let DuckDB read under `root` once file access is off; False on a DuckDB too old for it."""
    duckdb = _duckdb()
    try:
        connection.execute(f"SET allowed_directories = [{_literal(root.rstrip('/') + '/')}]")
    except duckdb.Error:  # pragma: no cover - DuckDB < 1.3: read through Arrow instead
        return False
    return True


def check_read_only(sql: str) -> str:
    """`sql` when it is one SELECT-like statement; InvalidInput saying what is wrong if not."""
    duckdb = _duckdb()
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput(
            f"the query is empty; write a SELECT over `predictions` ({COLUMNS_HINT})"
        )
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(
            f"the query is not valid SQL: {_one_line(exc)}; {COLUMNS_HINT}"
        ) from None
    if len(statements) != 1:
        raise InvalidInput(
            f"the query has {len(statements)} statements; send exactly one SELECT over "
            "`predictions`"
        )
    kind = statements[0].type
    if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
        raise InvalidInput(
            f"only reading queries run over the prediction log (SELECT, WITH, DESCRIBE, SHOW, "
            f"SUMMARIZE, EXPLAIN); got a {kind.name} statement"
        )
    return sql


def query(
    sql: str,
    *,
    project: Project | None = None,
    folder: str | Path | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Run one read-only SQL statement over the `predictions` view; the result as Arrow.

    `folder` defaults to the project's log (`prediction_log_url`); `limit` caps the rows of a
    SELECT without reading more than needed.
    """
    check_read_only(sql)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"limit must be an integer >= 0; got {limit!r}")
    duckdb = _duckdb()
    connection = connect(_open_folder(folder, project))
    try:
        relation = connection.sql(sql)
        if relation is None:  # pragma: no cover - a SELECT always gives a relation
            raise InvalidInput("the query returned no result")
        if limit is not None:
            relation = relation.limit(limit)
        return _arrow(relation)
    except duckdb.Error as exc:
        raise InvalidInput(f"the query failed: {_one_line(exc)}; {COLUMNS_HINT}") from None
    finally:
        connection.close()


def find(
    request_id: str,
    *,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every record logged for `request_id` (one per arm that answered it), oldest first."""
    if not isinstance(request_id, str) or not request_id:
        raise InvalidInput(f"a request id is a non-empty string; got {request_id!r}")
    source = _open_folder(folder, project)
    connection = connect(source)
    try:
        relation = connection.sql(
            f"SELECT * FROM {VIEW} WHERE request_id = ? ORDER BY time, arm", params=[request_id]
        )
        table = _arrow(relation)
    finally:
        connection.close()
    if table.num_rows == 0:
        raise NotFound(
            f"no prediction with request id {request_id!r} in the log at {source.url} "
            "(records are written every prediction_log_flush_rows records or "
            "prediction_log_flush_seconds: a request from the last moments may not be there yet)"
        )
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _arrow(relation: Any) -> pa.Table:
    result = relation.arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
