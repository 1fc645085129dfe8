"""Dataset versions: immutable, content-addressed, profiled, with lineage.

`add()` reads a source once (see `sources`), then in one metadata transaction finds or creates
the dataset, reuses the version that has the same content hash if there is one, or commits the
staged blob and records the next version number. Concurrent writers of one dataset serialise
on SQLite's write lock, or on PostgreSQL's row lock plus unique constraints with a retry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.data.profile import TableProfile
from shipyard.data.schema import Schema, infer_schema
from shipyard.data.sources import BATCH_ROWS, Ingested, ingest
from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project, current
from shipyard.store.artifacts import Progress
from shipyard.store.models import DatasetRecord, DatasetVersionRecord

if TYPE_CHECKING:
    import pandas as pd

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    """A dataset name is a plain word: it may become part of a path or a URL later."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidInput(
            f"dataset name {name!r} is invalid: expected 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, with no path separators or '..'"
        )
    return name


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset."""

    name: str
    version: int
    content_hash: str
    artifact: str
    size_bytes: int
    num_rows: int
    num_columns: int
    source_format: str
    source: str
    schema: Schema
    parent: str | None
    split: dict[str, Any] | None
    run_id: str | None
    description: str
    created_at: datetime
    created_by: str
    created: bool = field(default=False, compare=False)
    """True when the call that returned this version created it (False: same content existed)."""
    _project: Project | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.ref

    @property
    def project(self) -> Project:
        return self._project if self._project is not None else current()

    @property
    def profile(self) -> TableProfile:
        with self.project.metadata.read() as session:
            data = session.scalar(
                select(DatasetVersionRecord.profile)
                .join(DatasetRecord)
                .where(
                    DatasetRecord.name == self.name, DatasetVersionRecord.version == self.version
                )
            )
        loaded = TableProfile.from_dict(data or {"columns": {}})
        # PostgreSQL's JSONB does not keep key order: put the columns back in schema order.
        return TableProfile({name: loaded.columns[name] for name in self.schema.names})

    def path(self, progress: Progress | None = None) -> Path:
        """A local Parquet file with this version's data, verified against its sha256."""
        return self.project.artifacts.fetch(self.artifact, progress)

    def iter_batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(self.path()).iter_batches(batch_size=BATCH_ROWS, columns=columns)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(), columns=columns)

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        frame: pd.DataFrame = self.to_arrow(columns).to_pandas(types_mapper=_nullable_dtype)
        return frame


def _nullable_dtype(arrow_type: pa.DataType) -> Any:
    """Integers and booleans become pandas' nullable dtypes, so a missing value stays missing
    instead of turning the column into floats."""
    import pandas as pd

    if pa.types.is_integer(arrow_type):
        # int64 -> Int64, uint8 -> UInt8: pandas' names of its nullable integer dtypes
        return pd.api.types.pandas_dtype(
            str(arrow_type).replace("uint", "UInt").replace("int", "Int")
        )
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def _parent_ref(session: Session, parent_id: int | None) -> str | None:
    if parent_id is None:
        return None
    row = session.execute(
        select(DatasetRecord.name, DatasetVersionRecord.version)
        .join(DatasetVersionRecord.dataset)
        .where(DatasetVersionRecord.id == parent_id)
    ).one()
    return f"{row.name}@{row.version}"


def _to_version(
    session: Session,
    record: DatasetVersionRecord,
    name: str,
    project: Project,
    created: bool = False,
) -> DatasetVersion:
    return DatasetVersion(
        name=name,
        version=record.version,
        content_hash=record.content_hash,
        artifact=record.artifact,
        size_bytes=record.size_bytes,
        num_rows=record.num_rows,
        num_columns=record.num_columns,
        source_format=record.source_format,
        source=record.source,
        schema=Schema.from_dict(record.schema),
        parent=_parent_ref(session, record.parent_id),
        split=record.split,
        run_id=record.run_id,
        description=record.description,
        created_at=record.created_at,
        created_by=record.created_by,
        created=created,
        _project=project,
    )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`name`, `name@latest` or `name@3` as (name, version or None for the latest)."""
    name, _, version = ref.partition("@")
    check_name(name)
    if version in ("", "latest"):
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInput(
            f"version {version!r} in {ref!r} is invalid: expected a number from 1 or 'latest'"
        )
    return name, int(version)


def _dataset_names(session: Session) -> list[str]:
    return list(session.scalars(select(DatasetRecord.name)))


def _missing_dataset(session: Session, name: str) -> NotFound:
    close = difflib.get_close_matches(name, _dataset_names(session), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `shipyard data list` shows them"
    return NotFound(f"no dataset named {name!r}{hint}")


def get(ref: str, *, project: Project | None = None) -> DatasetVersion:
    """A dataset version by reference: `name` (latest), `name@latest` or `name@N`."""
    project = project or current()
    name, number = parse_ref(ref)
    with project.metadata.read() as session:
        dataset = session.scalar(select(DatasetRecord).where(DatasetRecord.name == name))
        if dataset is None:
            raise _missing_dataset(session, name)
        query = select(DatasetVersionRecord).where(DatasetVersionRecord.dataset_id == dataset.id)
        if number is None:
            query = query.order_by(DatasetVersionRecord.version.desc()).limit(1)
        else:
            query = query.where(DatasetVersionRecord.version == number)
        record = session.scalar(query)
        if record is None:
            latest = session.scalar(
                select(func.max(DatasetVersionRecord.version)).where(
                    DatasetVersionRecord.dataset_id == dataset.id
                )
            )
            raise NotFound(
                f"dataset {name!r} has no version {number}; its versions are 1 to {latest}"
            )
        return _to_version(session, record, name, project)


def versions(name: str, *, project: Project | None = None) -> list[DatasetVersion]:
    """Every version of a dataset, oldest first."""
    project = project or current()
    check_name(name)
    with project.metadata.read() as session:
        dataset = session.scalar(select(DatasetRecord).where(DatasetRecord.name == name))
        if dataset is None:
            raise _missing_dataset(session, name)
        return [_to_version(session, record, name, project) for record in dataset.versions]


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    description: str
    versions: int
    latest: DatasetVersion


def list_datasets(*, project: Project | None = None) -> list[DatasetSummary]:
    """Every dataset with its latest version, by name."""
    project = project or current()
    with project.metadata.read() as session:
        latest_numbers = (
            select(
                DatasetVersionRecord.dataset_id,
                func.max(DatasetVersionRecord.version).label("latest"),
                func.count().label("count"),
            )
            .group_by(DatasetVersionRecord.dataset_id)
            .subquery()
        )
        rows = session.execute(
            select(DatasetRecord, DatasetVersionRecord, latest_numbers.c.count)
            .join(latest_numbers, latest_numbers.c.dataset_id == DatasetRecord.id)
            .join(
                DatasetVersionRecord,
                (DatasetVersionRecord.dataset_id == DatasetRecord.id)
                & (DatasetVersionRecord.version == latest_numbers.c.latest),
            )
            .order_by(DatasetRecord.name)
        ).all()
        return [
            DatasetSummary(
                name=dataset.name,
                description=dataset.description,
                versions=count,
                latest=_to_version(session, record, dataset.name, project),
            )
            for dataset, record, count in rows
        ]


def add(
    source: str | Path | pa.Table | pd.DataFrame,
    name: str,
    *,
    description: str = "",
    format: str | None = None,
    column_types: dict[str, str] | None = None,
    parent: DatasetVersion | None = None,
    split: dict[str, Any] | None = None,
    run_id: str | None = None,
    source_label: str | None = None,
    progress: Progress | None = None,
    project: Project | None = None,
) -> DatasetVersion:
    """Store `source` as a new immutable version of dataset `name` (or return the same content's).

    `source` is a CSV/TSV/Parquet path, a pandas DataFrame or a pyarrow Table. `column_types`
    pins CSV columns whose inferred type would be wrong (e.g. `{"zip": "string"}`).
    `source_label` replaces the file path in the recorded lineage (e.g. for derived data).
    """
    check_name(name)
    project = project or current()
    project.metadata.require_schema()
    ingested = ingest(
        source, project.artifacts, format=format, column_types=column_types, progress=progress
    )
    if source_label is not None:
        ingested.source = source_label
    (version,) = record_all(project, [Pending(name, ingested, description, parent, split, run_id)])
    return version


@dataclass
class Pending:
    """An ingested source waiting to be recorded as a version of dataset `name`."""

    name: str
    ingested: Ingested
    description: str = ""
    parent: DatasetVersion | None = None
    split: dict[str, Any] | None = None
    run_id: str | None = None


def record_all(project: Project, pending: list[Pending]) -> list[DatasetVersion]:
    """Record several ingested sources as versions in one transaction: all of them or none."""
    try:
        return project.metadata.write_with_retry(
            lambda session: [_record(session, project, item) for item in pending]
        )
    finally:
        for item in pending:
            project.artifacts.discard(item.ingested.staged)  # a no-op once committed


def _record(session: Session, project: Project, item: Pending) -> DatasetVersion:
    name, ingested, description = item.name, item.ingested, item.description
    parent, split, run_id = item.parent, item.split, item.run_id
    dataset = session.scalar(
        select(DatasetRecord).where(DatasetRecord.name == name).with_for_update()
    )
    if dataset is None:
        dataset = DatasetRecord(name=name, description=description, created_by=project.user)
        session.add(dataset)
        session.flush()  # a concurrent creator makes this fail; the caller retries
    same_content = session.scalar(
        select(DatasetVersionRecord).where(
            DatasetVersionRecord.dataset_id == dataset.id,
            DatasetVersionRecord.content_hash == ingested.content_hash,
        )
    )
    if same_content is not None:
        if same_content.artifact == ingested.staged.digest:
            project.artifacts.commit(ingested.staged)  # repairs the blob if it was corrupted
        return _to_version(session, same_content, name, project, created=False)
    number = (
        session.scalar(
            select(func.max(DatasetVersionRecord.version)).where(
                DatasetVersionRecord.dataset_id == dataset.id
            )
        )
        or 0
    ) + 1
    blob = project.artifacts.commit(ingested.staged)
    record = DatasetVersionRecord(
        dataset_id=dataset.id,
        version=number,
        content_hash=ingested.content_hash,
        artifact=blob.digest,
        size_bytes=blob.size,
        num_rows=ingested.profile.num_rows,
        num_columns=len(ingested.arrow_schema),
        source_format=ingested.source_format,
        source=ingested.source,
        schema=infer_schema(ingested.arrow_schema, ingested.profile).to_dict(),
        profile=ingested.profile.to_dict(),
        parent_id=_version_id(session, parent) if parent is not None else None,
        split=split,
        run_id=run_id,
        description=description,
        created_by=project.user,
    )
    session.add(record)
    session.flush()
    return _to_version(session, record, name, project, created=True)


def _version_id(session: Session, version: DatasetVersion) -> int:
    found = session.scalar(
        select(DatasetVersionRecord.id)
        .join(DatasetVersionRecord.dataset)
        .where(DatasetRecord.name == version.name, DatasetVersionRecord.version == version.version)
    )
    if found is None:
        raise NotFound(f"parent dataset version {version.ref} does not exist")
    return found


__all__ = [
    "DatasetSummary",
    "DatasetVersion",
    "add",
    "check_name",
    "get",
    "list_datasets",
    "parse_ref",
    "versions",
]
