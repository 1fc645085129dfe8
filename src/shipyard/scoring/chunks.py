"""One chunk of a batch score: Arrow rows in, Arrow rows out, through `Predictor.predict`.

The same function runs in the driver (the in-process runner) and on Dask workers, which is what
makes the two runners' outputs identical. On a worker the `Predictor` is loaded once per process
and kept, keyed by the project (home, database, artifact store), the model version and its
serving options, so every later chunk of the job, and of later jobs, reuses it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shipyard.errors import InvalidInput, NotFound, ShipyardError

if TYPE_CHECKING:
    import numpy as np

    from shipyard.config import Settings
    from shipyard.serving.predictor import Predictor

FILTERED = "filtered"
WORKER_CACHE_SIZE = 4  # model versions a worker keeps loaded at once


@dataclass(frozen=True)
class ChunkPlan:
    """Which columns the model reads, which are copied through, and the output's shape."""

    inputs: tuple[str, ...]  # handed to Predictor.predict, in this order
    keep: tuple[str, ...]  # copied to the output unchanged, before the predictions
    with_filtered: bool  # a `filtered` column (the rule that withheld a row, else null)


@dataclass
class ChunkOutput:
    """A scored chunk: its output rows, or the error that stopped it (as text: it must pickle)."""

    index: int
    batch: pa.RecordBatch | None = None
    withheld: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    error_kind: str = ""  # "NotFound", "InvalidInput", or "failed" (the model itself raised)


def score_chunk(predictor: Predictor, batch: pa.RecordBatch, plan: ChunkPlan) -> ChunkOutput:
    """Score `batch` with `predictor`; the output holds `plan.keep`, the predictions and
    (when the model has filters) `filtered`. A withheld row's predictions are null, as the
    server answers them."""
    import numpy as np

    from shipyard.data.versions import _nullable_dtype

    frame = batch.select(list(plan.inputs)).to_pandas(types_mapper=_nullable_dtype)
    prediction = predictor.predict(frame)
    if prediction.rows != batch.num_rows:
        raise InvalidInput(
            f"model {predictor.ref} returned {prediction.rows} predictions for {batch.num_rows} "
            "rows; a model (or post-processor) must return one per row"
        )
    withheld = np.array([rule is not None for rule in prediction.withheld], dtype=bool)
    arrays: list[pa.Array] = [batch.column(name) for name in plan.keep]
    names = list(plan.keep)
    for name, values in prediction.outputs.items():
        if name in plan.keep or name == FILTERED:
            raise InvalidInput(
                f"model {predictor.ref} has an output named {name!r}, like a column kept from "
                "the dataset; keep fewer columns (--keep) so that the two do not collide"
            )
        names.append(name)
        arrays.append(_arrow(values, withheld))
    if plan.with_filtered:
        names.append(FILTERED)
        arrays.append(pa.array(prediction.withheld, pa.string()))
    counts: dict[str, int] = {}
    for rule in prediction.withheld:
        if rule is not None:
            counts[rule] = counts.get(rule, 0) + 1
    return ChunkOutput(
        0, pa.RecordBatch.from_arrays(arrays, names=names), counts, prediction.out_of_range
    )


def _arrow(values: Any, withheld: np.ndarray[Any, Any]) -> pa.Array:
    """One output as an Arrow array: 1-D as it is, 2-D (e.g. probabilities) as lists;
    withheld rows and NaN are null."""
    import numpy as np

    array = np.asarray(values)
    mask = withheld if withheld.any() else None
    if array.ndim <= 1:
        return pa.array(array, mask=mask, from_pandas=True)
    rows = [None if hidden else row.tolist() for row, hidden in zip(array, withheld, strict=True)]
    return pa.array(rows, from_pandas=True)


# -- on a worker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to score one chunk; it pickles (settings, not a Project)."""

    index: int
    settings: Settings  # with `home` resolved: the worker's folder may differ
    ref: str  # a concrete version, NAME@N: an alias could move during the job
    hook_path: str  # where the driver imported the model's hooks from
    plan: ChunkPlan
    batch: pa.RecordBatch


_predictors: OrderedDict[tuple[str, ...], Predictor] = OrderedDict()
_lock = threading.Lock()
loads = 0  # how many times this process loaded a Predictor (each worker: once per model)


def worker_predictor(settings: Settings, ref: str, hook_path: str) -> Predictor:
    """The Predictor for `ref` in the project `settings` name, loaded once per process."""
    global loads
    name = ref.partition("@")[0]
    key = (
        str(settings.home),
        settings.resolved_database_url,
        settings.resolved_artifact_url,
        ref,
        json.dumps(settings.serving.get(name), sort_keys=True, default=str),
    )
    with _lock:
        found = _predictors.get(key)
        if found is not None:
            _predictors.move_to_end(key)
            return found
        from shipyard.project import Project
        from shipyard.serving.predictor import Predictor

        if hook_path and hook_path not in sys.path:
            sys.path.insert(0, hook_path)  # the project's hook modules, as in the driver
        predictor = Predictor.load(ref, project=Project.from_settings(settings))
        loads += 1
        _predictors[key] = predictor
        while len(_predictors) > WORKER_CACHE_SIZE:
            _predictors.popitem(last=False)
        return predictor


def run_task(task: ChunkTask) -> ChunkOutput:
    """Score one chunk on a worker; an error comes back as text (exceptions may not pickle)."""
    try:
        predictor = worker_predictor(task.settings, task.ref, task.hook_path)
    except Exception as exc:
        return failed(task.index, exc)
    return guarded(predictor, task.index, task.batch, task.plan)


def guarded(
    predictor: Predictor, index: int, batch: pa.RecordBatch, plan: ChunkPlan
) -> ChunkOutput:
    """`score_chunk`, with an error as a `ChunkOutput` (in the driver as on a worker)."""
    try:
        output = score_chunk(predictor, batch, plan)
    except Exception as exc:
        return failed(index, exc)
    output.index = index
    return output


def failed(index: int, exc: Exception) -> ChunkOutput:
    if isinstance(exc, NotFound):
        return ChunkOutput(index, error=exc.message, error_kind="NotFound")
    if isinstance(exc, ShipyardError):
        return ChunkOutput(index, error=exc.message, error_kind="InvalidInput")
    return ChunkOutput(index, error=f"{type(exc).__name__}: {exc}", error_kind="failed")


def worker_state() -> dict[str, Any]:
    """What this process has loaded (for tests and `client.run`): pid, loads, versions."""
    return {"pid": os.getpid(), "loads": loads, "models": [key[3] for key in _predictors]}
