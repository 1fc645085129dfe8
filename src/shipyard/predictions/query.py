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

import base64
import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.predictions.parquet import COLUMNS, Partition, PartitionedFolder

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


def connect(
    folder: PartitionedFolder, files: Sequence[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the `predictions` view, unable to touch any other file.

    The view holds `files` (default: every finished file of `folder`; a search passes only the
    partitions it needs, which is what keeps it fast on a large log). Local files are read by
    DuckDB itself, allowed into the log's folder only; files on an object store are handed over
    as an Arrow dataset (read through fsspec). Either way, file access is then switched off and
    the configuration locked.
    """
    connection, reads_itself = _session(folder)
    try:
        listed = folder.files() if files is None else list(files)
        source = _EMPTY
        if reads_itself:
            source = local_source(listed)
        elif listed:
            connection.register(_SOURCE, folder.dataset(listed))
            source = f"SELECT * FROM {_SOURCE}"
        connection.execute(f"CREATE VIEW {VIEW} AS {source}")
        _lock(connection)
    except Exception:
        connection.close()
        raise
    return connection


def _session(folder: PartitionedFolder) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A fresh in-memory connection, locked down but for the log's files; and whether DuckDB
    may read them itself (a local folder, on a DuckDB that can allow just that folder)."""
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
        reads_itself = folder.is_local and _allow(connection, folder.root)
    except Exception:
        connection.close()
        raise
    return connection, reads_itself


def _lock(connection: duckdb.DuckDBPyConnection) -> None:
    """No file access beyond the allowed folder from now on, and no setting changed back."""
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


_EMPTY = (
    "SELECT "
    + ", ".join(f"NULL::{kind} AS {name}" for name, kind in DUCKDB_TYPES.items())
    + " WHERE false"
)


def local_source(files: Sequence[str]) -> str:
    """SQL reading local `files` as the view's columns: one `read_parquet` per file schema.

    DuckDB's `union_by_name` would read the footer of every listed file on every query (a
    third of a second on a thousand files, even for a query that prunes all but one). Files
    of an older schema (say, before `arm`) still have to read with the missing columns empty,
    so the files are grouped by schema here instead (each footer read once per process,
    cached by path, size and modification time) and the groups joined by name.
    """
    if not files:
        return _EMPTY
    parts = [_EMPTY]
    for group in schema_groups(files):
        listed = ", ".join(_literal(path) for path in group)
        parts.append(
            f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            "hive_types = {'model': VARCHAR, 'hour': VARCHAR})"
        )
    return " UNION ALL BY NAME ".join(parts)


# path -> (modification time ns, size, the file's columns and types)
_SCHEMAS: dict[str, tuple[int, int, tuple[tuple[str, str], ...]]] = {}
_SCHEMAS_LOCK = threading.Lock()
_SCHEMAS_KEPT = 1_000_000  # paths remembered before the cache starts over (~200 MB at most)


def schema_groups(files: Sequence[str]) -> list[list[str]]:
    """Local `files` grouped by their Parquet schema, each group in the given order. A file
    that vanished since it was listed (retention) is left out."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for path in files:
        signature = _signature(path)
        if signature is not None:
            groups.setdefault(signature, []).append(path)
    return list(groups.values())


def _signature(path: str) -> tuple[tuple[str, str], ...] | None:
    import pyarrow.parquet as pq

    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        return None
    cached = _SCHEMAS.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return None
    signature = tuple((field.name, str(field.type)) for field in schema)
    with _SCHEMAS_LOCK:
        if len(_SCHEMAS) >= _SCHEMAS_KEPT:
            _SCHEMAS.clear()
        _SCHEMAS[path] = (stat.st_mtime_ns, stat.st_size, signature)
    return signature


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


# -- searching by filters ----------------------------------------------------------------------

COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
ORDER = "time DESC, request_id DESC, coalesce(arm, '') DESC"  # newest first; the keyset's order
_NEAR = timedelta(hours=1)  # how far from its id's time a record may be logged (shadow arms)
_FIRST_HOURS = 1  # the newest hours a search reads first; each next step reads 4 times more
_GROWTH = 4
_SOURCE_SLOT = "<source>"  # where a search's SQL names the files it reads


def read(
    sql: str,
    params: Sequence[Any] = (),
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> pa.Table:
    """Shipyard's own parameterised SQL over the `predictions` view, as an Arrow table.

    For the modules that read the log (analysis, drift, SLOs, quality, feedback): only the
    partitions of `model` whose hours overlap [since, until] are handed to DuckDB when those are
    given, which is what keeps a window's read cheap on a large log. The SQL is the caller's
    own (values always bound as `params`); a read that fails is an InvalidInput in one line.
    """
    duckdb = _duckdb()
    connection = _connect_for(model, since, until, project, folder)
    try:
        return _arrow(connection.sql(sql, params=list(params)))
    except duckdb.Error as exc:
        raise InvalidInput(f"cannot read the prediction log: {_one_line(exc)}") from None
    finally:
        connection.close()


def stream(
    sql: str,
    params: Sequence[Any] = (),
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    project: Project | None = None,
    folder: str | Path | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """`read`, a record batch at a time: a window never has to fit in memory whole."""
    duckdb = _duckdb()
    connection = _connect_for(model, since, until, project, folder)
    try:
        relation = connection.sql(sql, params=list(params))
        # DuckDB 1.4+ names it to_arrow_reader; older ones fetch_arrow_reader.
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        yield from reader(batch_rows)
    except duckdb.Error as exc:
        raise InvalidInput(f"cannot read the prediction log: {_one_line(exc)}") from None
    finally:
        connection.close()


def _connect_for(
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    project: Project | None,
    folder: str | Path | None,
) -> duckdb.DuckDBPyConnection:
    """A connection whose view holds only the partitions of `model` in [since, until] (every
    file when none is given)."""
    opened = _open_folder(folder, project)
    files = None
    if model is not None or since is not None or until is not None:
        files = opened.files(
            model=model,
            first_hour=_hour(since) if since is not None else None,
            last_hour=_hour(until) if until is not None else None,
        )
    return connect(opened, files)


@dataclass(frozen=True)
class Filters:
    """What a search matches: every filter given (None: any). Times are aware; `since` is
    inclusive and `until` exclusive. Every value is bound as a parameter, never read as SQL."""

    model: str | None = None
    version: int | None = None
    arm: str | None = None
    request_id: str | None = None
    status: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended (its last row), to ask for the rows after it (keyset pagination)."""

    time: datetime
    request_id: str
    arm: str

    @classmethod
    def after_row(cls, row: dict[str, Any]) -> Cursor:
        return cls(row["time"], row["request_id"], row.get("arm") or "")

    def encode(self) -> str:
        data = [self.time.astimezone(UTC).isoformat(), self.request_id, self.arm]
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor `encode` wrote; InvalidInput for anything else."""
        try:
            padded = text + "=" * (-len(text) % 4)
            moment, request_id, arm = json.loads(base64.urlsafe_b64decode(padded.encode()))
            when = datetime.fromisoformat(moment)
            if when.tzinfo is None or not isinstance(request_id, str) or not isinstance(arm, str):
                raise ValueError(text)
        except (ValueError, TypeError):
            raise InvalidInput(
                "the page cursor 'after' is not one this search made; start again from the "
                "first page"
            ) from None
        return cls(when, request_id, arm)


@dataclass(frozen=True)
class Page:
    """One page of a search, newest first, and the cursor of the next (None on the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None


def search(
    filters: Filters | None = None,
    *,
    after: Cursor | None = None,
    limit: int = 50,
    offset: int = 0,
    columns: Sequence[str] = COLUMN_NAMES,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> Page:
    """Logged predictions matching `filters`, newest first (time, then request id and arm,
    descending), `limit` of them after `after` (and after skipping `offset`).

    Fast on a large log: only the partitions the filters allow are listed (model, hours), the
    newest hours are read first and older ones only until the page is full, and a request id
    made by the server (UUIDv7 layout) is looked for near the hour it was made first.
    """
    filters = filters or Filters()
    _check_page(limit, offset, columns)
    since, until = _aware(filters.since, "since"), _aware(filters.until, "until")
    source = _open_folder(folder, project)
    where, params = _where(filters, since, until, after)
    first_hour = _hour(since) if since is not None else None
    last_hour = min(
        (_hour(moment) for moment in (_just_before(until), after and after.time) if moment),
        default=None,
    )
    partitions = source.partitions(model=filters.model, first_hour=first_hour, last_hour=last_hour)
    wanted = offset + limit + 1
    sql = f"SELECT {', '.join(columns)} FROM {_SOURCE_SLOT}{where} ORDER BY {ORDER} LIMIT ?"
    rows: list[dict[str, Any]] = []
    with _Reader(source) as reader:
        near = _near_hours(filters.request_id)
        if near:  # a server-made id: its own hour first, every other hour only if not there
            close_by = [p for p in partitions if p.hour in near]
            rows = reader.rows(close_by, sql, [*params, wanted])
            partitions = [] if rows else [p for p in partitions if p.hour not in near]
        for batch in _newest_first(partitions):
            rows += reader.rows(batch, sql, [*params, wanted - len(rows)])
            if len(rows) >= wanted:
                break
    page = rows[offset : offset + limit]
    more = len(rows) > offset + limit
    return Page(page, Cursor.after_row(page[-1]) if more and page else None)


def find(
    request_id: str,
    *,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every record logged for `request_id` (one per arm that answered it), oldest first.

    A server-made id (UUIDv7 layout) is looked for in the partitions of the hour it was made
    (and the neighbouring hours) first; only an id found nowhere near, or one a client chose,
    makes the lookup read every file.
    """
    if not isinstance(request_id, str) or not request_id:
        raise InvalidInput(f"a request id is a non-empty string; got {request_id!r}")
    source = _open_folder(folder, project)
    sql = f"SELECT * FROM {_SOURCE_SLOT} WHERE request_id = ? ORDER BY time, arm"
    partitions = source.partitions()
    near = _near_hours(request_id)
    with _Reader(source) as reader:
        rows: list[dict[str, Any]] = []
        if near:
            rows = reader.rows([p for p in partitions if p.hour in near], sql, [request_id])
        if not rows:
            rest = [p for p in partitions if p.hour not in near]
            rows = reader.rows(rest, sql, [request_id])
    if not rows:
        raise NotFound(
            f"no prediction with request id {request_id!r} in the log at {source.url} "
            "(records are written every prediction_log_flush_rows records or "
            "prediction_log_flush_seconds: a request from the last moments may not be there yet)"
        )
    return rows


class _Reader:
    """Runs one query over chosen partitions at a time: on one connection for a local log
    (its files named in the query), on a connection per call for an object store's (its
    files handed over as an Arrow dataset)."""

    def __init__(self, source: PartitionedFolder) -> None:
        self.source = source
        self.connection: duckdb.DuckDBPyConnection | None = None
        self.inline = source.is_local  # until the connection says DuckDB cannot read it

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_: object) -> None:
        if self.connection is not None:
            self.connection.close()

    def rows(
        self, partitions: Sequence[Partition], sql: str, params: list[Any]
    ) -> list[dict[str, Any]]:
        """`sql` (its `<source>` the partitions' files) with `params`, as dicts; [] when the
        partitions hold no file."""
        if not partitions:
            return []
        files = self.source.partition_files(partitions)
        if not files:
            return []
        if self.connection is None and self.inline:
            self.connection, self.inline = _session(self.source)
            _lock(self.connection)
        if self.connection is not None and self.inline:
            relation = self.connection.sql(
                sql.replace(_SOURCE_SLOT, f"({local_source(files)})"), params=params
            )
        else:  # an object store's files: a connection with them as its view, each time
            connection = connect(self.source, files)
            try:
                relation = connection.sql(sql.replace(_SOURCE_SLOT, VIEW), params=params)
                return _rows(relation)
            finally:
                connection.close()
        return _rows(relation)


def _rows(relation: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _arrow(relation).to_pylist()
    return rows


def _check_page(limit: int, offset: int, columns: Sequence[str]) -> None:
    for name, value, least in (("limit", limit, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidInput(f"{name} must be an integer >= {least}; got {value!r}")
    unknown = [name for name in columns if name not in DUCKDB_TYPES]
    if unknown or not columns:
        raise InvalidInput(
            f"columns must be some of {', '.join(DUCKDB_TYPES)}; got {list(columns)!r}"
        )


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInput(
            f"{name} must be a time with a zone, e.g. 2024-05-01T12:00:00Z; got {moment!r}"
        )
    return moment.astimezone(UTC)


def _where(
    filters: Filters, since: datetime | None, until: datetime | None, after: Cursor | None
) -> tuple[str, list[Any]]:
    """The WHERE clause of a search, every value a bound parameter."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("model = ?", filters.model),
        ("version = ?", filters.version),
        ("arm = ?", filters.arm),
        ("request_id = ?", filters.request_id),
        ("status = ?", filters.status),
        ("time >= ?", since),
        ("time < ?", until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if after is not None:
        clauses.append(
            "(time < ? OR (time = ? AND (request_id < ? OR (request_id = ? AND "
            "coalesce(arm, '') < ?))))"
        )
        params += [after.time, after.time, after.request_id, after.request_id, after.arm]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _just_before(moment: datetime | None) -> datetime | None:
    """The last instant before an exclusive bound (so `until=14:00` reads no 14:xx folder)."""
    return None if moment is None else moment - timedelta(microseconds=1)


def _near_hours(request_id: str | None) -> set[str]:
    """The hours whose partitions hold a server-made id's records (made then, logged within
    `_NEAR`); empty for an id not in the UUIDv7 layout."""
    from shipyard.serving.request_ids import made_at

    made = made_at(request_id) if request_id else None
    if made is None:
        return set()
    return {_hour(made - _NEAR), _hour(made), _hour(made + _NEAR)}


def _newest_first(partitions: Sequence[Partition]) -> Iterator[list[Partition]]:
    """The partitions in batches of whole hours, newest first: 1 hour, then 4, 16, ..."""
    hours = sorted({p.hour for p in partitions}, reverse=True)
    by_hour: dict[str, list[Partition]] = {}
    for partition in partitions:
        by_hour.setdefault(partition.hour, []).append(partition)
    start, size = 0, _FIRST_HOURS
    while start < len(hours):
        chosen = hours[start : start + size]
        yield [p for hour in chosen for p in by_hour[hour]]
        start, size = start + size, size * _GROWTH


def _arrow(relation: Any) -> pa.Table:
    result = relation.arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
