"""Drift: 1,000,000 current rows x 25 columns against a 1,000,000-row reference, side by side
with Evidently, NannyML, alibi-detect and a plain numpy/scipy floor.

The targets (from the issue): shipyard's drift of the current rows against the reference
profile (`current_profile` + `compare`) at least 40x faster than Evidently 0.7's
DataDriftPreset and faster than alibi-detect's TabularDrift, with Evidently's verdict on every
one of the 25 columns, and a peak memory under a quarter of Evidently's; memory bounded as the
rows grow; and no alert on clean columns where NannyML's per-chunk rule raises some.

Data (generated once, seeded, cached in benchmarks/data/): reference and current, 1,000,000
rows each; 20 numeric columns (normal, lognormal, uniform, integers of small and large spans)
and 5 string columns (5 to 50 levels). Five columns are shifted in the current data (SHIFTS);
the other 20 are drawn from the reference's distribution.

Every contender runs in a fresh subprocess of its own interpreter (the peers in their venvs),
loads the data from Parquet before the timer starts (pandas DataFrames for the peers, numpy
arrays for the floor, an Arrow table for shipyard) and times only the drift computation. Its
memory: the process's RSS once the data is loaded, and its peak RSS during the computation
(VmHWM, reset just before it through /proc/self/clear_refs); the rise is the difference.

Run through `make bench` (benchmarks/run.py); `python bench_drift.py --worker ...` is how the
parent starts one measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Tools

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
WORK_DIR = DATA_DIR / "drift-work"
REFERENCE_FILE = DATA_DIR / "drift_reference_1m_x25.parquet"
CURRENT_FILE = DATA_DIR / "drift_current_1m_x25.parquet"
PROFILE_FILE = WORK_DIR / "reference-profile.json"

ROWS = 1_000_000
SEED = 20_250_707
# Numeric columns: name -> (distribution, parameters). Integers are int64, the rest float64.
NUMERIC: dict[str, tuple[str, tuple[float, ...]]] = {
    "n00": ("normal", (0.0, 1.0)),
    "n01": ("normal", (100.0, 15.0)),
    "n02": ("normal", (-5.0, 0.1)),
    "n03": ("normal", (10_000.0, 2_000.0)),
    "n04": ("lognormal", (0.0, 1.0)),
    "n05": ("lognormal", (1.0, 0.5)),
    "n06": ("lognormal", (2.0, 0.25)),
    "n07": ("lognormal", (0.0, 1.5)),
    "n08": ("uniform", (0.0, 1.0)),
    "n09": ("uniform", (-1_000.0, 1_000.0)),
    "n10": ("uniform", (5.0, 6.0)),
    "n11": ("uniform", (-1e-3, 1e-3)),
    "n12": ("integers", (0, 10)),  # 10 values
    "n13": ("integers", (0, 21)),  # 21 values
    "n14": ("poisson", (3.0,)),
    "n15": ("integers", (-50, 51)),
    "n16": ("integers", (0, 1_000_000)),
    "n17": ("integers", (0, 1_000_000)),
    "n18": ("integers", (0, 1_000_000_000)),
    "n19": ("integers", (-100_000, 100_001)),
}
CATEGORICAL = {"c0": 5, "c1": 10, "c2": 20, "c3": 35, "c4": 50}  # name -> levels
# The shifted columns and how (in the current data only).
SHIFTS = {
    "n01": "mean + 0.5 std",
    "n06": "scale x 1.5",
    "n13": "+ 3 (0.5 std)",
    "n17": "scale x 1.3",
    "c2": "level frequencies reversed",
}
COLUMNS = [*NUMERIC, *CATEGORICAL]
CLEAN = [name for name in COLUMNS if name not in SHIFTS]
ROW_GROUP_ROWS = 131_072
SPEC = {
    "rows": ROWS,
    "seed": SEED,
    "numeric": NUMERIC,
    "categorical": CATEGORICAL,
    "shifts": SHIFTS,
    "row_group_rows": ROW_GROUP_ROWS,
    "generator": 2,
}

STREAM_BATCH_ROWS = 65_536
GROWTH_ROWS = (250_000, 1_000_000, 2_000_000)  # streamed current rows of the memory check
# False-alarm check: the clean current rows in windows of these sizes (the first is NannyML's
# default chunking of 1,000,000 rows: 10 chunks).
WINDOW_ROWS = (100_000, 50_000)
GROWTH_LIMIT = 1.25  # streamed peak RSS at the most rows / at the fewest, at most
SHIPYARD_REPEATS = 3  # shipyard's drift runs (its times vary most on a busy machine)
WORKER_TIMEOUT_S = 600
MIB = 1024 * 1024

EVIDENTLY_RATIO_TARGET = 40.0  # Evidently time / shipyard time, at least
ALIBI_RATIO_TARGET = 1.0  # alibi-detect time / shipyard time, above
MEMORY_RATIO_TARGET = 0.25  # shipyard peak / Evidently peak, below


# -- the data ---------------------------------------------------------------------------------


def ensure_data() -> None:
    """The two files, generated once (seeded) and regenerated when their spec changes."""
    stamp = DATA_DIR / "drift_data.json"
    wanted = json.loads(json.dumps(SPEC))
    if (
        REFERENCE_FILE.is_file()
        and CURRENT_FILE.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()) == wanted
    ):
        return
    import numpy as np

    started = time.perf_counter()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    _write(REFERENCE_FILE, _table(rng, shifted=False))
    _write(CURRENT_FILE, _table(rng, shifted=True))
    stamp.write_text(json.dumps(wanted, indent=2) + "\n")
    print(f"generated the drift data (2 x {ROWS:,} rows) in {time.perf_counter() - started:.1f} s")


def _table(rng: Any, shifted: bool) -> Any:
    import numpy as np
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for name, (kind, params) in NUMERIC.items():
        values = _draw(rng, kind, params)
        if shifted and name in SHIFTS:
            values = _shift(name, values, kind, params)
        columns[name] = pa.array(values)
    for number, (name, levels) in enumerate(CATEGORICAL.items()):
        # Zipf-like, in an order of the column's own (the same in reference and current).
        order = np.random.default_rng([SEED, number]).permutation(levels)
        weights = 1.0 / (1.0 + order)
        if shifted and name in SHIFTS:
            weights = weights.max() + weights.min() - weights  # common levels become rare
        codes = rng.choice(levels, size=ROWS, p=weights / weights.sum()).astype("int32")
        names = pa.array([f"{name}_level_{j:02d}" for j in range(levels)])
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(codes), names).dictionary_decode()
    return pa.table(columns)


def _draw(rng: Any, kind: str, params: tuple[float, ...]) -> Any:
    if kind == "normal":
        return rng.normal(params[0], params[1], ROWS)
    if kind == "lognormal":
        return rng.lognormal(params[0], params[1], ROWS)
    if kind == "uniform":
        return rng.uniform(params[0], params[1], ROWS)
    if kind == "poisson":
        return rng.poisson(params[0], ROWS).astype("int64")
    return rng.integers(int(params[0]), int(params[1]), ROWS, dtype="int64")


def _shift(name: str, values: Any, kind: str, params: tuple[float, ...]) -> Any:
    if name == "n01":
        return values + 0.5 * params[1]
    if name == "n13":
        return values + 3
    factor = 1.5 if name == "n06" else 1.3
    scaled = values * factor
    return scaled.round().astype("int64") if kind == "integers" else scaled


def _write(path: Path, table: Any) -> None:
    import pyarrow.parquet as pq

    partial = path.with_suffix(".part")
    # Row groups of ROW_GROUP_ROWS, as a log written over time has: a reader streaming the file
    # holds one row group at a time, not (with pyarrow's default of 1Mi rows) the whole file.
    pq.write_table(table, partial, row_group_size=ROW_GROUP_ROWS)
    partial.replace(path)


# -- measuring inside a worker ----------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _measure(call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run `call` once: its result, and its seconds and memory.

    loaded_mib is the RSS before the call (interpreter, libraries and the data loaded);
    peak_mib the process's peak RSS during the call (VmHWM, reset to the current RSS just
    before it on Linux; elsewhere ru_maxrss, the peak of the process's whole life);
    rise_mib the difference.
    """
    import gc
    import resource

    gc.collect()
    if "pyarrow" in sys.modules:  # what Arrow's allocator keeps of the reading, back to the OS
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        method = "VmHWM"
    except OSError:
        method = "ru_maxrss"
    scale = 1 if sys.platform == "darwin" else 1024
    before = _status_kib("VmRSS")
    if before is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM") if method == "VmHWM" else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
    return result, {
        "seconds": seconds,
        "loaded_mib": before / 1024,
        "peak_mib": peak / 1024,
        "rise_mib": max(peak - before, 0) / 1024,
        "peak_method": method,
    }


def _frames(columns: list[str] | None = None) -> tuple[Any, Any]:
    """Reference and current as pandas DataFrames (string columns as object, pandas' default)."""
    import pyarrow.parquet as pq

    reference = pq.read_table(REFERENCE_FILE, columns=columns).to_pandas()
    current = pq.read_table(CURRENT_FILE, columns=columns).to_pandas()
    return reference, current


def _timed(parts: dict[str, float], name: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    parts[name] = time.perf_counter() - started
    return result


# -- the workers: one contender each ----------------------------------------------------------


def worker_evidently() -> dict[str, Any]:
    """Evidently 0.7: Report([DataDriftPreset()]).run(current, reference), default rules."""
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = _frames()
    definition = DataDefinition(
        numerical_columns=list(NUMERIC), categorical_columns=list(CATEGORICAL)
    )

    def drift() -> Any:
        report = Report([DataDriftPreset()])
        return report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )

    snapshot, measured = _measure(drift)
    columns: dict[str, Any] = {}
    counted = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            drifted = value < threshold if "p_value" in method else value >= threshold
            columns[config["column"]] = _verdict(method, value, threshold, drifted)
        elif config["type"].endswith("DriftedColumnsCount"):
            counted = int(metric["value"]["count"])
    found = sum(c["drifted"] for c in columns.values())
    if counted is not None and counted != found:
        raise RuntimeError(f"Evidently counted {counted} drifted columns; its verdicts say {found}")
    return {**measured, "columns": columns, "version": f"evidently {evidently.__version__}"}


def worker_nannyml(chunk_size: int | None, names: list[str]) -> dict[str, Any]:
    """NannyML 0.13: UnivariateDriftCalculator with its default methods (Jensen-Shannon for
    both kinds) and thresholds, fitted on the reference and calculated on the current; default
    chunking (10 chunks) unless `chunk_size` is given. Alerts are counted per column."""
    import logging

    import nannyml

    logging.getLogger("nannyml").setLevel(logging.ERROR)
    reference, current = _frames(names)
    parts: dict[str, float] = {}

    def drift() -> Any:
        calculator = nannyml.UnivariateDriftCalculator(column_names=names, chunk_size=chunk_size)
        _timed(parts, "fit_seconds", lambda: calculator.fit(reference))
        return _timed(parts, "calculate_seconds", lambda: calculator.calculate(current))

    results, measured = _measure(drift)
    frame = results.filter(period="analysis").to_df()
    columns: dict[str, Any] = {}
    for name in names:
        methods = sorted({key[1] for key in frame.columns if key[0] == name})
        alerts = frame[(name, methods[0], "alert")].astype(bool)
        values = frame[(name, methods[0], "value")]
        upper = frame[(name, methods[0], "upper_threshold")]
        columns[name] = {
            "method": methods[0],
            "chunks": len(alerts),
            "alerts": int(alerts.sum()),
            "drifted": bool(alerts.any()),
            "statistic": float(values.max()),
            "threshold": float(upper.iloc[0]) if upper.notna().any() else None,
        }
    return {**measured, **parts, "columns": columns, "version": f"nannyml {nannyml.__version__}"}


def worker_alibi() -> dict[str, Any]:
    """alibi-detect 0.13: TabularDrift(reference, p_val=0.05, categories_per_feature) fitted on
    the reference, predict on the current: KS per numeric column, chi-square per categorical,
    Bonferroni-corrected. It takes numbers only: the string columns are coded (from the union
    of levels) before the timer."""
    import alibi_detect
    import numpy as np
    from alibi_detect.cd import TabularDrift

    reference, current = _frames()
    for name in CATEGORICAL:
        levels = sorted(set(reference[name].unique()) | set(current[name].unique()))
        codes = {level: i for i, level in enumerate(levels)}
        reference[name] = reference[name].map(codes)
        current[name] = current[name].map(codes)
    x_ref = reference[COLUMNS].to_numpy(dtype=np.float64)
    x_cur = current[COLUMNS].to_numpy(dtype=np.float64)
    del reference, current
    categorical = {COLUMNS.index(name): None for name in CATEGORICAL}
    parts: dict[str, float] = {}

    def drift() -> Any:
        detector = _timed(
            parts,
            "fit_seconds",
            lambda: TabularDrift(x_ref, p_val=0.05, categories_per_feature=categorical),
        )
        return _timed(parts, "predict_seconds", lambda: detector.predict(x_cur))

    prediction, measured = _measure(drift)
    data = prediction["data"]
    threshold = float(data["threshold"])
    columns = {
        name: _verdict(
            "chi2 p-value" if name in CATEGORICAL else "KS p-value",
            float(p),
            threshold,
            bool(p < threshold),
            distance=float(d),
        )
        for name, p, d in zip(COLUMNS, data["p_val"], data["distance"], strict=True)
    }
    return {
        **measured,
        **parts,
        "columns": columns,
        "version": f"alibi-detect {alibi_detect.__version__}",
    }


def worker_floor() -> dict[str, Any]:
    """The floor: numpy/scipy on raw arrays with Evidently's rules for these columns (normed
    Wasserstein >= 0.1 for numbers, Jensen-Shannon >= 0.1 for categories)."""
    import numpy as np
    import pyarrow.parquet as pq
    import scipy
    from scipy import stats
    from scipy.spatial import distance

    def arrays(path: Path) -> dict[str, Any]:
        table = pq.read_table(path, read_dictionary=list(CATEGORICAL))
        found: dict[str, Any] = {name: table[name].to_numpy() for name in NUMERIC}
        for name in CATEGORICAL:
            column = table[name].combine_chunks()
            found[name] = (column.indices.to_numpy(), column.dictionary.to_pylist())
        return found

    reference, current = arrays(REFERENCE_FILE), arrays(CURRENT_FILE)

    def shares(codes: Any, levels: list[str], union: list[str]) -> Any:
        counts = np.bincount(codes, minlength=len(levels)) / codes.size
        by_level = dict(zip(levels, counts, strict=True))
        return np.array([by_level.get(level, 0.0) for level in union])

    def drift() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in NUMERIC:
            ref, cur = reference[name], current[name]
            value = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
            found[name] = _verdict("wasserstein_normed", value, 0.1, value >= 0.1)
        for name in CATEGORICAL:
            (ref_codes, ref_levels), (cur_codes, cur_levels) = reference[name], current[name]
            union = sorted(set(ref_levels) | set(cur_levels))
            value = float(
                distance.jensenshannon(
                    shares(ref_codes, ref_levels, union), shares(cur_codes, cur_levels, union)
                )
            )
            found[name] = _verdict("jensenshannon", value, 0.1, value >= 0.1)
        return found

    columns, measured = _measure(drift)
    return {
        **measured,
        "columns": columns,
        "version": f"numpy {np.__version__}, scipy {scipy.__version__}",
    }


def worker_shipyard_reference() -> dict[str, Any]:
    """shipyard: the reference's binned profile from an in-memory Arrow table (done once per
    training dataset version, then cached); saved as JSON for the other shipyard workers."""
    import pyarrow.parquet as pq

    from shipyard.monitoring.binned import reference_profile

    table = pq.read_table(REFERENCE_FILE)
    profile, measured = _measure(lambda: reference_profile(table))
    PROFILE_FILE.parent.mkdir(parents=True, exist_ok=True)
    PROFILE_FILE.write_text(json.dumps(profile.to_dict()))
    cells = sum(getattr(profile[name], "occupied", 0) for name in NUMERIC)
    return {**measured, "profile_bytes": PROFILE_FILE.stat().st_size, "numeric_cells": cells}


def _reference() -> Any:
    # compare() imports its statistics (and scipy.stats) on first use: import them before the
    # timer, as every peer's modules are imported before its timer.
    import shipyard.monitoring.statistics  # noqa: F401
    from shipyard.monitoring.binned import BinnedProfile

    return BinnedProfile.from_dict(json.loads(PROFILE_FILE.read_text()))


def _shipyard_columns(report: Any) -> dict[str, Any]:
    return {
        column["name"]: _verdict(
            column["method"], column["statistic"], column["threshold"], column["drifted"]
        )
        for column in report.to_dict()["columns"]
    }


def worker_shipyard_table() -> dict[str, Any]:
    """shipyard: drift of the current rows (an in-memory Arrow table) against the reference
    profile: current_profile on the reference's grids, then compare."""
    import pyarrow.parquet as pq

    from shipyard.monitoring.binned import current_profile
    from shipyard.monitoring.drift import compare

    reference = _reference()
    table = pq.read_table(CURRENT_FILE)
    parts: dict[str, float] = {}

    def drift() -> Any:
        current = _timed(parts, "profile_seconds", lambda: current_profile(reference, table))
        return _timed(parts, "compare_seconds", lambda: compare(reference, current))

    report, measured = _measure(drift)
    return {**measured, **parts, "columns": _shipyard_columns(report)}


def worker_shipyard_stream(rows: int) -> dict[str, Any]:
    """shipyard: the same drift with the current rows streamed from the Parquet file in
    batches (ParquetFile.iter_batches), `rows` of them (the file read again past 1,000,000)."""
    import pyarrow.parquet  # noqa: F401  (imported outside the timer)

    from shipyard.monitoring.binned import current_profile
    from shipyard.monitoring.drift import compare

    reference = _reference()

    def batches() -> Any:
        left = rows
        while left > 0:
            for batch in _stream():
                if left <= 0:
                    return
                yield batch.slice(0, left)
                left -= batch.num_rows

    def drift() -> Any:
        current = current_profile(reference, batches())
        return compare(reference, current), current.rows

    (report, counted), measured = _measure(drift)
    if counted != rows:
        raise RuntimeError(f"streamed {counted} rows; expected {rows}")
    return {**measured, "rows": rows, "columns": _shipyard_columns(report)}


def _stream() -> Any:
    """The current file's record batches. pre_buffer=False: pyarrow's default read-ahead of
    whole row groups (pre_buffer=True) holds about 100 MiB more here, for no gain on a local
    file."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(CURRENT_FILE, pre_buffer=False).iter_batches(batch_size=STREAM_BATCH_ROWS)


def worker_stream_read() -> dict[str, Any]:
    """What streaming the file costs by itself: every batch read and dropped, nothing else."""
    import pyarrow.parquet  # noqa: F401  (its import outside the timer, as in the others)

    def read() -> int:
        return sum(batch.num_rows for batch in _stream())

    rows, measured = _measure(read)
    return {**measured, "rows": rows}


def worker_shipyard_windows() -> dict[str, Any]:
    """False alarms: the clean columns' current rows cut into windows (of each size in
    WINDOW_ROWS), each window compared with the reference profile under shipyard's defaults
    (DriftSpec(): effect-size distances for a reference over 1,000 rows, FDR over p-value
    columns, persistence 2: a column alerts once it has drifted in 2 windows in a row)."""
    import pyarrow.parquet as pq

    from shipyard.monitoring.binned import current_profile
    from shipyard.monitoring.drift import DriftSpec, compare

    reference = _reference()
    table = pq.read_table(CURRENT_FILE, columns=CLEAN)
    spec = DriftSpec()

    def windows(size: int) -> dict[str, Any]:
        streaks = dict.fromkeys(CLEAN, 0)
        found: dict[str, Any] = {
            name: {"windows": 0, "alerts": 0, "alerting": False, "statistic": 0.0} for name in CLEAN
        }
        for start in range(0, ROWS - size + 1, size):
            current = current_profile(reference, table.slice(start, size))
            for column in compare(reference, current, spec=spec).columns:
                streaks[column.name] = streaks[column.name] + 1 if column.drifted else 0
                entry = found[column.name]
                entry["windows"] += 1
                entry["alerts"] += int(column.drifted)
                entry["alerting"] |= streaks[column.name] >= spec.persistence
                entry["statistic"] = max(entry["statistic"], float(column.statistic or 0.0))
                entry["method"] = column.method
        return found

    sizes, measured = _measure(lambda: {str(size): windows(size) for size in WINDOW_ROWS})
    return {**measured, "sizes": sizes, "persistence": spec.persistence}


def _verdict(
    method: str, statistic: float, threshold: float, drifted: bool, **extra: float
) -> dict[str, Any]:
    return {
        "method": method,
        "statistic": float(statistic),
        "threshold": float(threshold),
        "drifted": bool(drifted),
        **extra,
    }


def _worker_main(args: list[str]) -> None:
    kind = args[0]
    workers: dict[str, Callable[[], dict[str, Any]]] = {
        "evidently": worker_evidently,
        "nannyml": lambda: worker_nannyml(None, COLUMNS),
        "nannyml-windows": lambda: worker_nannyml(WINDOW_ROWS[-1], CLEAN),
        "alibi-detect": worker_alibi,
        "floor": worker_floor,
        "shipyard-reference": worker_shipyard_reference,
        "shipyard": worker_shipyard_table,
        "shipyard-stream": lambda: worker_shipyard_stream(int(args[1])),
        "shipyard-windows": worker_shipyard_windows,
        "stream-read": worker_stream_read,
    }
    if kind not in workers:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps(workers[kind]()))


# -- running the contenders -------------------------------------------------------------------


def run(tools: Tools) -> str:
    """Measure every contender, print the figures, and return the RESULTS.md section."""
    print("\n== drift: 1,000,000 current rows x 25 columns against a 1,000,000-row reference ==")
    ensure_data()
    for path in (REFERENCE_FILE, CURRENT_FILE):
        path.read_bytes()  # into the page cache for every contender
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    load_before = os.getloadavg()[0]
    peers = dict(tools.drift_peers)
    python = {name: peers.get(name, (None, "not set up"))[0] for name in PEERS}
    runs: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}

    _attempt(runs, errors, "shipyard-reference", tools.python, "shipyard-reference")
    if "shipyard-reference" in errors:
        for name in ("shipyard", "shipyard-windows", *STREAMED.values()):
            errors[name] = "the reference profile could not be built"
    # shipyard's runs around alibi-detect's, the closest peer, so both see the same machine.
    _attempt(runs, errors, "shipyard", tools.python, "shipyard")
    _attempt(runs, errors, "alibi-detect", python["alibi-detect"], "alibi-detect")
    for _ in range(SHIPYARD_REPEATS - 1):
        _attempt(runs, errors, "shipyard", tools.python, "shipyard")
    _attempt(runs, errors, "stream-read", tools.python, "stream-read")
    for rows in GROWTH_ROWS:
        _attempt(runs, errors, STREAMED[rows], tools.python, "shipyard-stream", str(rows))
    _attempt(runs, errors, "floor", tools.python, "floor")
    _attempt(runs, errors, "nannyml", python["nannyml"], "nannyml")
    _attempt(runs, errors, "evidently", python["evidently"], "evidently")
    _attempt(runs, errors, "shipyard-windows", tools.python, "shipyard-windows")
    _attempt(runs, errors, "nannyml-windows", python["nannyml"], "nannyml-windows")
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    load = (load_before, os.getloadavg()[0])
    return _report(peers, runs, errors, load)


PEERS = ("evidently", "nannyml", "alibi-detect")
STREAMED = {rows: f"shipyard-stream-{rows // 1000}k" for rows in GROWTH_ROWS}


def _run_worker(python: str | Path, kind: str, *args: str) -> dict[str, Any]:
    # No usage telemetry from the peers (there is no network to send it to anyway).
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "DO_NOT_TRACK": "1",
        "NML_DISABLE_USAGE_LOGGING": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", kind, *args],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
        env=env,
        cwd=HERE.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _attempt(
    runs: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
    name: str,
    python: str | Path | None,
    kind: str,
    *args: str,
) -> None:
    """One measurement into `runs[name]`, or its failure into `errors[name]`."""
    if name in errors:
        return
    if python is None:
        errors[name] = "not installed"
        return
    try:
        result = _run_worker(python, kind, *args)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        errors[name] = str(exc)
        print(f"  {name}: failed: {str(exc)[-600:]}")
        return
    runs.setdefault(name, []).append(result)
    print(
        f"  {name:24s} {result['seconds']:8.2f} s  peak RSS {result['peak_mib']:6.0f} MiB  "
        f"(data loaded {result['loaded_mib']:5.0f}, rise {result['rise_mib']:5.0f})"
    )


# -- the report -------------------------------------------------------------------------------

CONTENDERS = {
    "shipyard": "shipyard: current_profile + compare, in-memory Arrow table",
    STREAMED[1_000_000]: "shipyard: the same, streamed from Parquet (iter_batches)",
    "shipyard-reference": "shipyard: reference profile (once per dataset version, stored)",
    "alibi-detect": "alibi-detect TabularDrift (fit + predict)",
    "floor": "floor: numpy/scipy with Evidently's rules",
    "nannyml": "NannyML UnivariateDriftCalculator (fit + calculate)",
    "evidently": "Evidently DataDriftPreset",
    "stream-read": "(pyarrow iter_batches alone, no drift: the reader's own memory)",
}


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _check(met: bool | None) -> str:
    return "not measured" if met is None else ("PASS" if met else "FAIL")


def _drifted(result: dict[str, Any]) -> list[str]:
    return [name for name in COLUMNS if result["columns"].get(name, {}).get("drifted")]


def _mismatches(ours: dict[str, Any], evidently: dict[str, Any]) -> tuple[list[str], float]:
    """Columns whose verdicts differ from Evidently's (both statistics given), and the
    largest difference of the statistics."""
    lines, gap = [], 0.0
    for name in COLUMNS:
        mine, theirs = ours["columns"].get(name), evidently["columns"].get(name)
        if mine is None or theirs is None:
            lines.append(f"{name}: missing on one side")
            continue
        gap = max(gap, abs(mine["statistic"] - theirs["statistic"]))
        if mine["drifted"] != theirs["drifted"]:
            lines.append(
                f"{name}: {mine['method']} {mine['statistic']:.6f} (drifted {mine['drifted']}), "
                f"Evidently {theirs['method']} {theirs['statistic']:.6f} "
                f"(drifted {theirs['drifted']})"
            )
    return lines, gap


class _Figures:
    """The runs summed up: medians of the times, the largest peaks."""

    def __init__(self, runs: dict[str, list[dict[str, Any]]]) -> None:
        found = {name: results for name, results in runs.items() if results}
        self.runs = found
        self.first = {name: results[0] for name, results in found.items()}
        self.seconds = {n: statistics.median(r["seconds"] for r in rs) for n, rs in found.items()}
        self.peak = {n: max(r["peak_mib"] for r in rs) for n, rs in found.items()}
        self.rise = {n: max(r["rise_mib"] for r in rs) for n, rs in found.items()}
        self.loaded = {n: statistics.median(r["loaded_mib"] for r in rs) for n, rs in found.items()}

    def time_ratio(self, other: str) -> float | None:
        return _ratio(self.seconds.get(other), self.seconds.get("shipyard"))

    def agreement(self, name: str) -> tuple[list[str], float] | None:
        if name in self.first and "evidently" in self.first:
            return _mismatches(self.first[name], self.first["evidently"])
        return None


def _contender_rows(figures: _Figures, errors: dict[str, str]) -> list[str]:
    rows = [
        "| contender | seconds | runs (s) | peak RSS (MiB) | RSS with the data loaded (MiB) "
        "| rise (MiB) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, label in CONTENDERS.items():
        if name not in figures.seconds:
            reason = errors.get(name, "not run")[:200].replace("|", "/").replace("\n", " ")
            rows.append(f"| {label} | not measured: {reason} | | | | |")
            continue
        each = " ".join(f"{r['seconds']:.2f}" for r in figures.runs[name])
        rows.append(
            f"| {label} | {figures.seconds[name]:.2f} | {each} | {figures.peak[name]:.0f} "
            f"| {figures.loaded[name]:.0f} | {figures.rise[name]:.0f} |"
        )
    return rows


def _targets(figures: _Figures) -> list[tuple[str, str, str, str]]:
    evidently_x = figures.time_ratio("evidently")
    alibi_x = figures.time_ratio("alibi-detect")
    streamed = _ratio(figures.peak.get(STREAMED[1_000_000]), figures.peak.get("evidently"))
    in_memory = _ratio(figures.peak.get("shipyard"), figures.peak.get("evidently"))
    growth = _ratio(
        figures.peak.get(STREAMED[GROWTH_ROWS[-1]]), figures.peak.get(STREAMED[GROWTH_ROWS[0]])
    )
    agreement = figures.agreement("shipyard")
    mismatches = agreement[0] if agreement else []
    windows = figures.first.get("shipyard-windows")
    clean_alerts = (
        sorted({n for size in windows["sizes"].values() for n, c in size.items() if c["alerting"]})
        if windows
        else None
    )

    def met(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if value is None else ok(value)

    targets = [
        (
            "Evidently time / shipyard time (in-memory table)",
            _fmt(evidently_x, ".1f", "x"),
            f">= {EVIDENTLY_RATIO_TARGET:.0f}x",
            _check(met(evidently_x, lambda v: v >= EVIDENTLY_RATIO_TARGET)),
        ),
        (
            "alibi-detect time / shipyard time (in-memory table)",
            _fmt(alibi_x, ".2f", "x"),
            f"> {ALIBI_RATIO_TARGET:.0f}x",
            _check(met(alibi_x, lambda v: v > ALIBI_RATIO_TARGET)),
        ),
        (
            "shipyard peak RSS / Evidently peak RSS, streamed (how shipyard reads a window)",
            _fmt(streamed, ".3f"),
            f"< {MEMORY_RATIO_TARGET}",
            _check(met(streamed, lambda v: v < MEMORY_RATIO_TARGET)),
        ),
        (
            "shipyard peak RSS / Evidently peak RSS, in-memory table (1M raw rows held)",
            _fmt(in_memory, ".3f"),
            f"< {MEMORY_RATIO_TARGET}",
            _check(met(in_memory, lambda v: v < MEMORY_RATIO_TARGET)),
        ),
        (
            "shipyard's verdict = Evidently's, per column",
            f"{len(COLUMNS) - len(mismatches)}/{len(COLUMNS)}" if agreement else "n/a",
            f"{len(COLUMNS)}/{len(COLUMNS)}",
            _check(None if agreement is None else not mismatches),
        ),
        (
            f"streamed peak RSS at {GROWTH_ROWS[-1]:,} rows / at {GROWTH_ROWS[0]:,}",
            _fmt(growth, ".2f", "x"),
            f"<= {GROWTH_LIMIT}x",
            _check(met(growth, lambda v: v <= GROWTH_LIMIT)),
        ),
        (
            "clean columns alerting under shipyard's defaults",
            "n/a" if clean_alerts is None else str(len(clean_alerts)),
            "0",
            _check(None if clean_alerts is None else not clean_alerts),
        ),
    ]
    return targets


def _other_figures(figures: _Figures) -> list[str]:
    rise = _ratio(figures.rise.get("shipyard"), figures.rise.get("evidently"))
    ship_gap = figures.agreement("shipyard")
    floor = figures.agreement("floor")
    rows = [
        ("NannyML time / shipyard time", _fmt(figures.time_ratio("nannyml"), ".1f", "x")),
        ("floor time / shipyard time", _fmt(figures.time_ratio("floor"), ".1f", "x")),
        (
            "shipyard rise / Evidently rise (in-memory table, above the data loaded)",
            _fmt(rise, ".3f"),
        ),
        (
            "largest abs(shipyard statistic - Evidently statistic), 25 columns",
            _fmt(ship_gap[1] if ship_gap else None, ".2e"),
        ),
        (
            "largest abs(floor statistic - Evidently statistic), 25 columns",
            _fmt(floor[1] if floor else None, ".2e"),
        ),
        (
            "floor's verdict = Evidently's, per column",
            f"{len(COLUMNS) - len(floor[0])}/{len(COLUMNS)}" if floor else "n/a",
        ),
    ]
    return ["| also | value |", "| --- | ---: |", *(f"| {a} | {b} |" for a, b in rows)]


def _found(figures: _Figures) -> list[str]:
    lines = []
    for name in ("evidently", "shipyard", "floor", "alibi-detect", "nannyml"):
        if name not in figures.first:
            continue
        drifted = _drifted(figures.first[name])
        missed = [c for c in SHIFTS if c not in drifted]
        extra = [c for c in drifted if c not in SHIFTS]
        lines.append(
            f"- {name}: {', '.join(drifted) or 'none'} ("
            + (f"missed {', '.join(missed)}" if missed else "all 5 shifted found")
            + (f"; clean columns flagged: {', '.join(extra)}" if extra else "")
            + ")"
        )
    return lines


def _growth(figures: _Figures, errors: dict[str, str]) -> list[str]:
    lines = [
        "| current rows streamed | seconds | peak RSS (MiB) | rise (MiB) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for rows in GROWTH_ROWS:
        name = STREAMED[rows]
        if name in figures.first:
            lines.append(
                f"| {rows:,} | {figures.seconds[name]:.2f} | {figures.peak[name]:.0f} "
                f"| {figures.rise[name]:.0f} |"
            )
        else:
            lines.append(f"| {rows:,} | not measured: {errors.get(name, 'not run')[:120]} | | |")
    return lines


def _false_alarms(figures: _Figures) -> list[str]:
    lines = [
        "| rule | windows | clean columns alerting | alerts (windows x columns) | detail |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    nannyml = {
        WINDOW_ROWS[0]: figures.first.get("nannyml"),
        WINDOW_ROWS[-1]: figures.first.get("nannyml-windows"),
    }
    for size in WINDOW_ROWS:
        found = nannyml[size]
        if found is None:
            lines.append(f"| NannyML defaults | {ROWS // size} x {size:,} | not measured | | |")
            continue
        columns = found["columns"]
        alerting = [n for n in CLEAN if columns[n]["alerts"]]
        detail = ", ".join(f"{n} {columns[n]['alerts']}" for n in alerting) or "none"
        chunks = columns[CLEAN[0]]["chunks"]
        lines.append(
            f"| NannyML defaults: Jensen-Shannon, alert outside the reference chunks' mean "
            f"+- 3 std{' (default chunking)' if size == WINDOW_ROWS[0] else ''} "
            f"| {chunks} x {ROWS // chunks:,} | {len(alerting)} of {len(CLEAN)} "
            f"| {sum(columns[n]['alerts'] for n in CLEAN)} of {chunks * len(CLEAN)} "
            f"| alerting chunks per column: {detail} |"
        )
    ship = figures.first.get("shipyard-windows")
    for size in WINDOW_ROWS:
        if ship is None:
            lines.append(f"| shipyard defaults | {ROWS // size} x {size:,} | not measured | | |")
            continue
        columns = ship["sizes"][str(size)]
        alerting = [n for n in CLEAN if columns[n]["alerting"]]
        largest = max(CLEAN, key=lambda n: columns[n]["statistic"])
        windows = columns[CLEAN[0]]["windows"]
        lines.append(
            f"| shipyard defaults: normed Wasserstein / Jensen-Shannon >= 0.1, FDR on p-value "
            f"columns, persistence {ship['persistence']} | {windows} x {size:,} "
            f"| {len(alerting)} of {len(CLEAN)} "
            f"| {sum(columns[n]['alerts'] for n in CLEAN)} of {windows * len(CLEAN)} "
            f"| largest statistic: {largest} {columns[largest]['statistic']:.4f} |"
        )
    return lines


def _differing(figures: _Figures, name: str) -> str:
    agreement = figures.agreement(name)
    if agreement is None:
        return "not compared"
    return "; ".join(agreement[0]) or "none"


def _parts(figures: _Figures) -> str:
    first, pieces = figures.first, []
    if "shipyard" in first:
        found = first["shipyard"]
        pieces.append(
            f"shipyard current_profile {found['profile_seconds']:.2f} s + compare "
            f"{found['compare_seconds']:.2f} s"
        )
    if "alibi-detect" in first:
        found = first["alibi-detect"]
        pieces.append(
            f"alibi-detect fit {found['fit_seconds']:.2f} s + predict "
            f"{found['predict_seconds']:.2f} s"
        )
    if "nannyml" in first:
        found = first["nannyml"]
        pieces.append(
            f"NannyML fit {found['fit_seconds']:.2f} s + calculate "
            f"{found['calculate_seconds']:.2f} s"
        )
    return "; ".join(pieces) or "n/a"


def _report(
    peers: dict[str, tuple[Path | None, str]],
    runs: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
    load: tuple[float, float],
) -> str:
    figures = _Figures(runs)
    targets = _targets(figures)
    reference = figures.first.get("shipyard-reference", {})
    versions = [note for _, note in peers.values()]
    if "floor" in figures.first:
        versions.append(figures.first["floor"]["version"])
    lines = [
        "## Drift: 1,000,000 current rows x 25 columns against a 1,000,000-row reference",
        "",
        "Command: `.venv/bin/python benchmarks/run.py --only drift` "
        "(benchmarks/bench_drift.py; its docstring gives the method).",
        "",
        f"Data: reference and current, {ROWS:,} rows each, seeded numpy ({SEED}), Parquet in "
        f"row groups of {ROW_GROUP_ROWS:,}: 20 numeric columns (normal, lognormal, uniform, "
        "integers spanning 10 to 10^9 values) and 5 string columns "
        f"({', '.join(str(v) for v in CATEGORICAL.values())} levels). Shifted in the current "
        f"data: {', '.join(f'{k} ({v})' for k, v in SHIFTS.items())}; the other 20 columns "
        "are drawn from the reference's distribution.",
        "",
        "Method: each contender in a fresh subprocess of its own interpreter (the peers in "
        "benchmarks/.venv-evidently, .venv-nannyml and .venv-alibi); the data loaded from "
        "Parquet before the timer (pandas DataFrames for the peers, numpy arrays for the floor, "
        "an Arrow table for shipyard; alibi-detect's string columns coded as numbers before the "
        "timer, as it takes numbers only); only the drift computation timed. Evidently: "
        "`Report([DataDriftPreset()]).run(current, reference)`, its default rules. NannyML: "
        "`UnivariateDriftCalculator` with its default methods (Jensen-Shannon), thresholds and "
        "chunking (10 chunks), fit on the reference + calculate on the current. alibi-detect: "
        "`TabularDrift(reference, p_val=0.05, categories_per_feature=...)` + `predict(current)`. "
        "Peak RSS: the process's VmHWM during the computation (reset just before it), so it "
        "includes the data loaded; rise = peak - RSS with the data loaded. shipyard's "
        f"drift ran {SHIPYARD_REPEATS} times (median; once before alibi-detect, the rest after), "
        "every other measurement once. "
        "shipyard's reference profile is built once per training dataset version and stored, "
        "so it is timed apart, and the drift workers load it (JSON, "
        f"{reference.get('profile_bytes', 0) / MIB:.1f} MiB) before the timer. The streamed "
        f"runs read the current file with `ParquetFile(path, pre_buffer=False).iter_batches("
        f"batch_size={STREAM_BATCH_ROWS})` inside the timer.",
        "",
        *_contender_rows(figures, errors),
        "",
        f"Split: {_parts(figures)}.",
        "",
        "| target | value | target | verdict |",
        "| --- | ---: | ---: | --- |",
        *(f"| {' | '.join(t)} |" for t in targets),
        "",
        *_other_figures(figures),
        "",
        f"Verdicts that differ from Evidently's: shipyard {_differing(figures, 'shipyard')}; "
        f"floor {_differing(figures, 'floor')}.",
        "",
        "Columns found drifted (NannyML: a column with an alert in any chunk; alibi-detect: "
        "Bonferroni-corrected p < 0.05):",
        "",
        *_found(figures),
        "",
        f"Memory as the streamed current rows grow (the file read again past {ROWS:,}):",
        "",
        *_growth(figures, errors),
        "",
        f"False alarms on the {len(CLEAN)} clean columns ({', '.join(CLEAN)}): their current "
        "rows in windows, each window against the whole reference; a column counts as alerting "
        "when its rule raised an alert in any window.",
        "",
        *_false_alarms(figures),
        "",
        f"Versions: {'; '.join(versions)}.",
        "",
        f"Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} on "
        f"{os.cpu_count()} CPUs: above the CPU count, other processes shared the machine and "
        "every time above is longer than on a quiet one.",
    ]
    for name, error in errors.items():
        lines.append(f"- {name} not measured: {error[:300]}")
    lines.append("")
    text = "\n".join(lines)
    print()
    print(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2:])
    else:
        raise SystemExit("run the benchmarks with `make bench` (benchmarks/run.py)")
