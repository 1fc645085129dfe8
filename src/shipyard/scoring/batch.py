"""Batch scoring: a model version over a dataset version, stored as a new dataset version.

    score("churn@champion", "customers@3")
      -> reads customers@3 in Arrow record batches of `chunk_rows` (never the whole table)
      -> Predictor.predict on each chunk (signature check, hooks, filters: the server's path)
      -> a Parquet file: the kept columns, the model's outputs, `filtered` when it has filters
      -> `customers-scored@N`, derived from customers@3 and produced by a "score" run whose
         inputs are customers@3 and the model version: `shipyard lineage` walks it both ways

Nothing is half-written. The model, the dataset, the columns and a first slice of rows are
checked before any run starts or any file is written; the scores go to a temporary file that
becomes a dataset version (and `out`) only once every chunk is scored. A failure leaves no
dataset version and no `out` file; the run is recorded as failed, with the error.

With `runner="dask"` (a LocalCluster started here) or `"dask://host:port"` (a running
scheduler), chunks are scored on the workers, each of which loads the model once. The driver
reads the chunks and writes the results in order, keeping a bounded number in flight, so the
output is byte-for-byte the in-process one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import ConfigError, InvalidInput, NotFound, ShipyardError
from shipyard.scoring.chunks import (
    FILTERED,
    ChunkOutput,
    ChunkPlan,
    ChunkTask,
    guarded,
    run_task,
)

if TYPE_CHECKING:
    from shipyard.data.versions import DatasetVersion
    from shipyard.project import Project
    from shipyard.registry.versions import ModelVersion
    from shipyard.serving.options import ModelOptions
    from shipyard.serving.predictor import Predictor

DEFAULT_CHUNK_ROWS = 10_000
CHECK_ROWS = 100  # rows scored up front, before anything is written
DASK_WORKERS = 2  # workers of the LocalCluster that runner="dask" starts
PARQUET_COMPRESSION = "zstd"

ProgressCallback = Callable[[int, int], None]
"""Called after each chunk with (rows scored so far, rows in the dataset)."""


class ScoringFailed(ShipyardError):
    """The model raised on some rows (not a signature problem): nothing was written."""


@dataclass(frozen=True)
class ScoreResult:
    """What a batch score made: the scored dataset version, and how it went."""

    dataset: DatasetVersion  # the scored version (with lineage to `source` and the model)
    source: DatasetVersion  # the version that was scored
    model: str  # the exact model version, NAME@N
    run_id: str  # the "score" run that records the lineage
    rows: int
    columns: list[str]  # the scored version's columns, in order
    withheld: dict[str, int]  # rows withheld per output filter
    out_of_range: dict[str, int]  # values outside the training range, per column
    out: Path | None  # the Parquet copy written to `out`, if any
    runner: str
    seconds: float
    created: bool = field(default=True)  # False: the same scores were already a version


def score(
    ref: str,
    dataset: str,
    *,
    out: str | Path | None = None,
    name: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    runner: str | None = None,
    keep_columns: Sequence[str] | None = None,
    project: Project | None = None,
    progress: ProgressCallback | None = None,
) -> ScoreResult:
    """Score dataset version `dataset` (`name` or `name@N`) with model `ref` (`NAME`,
    `NAME@N` or `NAME@ALIAS`) and store the result as a new version of dataset `name`
    (default `<dataset>-scored`), with lineage to both.

    `keep_columns`: dataset columns copied next to the predictions (default: every column
    that does not collide with an output name; `[]` for predictions only). `out`: also write
    the scored Parquet file there. `runner`: None/"local" (this process), "dask" (a
    LocalCluster of two workers) or "dask://host:port". `progress(done, total)` is called after
    each chunk.
    """
    from shipyard.data.versions import check_name
    from shipyard.data.versions import get as get_dataset
    from shipyard.project import current
    from shipyard.registry.versions import get as get_model
    from shipyard.serving.options import ModelOptions
    from shipyard.serving.predictor import Predictor

    started = time.perf_counter()
    project = project or current()
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be an integer >= 1; got {chunk_rows!r}")
    source = get_dataset(dataset, project=project)
    version = get_model(ref, project=project)  # the alias, resolved once for the whole job
    options = ModelOptions.from_settings(version.name, project.settings.serving.get(version.name))
    target = check_name(name if name is not None else f"{source.name}-scored")
    out_path = _check_out(out)
    executor = _Executor.parse(runner)
    inputs = _inputs(version, options, source)  # before the model is loaded: a quick refusal
    keep_columns = _requested(keep_columns, source)
    predictor = Predictor.load(version.ref, project=project, options=options)
    plan = _plan(predictor, source, inputs, keep_columns)
    with executor.started(project, predictor) as running:
        return _score(
            predictor, source, target, plan, running, project, out_path, chunk_rows, progress,
            started,
        )  # fmt: skip


def _score(
    predictor: Predictor,
    source: DatasetVersion,
    target: str,
    plan: ChunkPlan,
    running: _Running,
    project: Project,
    out_path: Path | None,
    chunk_rows: int,
    progress: ProgressCallback | None,
    started: float,
) -> ScoreResult:
    from shipyard.data.versions import add
    from shipyard.tracking.runs import RunOrigin, start_run

    params = {
        "model": predictor.ref,
        "dataset": source.ref,
        "output": target,
        "chunk_rows": chunk_rows,
        "runner": running.name,
        "keep_columns": list(plan.keep),
    }
    origin = RunOrigin(kind="score", seed_process=False)
    name = f"score {predictor.ref} on {source.ref}"
    with start_run(name, params=params, project=project, origin=origin) as run, \
            tempfile.TemporaryDirectory(prefix="shipyard-score-") as scratch:  # fmt: skip
        run.log_input("dataset", source)
        run.record_stored("input", "model", _model_value(predictor, project))
        scores = Path(scratch) / "scores.parquet"
        written = _write(predictor, source, plan, running, scores, chunk_rows, progress)
        pending_out = _stage_out(scores, out_path)
        try:
            scored = add(
                scores,
                target,
                description=f"{predictor.ref} scores of {source.ref}",
                parent=source,
                run_id=run.id,
                source_label=f"score {predictor.ref} on {source.ref}",
                project=project,
            )
        except BaseException:
            if pending_out is not None:
                pending_out.unlink(missing_ok=True)
            raise
        run.log_artifact("scores", scored)
        seconds = time.perf_counter() - started
        run.log_metrics(
            {
                "rows": written.rows,
                "withheld": sum(written.withheld.values()),
                "seconds": seconds,
                "rows_per_second": written.rows / seconds if seconds > 0 else 0.0,
            }
        )
        if pending_out is not None and out_path is not None:
            pending_out.replace(out_path)
    return ScoreResult(
        dataset=scored,
        source=source,
        model=predictor.ref,
        run_id=run.id,
        rows=written.rows,
        columns=written.columns,
        withheld=dict(sorted(written.withheld.items())),
        out_of_range=dict(sorted(written.out_of_range.items())),
        out=out_path,
        runner=running.name,
        seconds=seconds,
        created=scored.created,
    )


# -- checks before anything is written --------------------------------------------------------


def _check_out(out: str | Path | None) -> Path | None:
    if out is None:
        return None
    path = Path(out).expanduser()
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise InvalidInput(
            f"--out {path} must name a Parquet file (ending in .parquet): the scores are Parquet"
        )
    if path.is_dir():
        raise InvalidInput(f"--out {path} is a folder; give a file name ending in .parquet")
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        raise InvalidInput(f"--out {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise InvalidInput(f"--out {path}: folder {folder} is not writable")
    return path.resolve()


def _inputs(version: ModelVersion, options: ModelOptions, source: DatasetVersion) -> list[str]:
    """The dataset columns handed to the model, checked against its signature."""
    columns = list(source.schema.names)
    signature = version.signature
    if signature is None or options.preprocess is not None:
        # Without a signature the model takes the table as it is; a pre-processor decides
        # itself which columns become the model's input.
        return columns
    inputs = list(signature.input_names)
    missing = [column for column in inputs if column not in columns]
    if missing:
        raise InvalidInput(
            f"dataset {source.ref} lacks the column(s) {', '.join(map(repr, missing))} that "
            f"model {version.ref} needs; the model takes {', '.join(inputs)}, and "
            f"{source.ref} has {', '.join(columns)}"
        )
    return inputs


def _plan(
    predictor: Predictor,
    source: DatasetVersion,
    inputs: list[str],
    keep_columns: Sequence[str] | None,
) -> ChunkPlan:
    """The columns to read and to keep, once the model has scored the first rows."""
    columns = list(source.schema.names)
    sample = _first_rows(source, inputs, CHECK_ROWS)
    tried = ChunkPlan(tuple(inputs), (), False)
    output = guarded(predictor, 0, sample, tried)
    checked = f"checked on the first {sample.num_rows} rows, before anything was written"
    if output.error_kind == "failed":
        raise ScoringFailed(
            f"model {predictor.ref} failed on {source.ref} ({checked}): {output.error}"
        )
    if output.error is not None or output.batch is None:
        raise InvalidInput(
            f"dataset {source.ref} does not fit model {predictor.ref} ({checked}): {output.error}"
        )
    reserved = {*output.batch.schema.names, FILTERED}
    if keep_columns is None:
        keep = [column for column in columns if column not in reserved]
    else:
        keep = list(keep_columns)
        clashing = [column for column in keep if column in reserved]
        if clashing:
            raise InvalidInput(
                f"cannot keep column(s) {', '.join(map(repr, clashing))}: the scores have "
                f"columns of that name ({', '.join(sorted(reserved))}); keep other columns"
            )
    return ChunkPlan(tuple(inputs), tuple(keep), bool(predictor.options.filters))


def _requested(keep_columns: Sequence[str] | None, source: DatasetVersion) -> list[str] | None:
    """The columns asked for, each once, every one of them in the dataset."""
    if keep_columns is None:
        return None
    if isinstance(keep_columns, str):
        keep_columns = [keep_columns]
    keep = list(dict.fromkeys(keep_columns))
    columns = source.schema.names
    unknown = [column for column in keep if column not in columns]
    if unknown:
        raise InvalidInput(
            f"cannot keep column(s) {', '.join(map(repr, unknown))}: dataset {source.ref} "
            f"has {', '.join(columns)}"
        )
    return keep


def _first_rows(source: DatasetVersion, columns: list[str], rows: int) -> pa.RecordBatch:
    parquet = pq.ParquetFile(source.path())
    for batch in parquet.iter_batches(batch_size=rows, columns=columns):
        return batch
    raise InvalidInput(f"dataset {source.ref} has no rows to score")


def _model_value(predictor: Predictor, project: Project) -> Any:
    """The model version as a run input: its manifest blob, with its reference for lineage."""
    from shipyard.tracking.values import StoredValue

    version = predictor.version
    size = 0
    with contextlib.suppress(ShipyardError, OSError):
        size = project.artifacts.size(version.artifact)
    return StoredValue(
        "model",
        version.artifact,
        size,
        {"ref": version.ref, "model": version.name, "version": version.version},
    )


# -- writing ----------------------------------------------------------------------------------


@dataclass
class _Written:
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    withheld: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)


def _chunks(
    source: DatasetVersion, plan: ChunkPlan, chunk_rows: int, spans: dict[int, tuple[int, int]]
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(index, batch) for each chunk, read lazily (at most a few chunks in memory); `spans`
    gets each chunk's first row and row count, for error messages."""
    columns = list(dict.fromkeys([*plan.inputs, *plan.keep]))
    parquet = pq.ParquetFile(source.path(), buffer_size=1 << 20, pre_buffer=False)
    first = 0
    for index, batch in enumerate(parquet.iter_batches(batch_size=chunk_rows, columns=columns)):
        spans[index] = (first, batch.num_rows)
        yield index, batch
        first += batch.num_rows


def _write(
    predictor: Predictor,
    source: DatasetVersion,
    plan: ChunkPlan,
    running: _Running,
    path: Path,
    chunk_rows: int,
    progress: ProgressCallback | None,
) -> _Written:
    written = _Written()
    writer: pq.ParquetWriter | None = None
    spans: dict[int, tuple[int, int]] = {}
    try:
        for output in running.map(predictor, plan, _chunks(source, plan, chunk_rows, spans)):
            first, rows = spans.pop(output.index)
            if output.error is not None or output.batch is None:
                _raise(output, predictor, source, first, rows)
            batch = output.batch
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression=PARQUET_COMPRESSION)
                written.columns = list(batch.schema.names)
            elif batch.schema != writer.schema:
                batch = _conform(batch, writer.schema, predictor, first)
            writer.write_batch(batch)
            written.rows += batch.num_rows
            _add_counts(written.withheld, output.withheld)
            _add_counts(written.out_of_range, output.out_of_range)
            if progress is not None:
                progress(written.rows, source.num_rows)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise InvalidInput(f"dataset {source.ref} has no rows to score")
    return written


def _raise(
    output: ChunkOutput, predictor: Predictor, source: DatasetVersion, first: int, rows: int
) -> NoReturn:
    where = f"rows {first:,} to {first + rows - 1:,} of {source.ref}"
    if output.error_kind == "NotFound":
        raise NotFound(f"{where}: {output.error}; nothing was written")
    if output.error_kind == "failed":
        raise ScoringFailed(
            f"model {predictor.ref} failed on {where}: {output.error}; nothing was written"
        )
    raise InvalidInput(
        f"{where}: {output.error} (a row number there counts from row {first:,} of the "
        "dataset); nothing was written"
    )


def _conform(batch: pa.RecordBatch, schema: pa.Schema, predictor: Predictor, first: int) -> Any:
    """A later chunk whose outputs came out with other types than the first chunk's."""
    if batch.schema.names != schema.names:
        raise ScoringFailed(
            f"model {predictor.ref} returned the outputs {batch.schema.names} from row {first:,} "
            f"on, where the first rows had {schema.names}; outputs must be the same for every row"
        )
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ScoringFailed(
            f"model {predictor.ref} returned outputs of other types from row {first:,} on "
            f"({batch.schema} vs {schema}): {exc}"
        ) from None


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def _stage_out(scores: Path, out: Path | None) -> Path | None:
    """A copy of the scores next to `out`, renamed into place once the version is recorded."""
    if out is None:
        return None
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    staged = Path(name)
    try:
        shutil.copyfile(scores, staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


# -- runners ----------------------------------------------------------------------------------


class _Running:
    """A started runner: scores chunks in order."""

    name = "in-process"

    def map(
        self, predictor: Predictor, plan: ChunkPlan, chunks: Iterator[tuple[int, pa.RecordBatch]]
    ) -> Iterator[ChunkOutput]:
        for index, batch in chunks:
            yield guarded(predictor, index, batch, plan)


class _DaskRunning(_Running):
    """Chunks on Dask workers, a bounded window in flight, results in submission order."""

    def __init__(self, client: Any, project: Project, name: str) -> None:
        self.client = client
        self.name = name
        settings = project.settings
        self.settings = settings.model_copy(update={"home": settings.home.resolve()})
        self.hook_path = str(Path.cwd())
        workers = len(client.scheduler_info().get("workers", {})) or 1
        self.window = 2 * workers

    def map(
        self, predictor: Predictor, plan: ChunkPlan, chunks: Iterator[tuple[int, pa.RecordBatch]]
    ) -> Iterator[ChunkOutput]:
        in_flight: deque[Any] = deque()
        try:
            for index, batch in chunks:
                task = ChunkTask(index, self.settings, predictor.ref, self.hook_path, plan, batch)
                in_flight.append(self.client.submit(run_task, task, pure=False))
                if len(in_flight) >= self.window:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()


@dataclass(frozen=True)
class _Executor:
    """A runner spec, checked: None (in-process), a LocalCluster, or a scheduler address."""

    address: str | None = None
    local_cluster: bool = False

    @classmethod
    def parse(cls, spec: str | None) -> _Executor:
        if spec is None or spec in ("local", "in-process"):
            return cls()
        if not isinstance(spec, str):
            raise InvalidInput(f"runner must be local, dask or dask://host:port; got {spec!r}")
        if spec == "dask":
            return cls(local_cluster=True)
        if spec.startswith("dask://"):
            address = spec.removeprefix("dask://").removeprefix("tcp://")
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise InvalidInput(f"a Dask runner address is dask://host:port; got {spec!r}")
            return cls(address=f"tcp://{address}")
        raise InvalidInput(f"unknown runner {spec!r}: expected local, dask, or dask://host:port")

    @contextlib.contextmanager
    def started(self, project: Project, predictor: Predictor) -> Iterator[_Running]:
        if self.address is None and not self.local_cluster:
            yield _Running()
            return
        distributed = _distributed()
        cluster: Any = None
        address = self.address
        if self.local_cluster:
            cluster = distributed.LocalCluster(
                n_workers=DASK_WORKERS,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
            address = cluster.scheduler_address
        else:
            assert address is not None
            from shipyard.pipelines.runners import check_scheduler_reachable

            check_scheduler_reachable(address)
        try:
            client = distributed.Client(address, timeout=30)
        except OSError as exc:
            if cluster is not None:
                cluster.close()
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}; check the address"
            ) from None
        try:
            yield _DaskRunning(client, project, f"dask ({address})")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _distributed() -> Any:
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise ConfigError(
            "the Dask runner needs dask.distributed: pip install 'shipyard[dask]'"
        ) from None


__all__ = ["DEFAULT_CHUNK_ROWS", "ScoreResult", "ScoringFailed", "score"]
