"""The metadata store: one SQLAlchemy engine over SQLite (WAL) or PostgreSQL, same schema.

Reads run in ordinary transactions. Writes on SQLite start with `BEGIN IMMEDIATE`, so two
processes never both read-then-write and deadlock on the lock upgrade; they queue on the
busy timeout instead. PostgreSQL writers rely on row locks and unique constraints, and the
callers retry the rare conflict (see `MetadataStore.write`).
"""

from __future__ import annotations

import fcntl
import os
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

from shipyard.errors import ConfigError, DatabaseLocked, DatabaseUnavailable, StoreError
from shipyard.store.models import SCHEMA_REVISION

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database URL {url!r} is not a valid SQLAlchemy URL; expected e.g. "
            "sqlite:///path/shipyard.db or postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"database backend {backend!r} is not supported; use sqlite or postgresql"
        )
    return parsed


def _safe_url(url: URL) -> str:
    """The URL with its password masked: it appears in error messages."""
    return url.render_as_string(hide_password=True)


def _forget_in_forked_children(engine: Engine) -> None:
    """After a fork, the child drops (without closing) the connections it inherited."""
    reference = weakref.ref(engine)

    def forget() -> None:
        alive = reference()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=forget)


class MetadataStore:
    """Typed access to the metadata database, with migrations and clear errors."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = _parse_url(url)
        self.timeout = timeout
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._engine = self._create_engine(immediate=False)
        # SQLite writers take the write lock up front; PostgreSQL needs no second engine.
        self._write_engine = self._create_engine(immediate=True) if self.is_sqlite else self._engine
        self._read_sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"MetadataStore({_safe_url(self.url)!r})"

    @property
    def engine(self) -> Engine:
        return self._engine

    def _create_engine(self, *, immediate: bool) -> Engine:
        if self.is_sqlite:
            return self._create_sqlite_engine(immediate=immediate)
        try:
            return create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(self.timeout))},
            )
        except (NoSuchModuleError, ModuleNotFoundError):
            raise ConfigError(
                "PostgreSQL support is not installed: pip install 'shipyard[postgres]'"
            ) from None

    def _create_sqlite_engine(self, *, immediate: bool) -> Engine:
        # Pooled: opening a SQLite connection (and its PRAGMAs) costs a millisecond, which a
        # run pays on every flush. A forked child drops the parent's pooled connections
        # without closing them, so the two processes never share one.
        engine = create_engine(self.url, connect_args={"timeout": self.timeout})
        _forget_in_forked_children(engine)
        busy_ms = int(self.timeout * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Hand transaction control to SQLAlchemy's "begin" event below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

        return engine

    # -- sessions -------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it does is committed."""
        with self._translate_errors(), self._read_sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes commit together at the end, or not at all."""
        with self._translate_errors(), self._write_sessions() as session, session.begin():
            yield session

    def write_with_retry(self, work: Callable[[Session], T], attempts: int = 20) -> T:
        """Run `work` in a write transaction, again if a concurrent writer won a unique race.

        Used where two writers can pick the same next number (PostgreSQL read committed).
        """
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return work(session)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise StoreError(
                        f"gave up after {attempts} attempts: concurrent writers kept "
                        "conflicting; retry the command"
                    ) from None
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise self._describe(exc) from None

    def _describe(self, exc: OperationalError) -> StoreError:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        where = _safe_url(self.url)
        if self.is_sqlite and "locked" in reason:
            return DatabaseLocked(
                f"the metadata database {where} stayed locked by another process for "
                f"{self.timeout:g} s; retry, or raise SHIPYARD_DATABASE_TIMEOUT"
            )
        return DatabaseUnavailable(
            f"cannot use the metadata database {where}: {reason}; check SHIPYARD_DATABASE_URL "
            "and that the database server is running and reachable"
        )

    # -- schema ---------------------------------------------------------------------------

    # Alembic is imported only to migrate: it costs a third of a second at start-up.

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def head_revision(self) -> str:
        """The newest migration; `models.SCHEMA_REVISION` names it without importing Alembic."""
        return SCHEMA_REVISION

    def current_revision(self) -> str | None:
        with self._translate_errors(), self._engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes start at once."""
        try:
            if self.current_revision() == self.head_revision():
                return
        except DatabaseLocked:
            pass  # another process is migrating this very database: wait for it below
        from alembic import command

        with self._translate_errors(), self._migration_lock():
            # Whoever held the lock before us may have done the work already.
            if self.current_revision() == self.head_revision():
                return
            config = self._alembic_config()
            with self._write_engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")

    def require_schema(self) -> None:
        """Fail clearly when the database was never initialised or is from another version."""
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return
        if current is None:
            raise ConfigError(
                f"the metadata database {_safe_url(self.url)} has no shipyard schema; "
                "run `shipyard init` first"
            )
        raise ConfigError(
            f"the metadata database {_safe_url(self.url)} is at schema {current}, this shipyard "
            f"expects {head}; run `shipyard init` to migrate it"
        )

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.is_sqlite:
            database = self.url.database or ""
            lock_path = Path(database + ".migrate.lock")
            with lock_path.open("w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        else:
            # A transaction-scoped advisory lock would end with Alembic's own transaction.
            with self._engine.connect() as connection:
                connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
                try:
                    yield
                finally:
                    connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
                    connection.commit()

    def table_names(self) -> list[str]:
        with self._translate_errors():
            return sorted(inspect(self._engine).get_table_names())

    def dispose(self) -> None:
        self._engine.dispose()
        self._write_engine.dispose()
