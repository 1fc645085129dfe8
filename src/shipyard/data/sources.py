"""Reading what users hand to `data.add`: CSV and Parquet files, pandas and Arrow tables.

Each source is read once, as a stream of Arrow record batches, while three things happen
side by side: the profile is built, the bytes are hashed, and the canonical Parquet copy is
staged in the artifact store. Parquet files are stored as they are (their hash and copy run
on a second thread); CSV is converted to Parquet batch by batch; in-memory tables are written
out once. Nothing becomes visible in the store until the caller commits the staged blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipyard.data.profile import TableProfile
from shipyard.errors import InvalidInput
from shipyard.store import ArtifactStore, Staged, sha256_file
from shipyard.store.artifacts import Progress

BATCH_ROWS = 32 * 1024
CSV_BLOCK_BYTES = 4 * 1024 * 1024
# Parquet is read through a buffer of this size per column, page by page, rather than whole
# column chunks at once: a file written as one row group would otherwise be held in memory.
PARQUET_BUFFER_BYTES = 1024 * 1024
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".zst")

# Types a user can name for a CSV column whose inference would go wrong.
NAMED_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "category": pa.dictionary(pa.int32(), pa.string()),
    "datetime": pa.timestamp("us"),
    "date": pa.date32(),
}


@dataclass
class Ingested:
    """A source read through once: its hash, its staged Parquet copy, schema and profile."""

    content_hash: str
    staged: Staged
    arrow_schema: pa.Schema
    profile: TableProfile
    source_format: str
    source: str


def detect_format(path: Path, declared: str | None = None) -> str:
    if declared is not None:
        if declared not in set(FORMATS.values()):
            raise InvalidInput(
                f"format {declared!r} is not supported; expected one of csv, tsv, parquet"
            )
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in FORMATS:
        return FORMATS[suffixes[-1]]
    raise InvalidInput(
        f"cannot tell the format of {path.name}: expected a name ending in .csv, .tsv, "
        ".parquet (optionally .gz/.bz2/.zst for text), or pass format='csv'|'tsv'|'parquet'"
    )


def ingest(
    source: Any,
    artifacts: ArtifactStore,
    *,
    format: str | None = None,
    column_types: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Ingested:
    """Read `source` (a path, a pandas DataFrame or a pyarrow Table) into a staged version."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        _check_file(path)
        kind = detect_format(path, format)
        if kind == "parquet":
            return _ingest_parquet(path, artifacts, progress)
        return _ingest_csv(path, kind, artifacts, column_types or {}, progress)
    return _ingest_table(_as_table(source), artifacts)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInput(f"file {path} does not exist; check the path")
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file; pass a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"file {path} is empty; expected a header row and at least one data row")


def _as_table(source: Any) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    import pandas as pd  # imported here: it is slow to import and only frames need it

    if isinstance(source, pd.DataFrame):
        try:
            return pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(
                f"the DataFrame cannot be stored: {exc}; give each column a single type"
            ) from None
    raise InvalidInput(
        f"cannot add a {type(source).__name__}: expected a file path, a pandas DataFrame "
        "or a pyarrow Table"
    )


def _require_rows(profile: TableProfile, what: str) -> None:
    if not profile.columns:
        raise InvalidInput(f"{what} has no columns; expected a table with a header")
    if profile.num_rows == 0:
        raise InvalidInput(f"{what} has a header but no rows; expected at least one data row")


def _ingest_parquet(path: Path, artifacts: ArtifactStore, progress: Progress | None) -> Ingested:
    try:
        parquet = pq.ParquetFile(path, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{path} is not a readable Parquet file: {exc}") from None
    # The copy-and-hash of the bytes and the profile pass overlap: both release the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        staging = pool.submit(artifacts.stage_file, path, progress)
        try:
            profile = TableProfile.of_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)
            )
            _require_rows(profile, f"Parquet file {path}")
        except (pa.ArrowInvalid, OSError) as exc:
            _discard_when_done(staging, artifacts)
            raise InvalidInput(f"cannot read Parquet file {path}: {exc}") from None
        except BaseException:
            _discard_when_done(staging, artifacts)
            raise
        staged = staging.result()
    return Ingested(
        staged.digest, staged, parquet.schema_arrow, profile, "parquet", str(path.resolve())
    )


def _discard_when_done(staging: Future[Staged], artifacts: ArtifactStore) -> None:
    with contextlib.suppress(Exception):  # the staging itself failed: nothing to discard
        artifacts.discard(staging.result())


def _csv_options(
    kind: str, column_types: dict[str, str]
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    types = {}
    for column, name in column_types.items():
        if name not in NAMED_TYPES:
            raise InvalidInput(
                f"type {name!r} for column {column!r} is unknown; expected one of "
                + ", ".join(NAMED_TYPES)
            )
        types[column] = NAMED_TYPES[name]
    return (
        pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ","),
        pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )


def _ingest_csv(
    path: Path,
    kind: str,
    artifacts: ArtifactStore,
    column_types: dict[str, str],
    progress: Progress | None,
) -> Ingested:
    read_options, parse_options, convert_options = _csv_options(kind, column_types)
    with ThreadPoolExecutor(max_workers=1) as pool, tempfile.TemporaryDirectory() as scratch:
        hashing = pool.submit(sha256_file, path, progress)
        converted = Path(scratch) / "data.parquet"
        try:
            schema, profile = _convert_csv(
                path, converted, read_options, parse_options, convert_options
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(_describe_csv_error(path, exc)) from None
        _require_rows(profile, f"CSV file {path}")
        staged = artifacts.stage_file(converted)
        content_hash = hashing.result()
    return Ingested(content_hash, staged, schema, profile, kind, str(path.resolve()))


def _convert_csv(
    path: Path,
    target: Path,
    read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
) -> tuple[pa.Schema, TableProfile]:
    stream = pa.input_stream(str(path), compression="detect")
    with pacsv.open_csv(stream, read_options, parse_options, convert_options) as reader:
        schema = reader.schema
        _check_header(schema, path)
        profile = TableProfile.empty(schema)
        with pq.ParquetWriter(target, schema) as writer:
            for batch in reader:
                profile.update(batch)
                writer.write_batch(batch)
    return schema, profile


def _check_header(schema: pa.Schema, path: Path) -> None:
    names = schema.names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(
            f"CSV file {path} repeats the column name(s) {', '.join(duplicates)}; "
            "expected unique names in the header"
        )
    if any(not name.strip() for name in names):
        raise InvalidInput(f"CSV file {path} has an empty column name in its header")


_CONVERSION = re.compile(
    r"In CSV column #(?P<col>\d+): (?:Row #(?P<row>\d+): )?"
    r"CSV conversion error to (?P<type>[\w\[\], ]+): invalid value '(?P<value>[^']*)'"
)


def _describe_csv_error(path: Path, exc: Exception) -> str:
    message = str(exc).strip()
    if "Empty CSV file" in message:
        return f"file {path} is empty; expected a header row and at least one data row"
    match = _CONVERSION.search(message)
    if match:
        column = _column_name(path, int(match["col"]))
        return (
            f"column {column!r} in {path} changes type mid-file: the first rows made it "
            f"{match['type']}, but {_row(match['row'])}holds {match['value']!r}; fix that value or "
            f"declare the column's type (--type {column}=string, or float for numbers)"
        )
    first_line = message.splitlines()[0]
    return (
        f"malformed CSV file {path}: {first_line}; fix the file (delimiter, quoting, column count)"
    )


def _row(number: str | None) -> str:
    # pyarrow names the row only when the reader counts rows, which streaming reads do not.
    return f"row {number} " if number else "a later row "


def _column_name(path: Path, index: int) -> str:
    try:
        stream = pa.input_stream(str(path), compression="detect")
        with pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
            return str(reader.schema.names[index])
    except (pa.ArrowInvalid, IndexError):
        return f"#{index}"


class _HashingSink:
    """A write-only file that only hashes what is written to it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        return

    def close(self) -> None:
        self.closed = True


def table_content_hash(table: pa.Table) -> str:
    """A hash of a table's data and types, stable across pyarrow and pandas versions.

    Parquet footers name the writer's version, so hashing Parquet bytes would give a new
    version for the same data after an upgrade; the Arrow IPC stream of the combined table
    depends only on the values and the schema.
    """
    canonical = table.replace_schema_metadata(None).combine_chunks()
    sink = _HashingSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), canonical.schema) as writer:
        for batch in canonical.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
    return sink.digest.hexdigest()


def _ingest_table(table: pa.Table, artifacts: ArtifactStore) -> Ingested:
    table = table.replace_schema_metadata(None)
    profile = TableProfile.of_batches(table.schema, table.to_batches(max_chunksize=BATCH_ROWS))
    _require_rows(profile, "the table")
    with tempfile.TemporaryDirectory() as scratch:
        written = Path(scratch) / "data.parquet"
        pq.write_table(table, written)
        staged = artifacts.stage_file(written)
    return Ingested(
        table_content_hash(table), staged, table.schema, profile, "table", "in-memory table"
    )


def open_batches(
    path: str | Path,
    *,
    format: str | None = None,
    column_types: dict[str, str] | None = None,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A file's schema and a stream of its batches, read lazily (used to check a new batch)."""
    file = Path(path).expanduser()
    _check_file(file)
    kind = detect_format(file, format)
    if kind == "parquet":
        try:
            parquet = pq.ParquetFile(file)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{file} is not a readable Parquet file: {exc}") from None
        return parquet.schema_arrow, _translated(file, parquet.iter_batches(batch_size=BATCH_ROWS))
    read_options, parse_options, convert_options = _csv_options(kind, column_types or {})
    try:
        stream = pa.input_stream(str(file), compression="detect")
        reader = pacsv.open_csv(stream, read_options, parse_options, convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(_describe_csv_error(file, exc)) from None
    _check_header(reader.schema, file)
    return reader.schema, _translated(file, iter(reader))


def _translated(path: Path, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(_describe_csv_error(path, exc)) from None
