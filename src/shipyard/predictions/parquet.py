"""The prediction log's Parquet layout: the schema, where each file goes, how it is written.

    FOLDER/model=NAME/hour=YYYY-MM-DDTHH/part-WRITER-TOKEN-SEQ.parquet

One file holds records of one model whose `time` falls in one UTC hour (Hive partitioning, so
DuckDB, Spark, pandas and pyarrow all read the folder as one table with `model` and `hour`
columns). A file is written under a hidden temporary name (`.part-....parquet.tmp`) and renamed
when complete, so a reader never sees half a file and a killed writer leaves, at worst, a hidden
temporary file that every reader skips. On an object store (S3) the upload itself is atomic: an
object appears whole or not at all, so it is written under its final name.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from shipyard.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.serving.record import PredictionRecord

COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "string"),
    ("time", "timestamp[us, UTC]"),
    ("model", "string"),
    ("version", "int64"),
    ("arm", "string"),
    ("protocol", "string"),
    ("inputs", "string (JSON)"),
    ("outputs", "string (JSON)"),
    ("latency_ms", "double"),
    ("filters", "list<string>"),
    ("hooks", "string (JSON: hook name -> sha256)"),
    ("status", "int32"),
)
PARTITION_COLUMNS = ("model", "hour")  # `hour` only in the path: "YYYY-MM-DDTHH", UTC
COMPRESSION = "zstd"
_PART = re.compile(r"^part-.+\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_MODEL_FOLDER = re.compile(r"^model=(.+)$")
_HOUR_FOLDER = re.compile(r"^hour=(.+)$")
# Above this many partition folders, an object store's files are found by listing whole model
# trees rather than one request per folder.
_REMOTE_LISTINGS = 32


def schema() -> pa.Schema:
    """The schema of every file (without the `hour` partition column)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.int64()),
            ("arm", pa.string()),
            ("protocol", pa.string()),
            ("inputs", pa.string()),
            ("outputs", pa.string()),
            ("latency_ms", pa.float64()),
            ("filters", pa.list_(pa.string())),
            ("hooks", pa.string()),
            ("status", pa.int32()),
        ]
    )


def table_schema() -> pa.Schema:
    """What a reader sees: the file schema plus the `hour` partition column."""
    import pyarrow as pa

    return schema().append(pa.field("hour", pa.string()))


def hour_of(time: float) -> str:
    """The UTC hour a record's time falls in, as its partition value: `2024-05-01T13`."""
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H")


def partition_of(record: PredictionRecord) -> tuple[str, str]:
    return record.model, hour_of(record.time)


def partition_path(model: str, hour: str) -> str:
    """`model=NAME/hour=HOUR`; a name with characters unsafe in a path is %-escaped (as Hive)."""
    return f"model={quote(model, safe='')}/hour={hour}"


def to_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """Records as one Arrow table; raises (TypeError, ValueError, pa.ArrowException) on a field
    of the wrong type.

    The writer thread runs this while holding the GIL, so every Python-level step per record
    stalls the event loop beside it (a 4 ms build here was the server's p99): the time column is
    converted in Arrow, and the few distinct hook maps are serialised once per batch.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    seconds = pa.array([r.time for r in records], pa.float64())
    micros = pc.round(pc.multiply(seconds, 1_000_000)).cast(pa.int64())
    return pa.Table.from_arrays(
        [
            pa.array([r.request_id for r in records], pa.string()),
            micros.cast(pa.timestamp("us", tz="UTC")),
            pa.array([r.model for r in records], pa.string()),
            pa.array([r.version for r in records], pa.int64()),
            pa.array([r.arm for r in records], pa.string()),
            pa.array([r.protocol for r in records], pa.string()),
            pa.array([r.inputs for r in records], pa.string()),
            pa.array([r.outputs for r in records], pa.string()),
            pa.array([r.latency_ms for r in records], pa.float64()),
            _filters_column(records),
            pa.array(_hooks_texts(records), pa.string()),
            pa.array([r.status for r in records], pa.int32()),
        ],
        schema=schema(),
    )


def _filters_column(records: Sequence[PredictionRecord]) -> pa.Array:
    """The `filters` lists from one flat array and offsets (most records have none)."""
    import pyarrow as pa

    offsets = [0]
    names: list[str] = []
    for record in records:
        if record.filters:
            names.extend(record.filters)
        offsets.append(len(names))
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(names, pa.string()), type=pa.list_(pa.string())
    )


def _hooks_texts(records: Sequence[PredictionRecord]) -> list[str]:
    """Each record's hook map as sorted JSON. Records of one model share one map object, so
    each distinct map (by identity: all are alive during the call) is serialised once."""
    texts: dict[int, str] = {}
    out: list[str] = []
    for record in records:
        hooks = record.hooks
        if not hooks:
            out.append("{}")
            continue
        text = texts.get(id(hooks))
        if text is None:
            text = texts[id(hooks)] = json.dumps(hooks, sort_keys=True)
        out.append(text)
    return out


def encode(
    records: Sequence[PredictionRecord],
) -> tuple[pa.Table | None, list[tuple[PredictionRecord, str]]]:
    """The group's table, leaving out (and naming) records that cannot be encoded."""
    try:
        return to_table(records), []
    except Exception:
        pass
    good: list[PredictionRecord] = []
    bad: list[tuple[PredictionRecord, str]] = []
    for record in records:
        try:
            to_table([record])
        except Exception as exc:
            bad.append((record, f"{type(exc).__name__}: {exc}"))
        else:
            good.append(record)
    return (to_table(good) if good else None), bad


def group_by_partition(
    records: Iterable[PredictionRecord],
) -> dict[tuple[str, str], list[PredictionRecord]]:
    """Records by (model, hour), each group in arrival order."""
    groups: dict[tuple[str, str], list[PredictionRecord]] = {}
    for record in records:
        groups.setdefault(partition_of(record), []).append(record)
    return groups


def writer_name(worker: str | None = None) -> str:
    """What names this writer's files: the worker (or host and pid) and a random token, so two
    writers, or one restarted with the same pid (pid 1 in a container), never clash."""
    who = worker if worker else f"{socket.gethostname()}-{os.getpid()}"
    return f"{_UNSAFE.sub('_', who)}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Partition:
    """One partition folder of the log: a model's records of one UTC hour."""

    model: str
    hour: str  # "YYYY-MM-DDTHH"
    path: str  # the folder, under the log's root


@dataclass(frozen=True)
class WrittenFile:
    path: str
    model: str
    hour: str
    rows: int


class PartitionedFolder:
    """A folder of partitioned Parquet files: local, or any fsspec URL (s3://bucket/prefix)."""

    def __init__(
        self,
        url: str | Path,
        storage_options: dict[str, Any] | None = None,
        *,
        fsync: bool = False,
    ) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        text = str(url)
        options = dict(storage_options or {})
        if "://" in text and not text.startswith("file://"):
            options.setdefault("use_listings_cache", False)  # other writers add files at any time
        try:
            self.fs, root = fsspec.core.url_to_fs(text, **options)
        except (ImportError, ValueError) as exc:
            hint = " (pip install 'shipyard[s3]')" if text.startswith("s3") else ""
            raise ConfigError(f"cannot open prediction log folder {text!r}: {exc}{hint}") from None
        self.url = text
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(Path(root).resolve()) if self.is_local else root.rstrip("/")
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"PartitionedFolder({self.url!r})"

    def write(self, model: str, hour: str, table: pa.Table, name: str) -> WrittenFile:
        """Write one group's table as `name` in its partition; complete or not there at all."""
        import pyarrow.parquet as pq

        folder = f"{self.root}/{partition_path(model, hour)}"
        final = f"{folder}/{name}"
        if not self.is_local:
            with self.fs.open(final, "wb") as handle:  # an object appears whole or not at all
                pq.write_table(table, handle, compression=COMPRESSION)
            return WrittenFile(final, model, hour, table.num_rows)
        Path(folder).mkdir(parents=True, exist_ok=True)
        temporary = f"{folder}/.{name}.tmp"
        try:
            with Path(temporary).open("wb") as handle:
                pq.write_table(table, handle, compression=COMPRESSION)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            Path(temporary).replace(final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return WrittenFile(final, model, hour, table.num_rows)

    def partitions(
        self,
        *,
        model: str | None = None,
        first_hour: str | None = None,
        last_hour: str | None = None,
    ) -> list[Partition]:
        """The partition folders (of `model`, with `first_hour <= hour <= last_hour` when
        given), by model then hour. Only folders are listed, so asking for one model's day
        costs two listings however large the log; folders outside the layout are skipped."""
        found: list[Partition] = []
        for model_name, is_folder in self._children(self.root):
            match = _MODEL_FOLDER.match(model_name)
            if not is_folder or match is None:
                continue
            name = unquote(match.group(1))
            if model is not None and name != model:
                continue
            model_folder = f"{self.root}/{model_name}"
            for hour_name, hour_is_folder in self._children(model_folder):
                hour = _HOUR_FOLDER.match(hour_name)
                if not hour_is_folder or hour is None:
                    continue
                value = hour.group(1)
                if first_hour is not None and value < first_hour:
                    continue
                if last_hour is not None and value > last_hour:
                    continue
                found.append(Partition(name, value, f"{model_folder}/{hour_name}"))
        return sorted(found, key=lambda p: (p.model, p.hour))

    def partition_files(self, partitions: Iterable[Partition]) -> list[str]:
        """The finished part files of these partitions, in name order (temporary and foreign
        files skipped)."""
        wanted = list(partitions)
        if not self.is_local and len(wanted) > _REMOTE_LISTINGS:
            # One listing per folder would be one request each: list the models' trees instead
            # (paginated, a thousand keys a request) and keep the wanted folders' files.
            folders = {p.path for p in wanted}
            found: list[str] = []
            for model_folder in sorted({p.path.rsplit("/", 1)[0] for p in wanted}):
                found += [f for f in self._find(model_folder) if f.rsplit("/", 1)[0] in folders]
            return sorted(f for f in found if _PART.match(f.rsplit("/", 1)[-1]))
        files = [
            f"{p.path}/{name}"
            for p in wanted
            for name, is_folder in self._children(p.path)
            if not is_folder and _PART.match(name)
        ]
        return sorted(files)

    def files(
        self,
        *,
        model: str | None = None,
        first_hour: str | None = None,
        last_hour: str | None = None,
    ) -> list[str]:
        """Every finished part file (of `model`, in the hour range when given), in name order;
        temporary and foreign files are skipped."""
        if model is None and first_hour is None and last_hour is None and not self.is_local:
            return sorted(f for f in self._find(self.root) if _PART.match(f.rsplit("/", 1)[-1]))
        chosen = self.partitions(model=model, first_hour=first_hour, last_hour=last_hour)
        return self.partition_files(chosen)

    def _children(self, path: str) -> list[tuple[str, bool]]:
        """(name, is a folder) of each entry of `path`; nothing when it does not exist."""
        if self.is_local:
            try:
                with os.scandir(path) as entries:
                    return [(entry.name, entry.is_dir()) for entry in entries]
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            listed = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return [
            (str(entry["name"]).rstrip("/").rsplit("/", 1)[-1], entry.get("type") == "directory")
            for entry in listed
        ]

    def _find(self, path: str) -> list[str]:
        try:
            return list(self.fs.find(path))
        except FileNotFoundError:
            return []

    def dataset(self, files: Sequence[str] | None = None) -> Any:
        """A pyarrow dataset over `files` (default: every finished file), with `model` and
        `hour` from the path; an empty table with the same columns when there are none."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        files = self.files() if files is None else list(files)
        if not files:
            return table_schema().empty_table()
        partitioning = ds.partitioning(
            pa.schema([("model", pa.string()), ("hour", pa.string())]), flavor="hive"
        )
        return ds.dataset(
            files,
            schema=table_schema(),
            format="parquet",
            filesystem=None if self.is_local else self.fs,
            partitioning=partitioning,
            partition_base_dir=self.root,
        )

    def read(self) -> pa.Table:
        """Every record, as one table (for tests and small logs; use `query` for the rest)."""
        import pyarrow as pa

        data = self.dataset()
        return data if isinstance(data, pa.Table) else data.to_table()
