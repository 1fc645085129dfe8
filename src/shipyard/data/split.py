"""Reproducible splits of a dataset version into train / validation / test versions.

By ratio: each row gets its part from a seeded shuffle of exact part sizes, streamed batch by
batch, so the same parent and seed always give the same rows in the same parts (and so the
same content hashes, which makes a repeated split reuse its versions). By time: rows before
each cutoff of a time column go to the earlier part; the cutoffs are given, or taken from
the column's exact quantiles for the ratios. Each part is stored as a version of its own
(`<name>-<part>` by default) whose lineage points at the parent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.data.schema import LogicalType
from shipyard.data.sources import Ingested, ingest
from shipyard.data.versions import DatasetVersion, Pending, check_name, record_all
from shipyard.errors import InvalidInput
from shipyard.project import Project

DEFAULT_RATIOS = {"train": 0.7, "validation": 0.15, "test": 0.15}


def split(
    version: DatasetVersion,
    ratios: dict[str, float] | None = None,
    *,
    seed: int = 0,
    by_time: str | None = None,
    cutoffs: list[str] | None = None,
    prefix: str | None = None,
    project: Project | None = None,
) -> dict[str, DatasetVersion]:
    """Split `version` into parts stored as versions named `<prefix>-<part>`."""
    project = project or version.project
    parts = _check_ratios(ratios or DEFAULT_RATIOS) if cutoffs is None else None
    prefix = check_name(prefix or version.name)
    if by_time is not None:
        names, boundaries = _time_boundaries(version, by_time, parts, cutoffs)
        assign = _by_time(by_time, boundaries)
        description: dict[str, Any] = {
            "strategy": "time",
            "column": by_time,
            "cutoffs": [str(c) for c in boundaries],
        }
    else:
        if cutoffs is not None:
            raise InvalidInput("cutoffs need a time column: pass by_time='<column>'")
        assert parts is not None
        names = list(parts)
        assign = _by_ratio(version.num_rows, list(parts.values()), seed)
        description = {"strategy": "ratio", "seed": seed, "ratios": parts}
    for name in names:
        check_name(f"{prefix}-{name}")
    with tempfile.TemporaryDirectory() as scratch:
        files, rows = _write_parts(version, names, assign, Path(scratch))
        empty = [name for name in names if rows[name] == 0]
        if empty:
            raise InvalidInput(
                f"part(s) {', '.join(empty)} of {version.ref} would be empty; "
                "change the ratios or cutoffs"
            )
        # Every part is read first and all are recorded in one transaction: all parts or none.
        label = f"{description['strategy']} split of {version.ref}"
        pending: list[Pending] = []
        try:
            for name in names:
                pending.append(
                    Pending(
                        f"{prefix}-{name}",
                        _ingested(files[name], project, label),
                        description=f"{name} part of {version.ref}",
                        parent=version,
                        split={**description, "part": name, "parent": version.ref},
                    )
                )
        except BaseException:
            for item in pending:
                project.artifacts.discard(item.ingested.staged)
            raise
        return dict(zip(names, record_all(project, pending), strict=True))


def _ingested(path: Path, project: Project, label: str) -> Ingested:
    ingested = ingest(path, project.artifacts)
    ingested.source = label
    return ingested


def _check_ratios(ratios: dict[str, float]) -> dict[str, float]:
    if len(ratios) < 2:
        raise InvalidInput(f"a split needs at least two parts, got {ratios}")
    if any(not isinstance(r, int | float) or r <= 0 for r in ratios.values()):
        raise InvalidInput(f"split ratios must be positive numbers, got {ratios}")
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        raise InvalidInput(f"split ratios must add up to 1, got {total:g} from {ratios}")
    return dict(ratios)


def _by_ratio(rows: int, ratios: list[float], seed: int) -> Any:
    """Row -> part, as a function of a batch and its offset, from a seeded shuffle."""
    sizes = _apportion(rows, ratios)
    labels = np.repeat(np.arange(len(ratios), dtype=np.int8), sizes)
    np.random.default_rng(seed).shuffle(labels)

    def assign(batch: pa.RecordBatch, offset: int) -> npt.NDArray[np.int8]:
        return labels[offset : offset + batch.num_rows]

    return assign


def _apportion(rows: int, ratios: list[float]) -> npt.NDArray[np.int64]:
    """Whole part sizes adding up to `rows`, by largest remainder (0.71 of 100 is 71, not 70)."""
    exact = np.asarray(ratios) * rows
    sizes = np.floor(exact + 1e-9).astype(np.int64)
    shortfall = rows - int(sizes.sum())
    for index in np.argsort(-(exact - sizes), kind="stable")[:shortfall]:
        sizes[index] += 1
    return sizes


def _time_boundaries(
    version: DatasetVersion, column: str, ratios: dict[str, float] | None, cutoffs: list[str] | None
) -> tuple[list[str], list[Any]]:
    if column not in version.schema.names:
        raise InvalidInput(
            f"time column {column!r} is not in {version.ref}: {version.schema.names}"
        )
    kind = version.schema.column(column).type
    if kind not in (LogicalType.DATETIME, LogicalType.DATE, LogicalType.INTEGER, LogicalType.FLOAT):
        raise InvalidInput(
            f"column {column!r} is {kind.value}; "
            "a time split needs a datetime, date or number column"
        )
    values = version.to_arrow([column]).column(column)
    if cutoffs is not None:
        arrow_type = values.type
        try:
            boundaries = [pa.scalar(c).cast(arrow_type).as_py() for c in cutoffs]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidInput(
                f"cutoffs {cutoffs} do not parse as {arrow_type} values of column {column!r}"
            ) from None
        if sorted(boundaries) != boundaries:
            raise InvalidInput(f"cutoffs must be in increasing order, got {cutoffs}")
        names = ["train", "validation", "test"][: len(boundaries) + 1]
        if len(boundaries) + 1 > 3:
            names = [f"part{i + 1}" for i in range(len(boundaries) + 1)]
        return names, boundaries
    assert ratios is not None
    ordered = pc.sort_indices(values.drop_null())
    sorted_values = pc.take(values.drop_null(), ordered)
    positions = np.cumsum(list(ratios.values()))[:-1] * len(sorted_values)
    boundaries = [sorted_values[int(p)].as_py() for p in positions]
    return list(ratios), boundaries


def _by_time(column: str, boundaries: list[Any]) -> Any:
    def assign(batch: pa.RecordBatch, offset: int) -> npt.NDArray[np.int8]:
        values = batch.column(column)
        part = np.zeros(batch.num_rows, dtype=np.int8)
        for boundary in boundaries:
            later = pc.fill_null(pc.greater_equal(values, pa.scalar(boundary, values.type)), False)
            part += np.asarray(later.to_numpy(zero_copy_only=False), dtype=np.int8)
        return part

    return assign


def _write_parts(
    version: DatasetVersion, names: list[str], assign: Any, folder: Path
) -> tuple[dict[str, Path], dict[str, int]]:
    source = pq.ParquetFile(version.path())
    files = {name: folder / f"{name}.parquet" for name in names}
    rows = dict.fromkeys(names, 0)
    writers = {name: pq.ParquetWriter(files[name], source.schema_arrow) for name in names}
    try:
        offset = 0
        for batch in source.iter_batches(batch_size=64 * 1024):
            labels = assign(batch, offset)
            for index, name in enumerate(names):
                part = batch.filter(pa.array(labels == index))
                rows[name] += part.num_rows
                writers[name].write_batch(part)
            offset += batch.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return files, rows
