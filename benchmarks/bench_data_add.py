"""`shipyard data add` of a 1,000,000 x 25 Parquet file, side by side with its floor and DVC.

The targets (from the issue): peak memory below the table's in-memory size, time within 2x of
the floor (a bare `pyarrow.parquet.read_table` plus a streamed sha256 of the same file), and
faster than `dvc add` of the same file. Each contender runs in a fresh subprocess on the same
file (kept in the page cache), REPEATS times in alternating order; times are medians.

Run through `make bench` (benchmarks/run.py); `python bench_data_add.py --worker ...` is how
the parent starts one measurement.
"""

from __future__ import annotations

import hashlib
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
WORK_DIR = DATA_DIR / "work"
DATA_FILE = DATA_DIR / "data_add_1m_x25.parquet"

ROWS = 1_000_000
FLOAT_COLUMNS = 12
INT_COLUMNS = 8
LEVELS = (4, 12, 60, 250, 400)  # levels of the five categorical string columns
NULLABLE = ("f01", "i01", "c1")  # 1% nulls each, as real data has
NULL_SHARE = 0.01
SEED = 20_250_601
SPEC = {
    "rows": ROWS,
    "floats": FLOAT_COLUMNS,
    "ints": INT_COLUMNS,
    "levels": LEVELS,
    "nullable": NULLABLE,
    "null_share": NULL_SHARE,
    "seed": SEED,
    "generator": 1,
}
REPEATS = 7
WORKER_TIMEOUT_S = 120
MIB = 1024 * 1024

TIME_VS_FLOOR_LIMIT = 2.0  # shipyard's median time over the floor's, at most


# -- the data ---------------------------------------------------------------------------------


def ensure_data() -> Path:
    """The benchmark file, generated once (seeded) and regenerated when its spec changes."""
    stamp = DATA_FILE.with_suffix(".json")
    if DATA_FILE.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == _spec():
        return DATA_FILE
    started = time.perf_counter()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _write_data(DATA_FILE)
    stamp.write_text(json.dumps(_spec(), indent=2) + "\n")
    size = DATA_FILE.stat().st_size / MIB
    print(f"generated {DATA_FILE.name} ({size:.0f} MiB) in {time.perf_counter() - started:.1f} s")
    return DATA_FILE


def _spec() -> dict[str, Any]:
    return json.loads(json.dumps(SPEC))  # tuples as lists, as they come back from the stamp


def _write_data(target: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    columns: dict[str, Any] = {}

    def nulls(name: str) -> Any:
        return rng.random(ROWS) < NULL_SHARE if name in NULLABLE else None

    for i in range(FLOAT_COLUMNS):
        name = f"f{i:02d}"
        if i % 3 == 0:
            values = rng.normal(loc=10.0 * i, scale=1.0 + i, size=ROWS)
        elif i % 3 == 1:
            values = rng.lognormal(mean=1.0, sigma=0.5 + i / 10, size=ROWS)
        else:
            values = rng.uniform(-1000.0 * i, 1000.0 * i, size=ROWS)
        columns[name] = pa.array(values, mask=nulls(name))
    for i in range(INT_COLUMNS):
        name = f"i{i:02d}"
        high = 10 ** (1 + i)  # from 0-10 counts to identifiers up to 10**8
        values = rng.integers(-high if i % 2 else 0, high, size=ROWS, dtype=np.int64)
        columns[name] = pa.array(values, mask=nulls(name))
    for i, levels in enumerate(LEVELS):
        name = f"c{i}"
        weights = 1.0 / np.arange(1, levels + 1)  # Zipf-like: a few common levels
        codes = rng.choice(levels, size=ROWS, p=weights / weights.sum()).astype(np.int32)
        names = pa.array([f"{name}_level_{j:03d}" for j in range(levels)])
        indices = pa.array(codes, mask=nulls(name))
        columns[name] = pa.DictionaryArray.from_arrays(indices, names).dictionary_decode()
    partial = target.with_suffix(".part")
    pq.write_table(pa.table(columns), partial)  # pyarrow's defaults
    partial.replace(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# -- measuring inside a worker ----------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _measure(call: Callable[[], Any]) -> tuple[Any, float, int, str]:
    """Run `call` once: its result, seconds, and how far the RSS peak rose above the start.

    On Linux the peak (VmHWM) is reset first, so the rise is exactly the call's own peak;
    elsewhere ru_maxrss (the process's peak so far) is the fallback, a lower bound.
    """
    import resource

    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        method = "VmHWM"
    except OSError:
        method = "ru_maxrss"
    before = _status_kib("VmRSS")
    if before is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM") if method == "VmHWM" else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" and method == "ru_maxrss" else 1024
    return result, seconds, max(peak - before, 0) * scale, method


def worker_floor(path: Path) -> dict[str, Any]:
    """The floor: read the whole table with pyarrow, then sha256 the file in chunks."""
    import pyarrow as pa
    import pyarrow.dataset  # read_table's own imports, outside the timer
    import pyarrow.parquet as pq

    parts: dict[str, float] = {}

    def floor() -> tuple[int, str]:
        started = time.perf_counter()
        table = pq.read_table(path)
        parts["read_seconds"] = time.perf_counter() - started
        digest = _sha256(path)
        parts["hash_seconds"] = time.perf_counter() - started - parts["read_seconds"]
        return table.nbytes, digest

    (nbytes, digest), seconds, peak, method = _measure(floor)
    return {
        "seconds": seconds,
        **parts,
        "peak_bytes": peak,
        "peak_method": method,
        "table_nbytes": nbytes,
        "digest": digest,
        "pyarrow": pa.__version__,
    }


def worker_shipyard(path: Path, workdir: Path) -> dict[str, Any]:
    """shipyard's `data.add` into a new project; only the add is timed."""
    import shipyard.data as data
    from shipyard.project import Project

    project = Project.init(workdir / "project")
    version, seconds, peak, method = _measure(lambda: data.add(path, "bench", project=project))
    return {
        "seconds": seconds,
        "peak_bytes": peak,
        "peak_method": method,
        "digest": version.content_hash,
        "rows": version.num_rows,
        "columns": version.num_columns,
    }


def _worker_main(args: list[str]) -> None:
    kind, path = args[0], Path(args[1])
    if kind == "floor":
        result = worker_floor(path)
    elif kind == "shipyard":
        result = worker_shipyard(path, Path(args[2]))
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps(result))


# -- running the contenders -------------------------------------------------------------------


def _run_worker(tools: Tools, kind: str, path: Path, workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [tools.python, str(Path(__file__).resolve()), "--worker", kind, str(path), str(workdir)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _dvc_env(repo: Path) -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(repo / ".site")}


# What the `dvc` script runs, then the process's own peak RSS (VmHWM) on stderr: the child's
# ru_maxrss would also count the RSS of the parent it was forked from.
_DVC_MAIN = """
import sys
from pathlib import Path
from dvc.cli import main
code = main(sys.argv[1:])
status = Path("/proc/self/status")
lines = status.read_text().splitlines() if status.exists() else []
peak = [line.split()[1] for line in lines if line.startswith("VmHWM:")]
print("PEAK_KIB", *peak, file=sys.stderr)
sys.exit(code)
"""


def _run_dvc(tools: Tools, path: Path, workdir: Path) -> dict[str, Any]:
    """`dvc add` of a copy of the file in a new `dvc init --no-scm` folder; the command is timed."""
    assert tools.dvc is not None
    repo = workdir / "repo"
    repo.mkdir(parents=True)
    env = _dvc_env(repo)
    for setup in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"]):
        subprocess.run([str(tools.dvc), *setup], cwd=repo, env=env, capture_output=True, check=True)
    target = repo / path.name
    shutil.copyfile(path, target)  # in the repo, as DVC wants; untimed
    os.sync()
    python = str(tools.dvc.parent / "python")  # the interpreter of the `dvc` script
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-c", _DVC_MAIN, "add", "-q", target.name],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not (repo / f"{target.name}.dvc").is_file():
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise RuntimeError(f"dvc add exited {done.returncode}: {output}")
    peak = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("PEAK_KIB")]
    peak_bytes = int(peak[-1][0]) * 1024 if peak and peak[-1] else None
    return {"seconds": seconds, "peak_bytes": peak_bytes, "peak_method": "VmHWM of the process"}


def _dvc_startup(tools: Tools) -> float | None:
    """Seconds for `dvc version`, a command that loads DVC but reads no data (for context)."""
    assert tools.dvc is not None
    started = time.perf_counter()
    done = subprocess.run([str(tools.dvc), "version"], capture_output=True, check=False)
    return time.perf_counter() - started if done.returncode == 0 else None


CONTENDERS = {
    "floor": "floor: pyarrow read_table + sha256",
    "shipyard": "shipyard data.add",
    "dvc": "dvc add (whole command)",
}


def run(tools: Tools) -> str:
    """Measure every contender, print the table, and return the RESULTS.md section."""
    print("\n== shipyard data add: 1,000,000 x 25 Parquet ==")
    path = ensure_data()
    digest = _sha256(path)  # also puts the file in the page cache for every contender
    size = path.stat().st_size
    names = ["floor", "shipyard"] + (["dvc"] if tools.dvc is not None else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    startups: list[float] = []
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    for repeat in range(REPEATS):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            if name in errors:
                continue
            workdir = WORK_DIR / f"{name}-{repeat}"
            workdir.mkdir(parents=True)
            os.sync()  # no writeback of an earlier run's files during this one
            try:
                if name == "dvc":
                    result = _run_dvc(tools, path, workdir)
                else:
                    result = _run_worker(tools, name, path, workdir)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                errors[name] = str(exc)
                print(f"  {name}: failed: {exc}")
                continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            if name == "shipyard" and (result["digest"], result["rows"]) != (digest, ROWS):
                raise SystemExit("shipyard stored another hash or row count than the file's")
            runs[name].append(result)
            print(
                f"  run {repeat + 1}/{REPEATS} {name:8s} {result['seconds']:7.3f} s  "
                f"peak {_fmt(_mib(result['peak_bytes']), '7.1f', ' MiB')}"
            )
        if "dvc" in names and "dvc" not in errors:
            startup = _dvc_startup(tools)
            if startup is not None:
                startups.append(startup)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return _report(tools, path, size, runs, errors, startups)


# -- the report -------------------------------------------------------------------------------


def _median(results: list[dict[str, Any]], key: str = "seconds") -> float | None:
    return statistics.median(r[key] for r in results) if results else None


def _verdict(ratio: float | None, limit: float, strict: bool) -> str:
    if ratio is None:
        return "not measured"
    met = ratio < limit if strict else ratio <= limit
    return "MET" if met else "NOT MET"


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _fmt(value: float | None, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _report(
    tools: Tools,
    path: Path,
    size: int,
    runs: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
    startups: list[float],
) -> str:
    floor = runs["floor"]
    nbytes = floor[0]["table_nbytes"] if floor else None
    times = {name: _median(results) for name, results in runs.items()}
    peaks = {
        name: max((r["peak_bytes"] for r in res if r["peak_bytes"] is not None), default=None)
        for name, res in runs.items()
    }
    ship_time, floor_time, dvc_time = times.get("shipyard"), times.get("floor"), times.get("dvc")
    ship_peak = peaks.get("shipyard")
    vs_floor = ship_time / floor_time if ship_time and floor_time else None
    vs_dvc = ship_time / dvc_time if ship_time and dvc_time else None
    vs_memory = ship_peak / nbytes if ship_peak is not None and nbytes else None

    rows = []
    for name in CONTENDERS:
        results = runs.get(name, [])
        if not results:
            reason = errors.get(name) or ("not installed" if name == "dvc" else "not run")
            rows.append((CONTENDERS[name], "n/a", "n/a", "n/a", reason[:200]))
            continue
        each = " ".join(f"{r['seconds']:.3f}" for r in results)
        peak = peaks[name]
        what = "peak RSS of the whole process" if name == "dvc" else "RSS rise during the call"
        rows.append(
            (
                CONTENDERS[name],
                _fmt(times[name]),
                each,
                _fmt(_mib(peak), ".0f", " MiB"),
                what,
            )
        )
    targets = [
        (
            "time within 2x of the floor",
            "shipyard / floor time",
            _fmt(vs_floor, ".2f", "x"),
            f"<= {TIME_VS_FLOOR_LIMIT:.0f}x",
            _verdict(vs_floor, TIME_VS_FLOOR_LIMIT, strict=False),
        ),
        (
            "faster than dvc add",
            "shipyard / dvc time",
            _fmt(vs_dvc, ".2f", "x"),
            "< 1x",
            _verdict(vs_dvc, 1.0, strict=True)
            if tools.dvc is not None
            else "not measured (DVC not installed)",
        ),
        (
            "peak memory below the in-memory size",
            "shipyard peak / table nbytes",
            _fmt(vs_memory, ".2f", "x"),
            "< 1x",
            _verdict(vs_memory, 1.0, strict=True),
        ),
    ]

    in_memory = _fmt(nbytes / MIB if nbytes else None, ".0f", " MiB")
    startup = _fmt(statistics.median(startups) if startups else None, ".2f", " s")
    floor_parts = (
        f"read {_fmt(_median(floor, 'read_seconds'))} s + sha256 "
        f"{_fmt(_median(floor, 'hash_seconds'))} s"
        if floor
        else "n/a"
    )
    pyarrow_version = floor[0]["pyarrow"] if floor else "?"
    fastest = {name: min((r["seconds"] for r in res), default=None) for name, res in runs.items()}
    best_floor, best_ship = fastest.get("floor"), fastest.get("shipyard")
    best = (
        f"fastest runs: shipyard {best_ship:.3f} s, floor {best_floor:.3f} s, "
        f"{best_ship / best_floor:.2f}x (a check on the medians where runs vary a lot)"
        if best_ship and best_floor
        else "fastest runs: n/a"
    )

    # Printed table.
    print()
    widths = [36, 9, 44, 9]
    head = ("contender", "median s", f"runs, s ({REPEATS}, alternating order)", "peak")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)))
    print(f"\nin-memory size of the table (read_table(path).nbytes): {in_memory}")
    print(f"file: {size / MIB:.0f} MiB on disk; floor = {floor_parts}")
    print(best)
    if tools.dvc is not None:
        print(f"{tools.dvc_note}; `dvc version` (loads DVC, reads no data) takes {startup}")
    else:
        print(f"DVC could not be installed here, so it was not measured: {tools.dvc_note}")
    print()
    for target, ratio_name, ratio, limit, verdict in targets:
        print(f"{target:40s} {ratio_name:30s} {ratio:>7s} (target {limit:>5s})  {verdict}")

    # Markdown section.
    lines = [
        "## `shipyard data add`: 1,000,000 rows x 25 columns of Parquet",
        "",
        "Command: `make bench` (this benchmark: benchmarks/bench_data_add.py).",
        "",
        f"Data: {ROWS:,} rows; {FLOAT_COLUMNS} float64 and {INT_COLUMNS} int64 columns, "
        f"5 string columns with {', '.join(map(str, LEVELS))} levels; 1% nulls in "
        f"{', '.join(NULLABLE)}; seeded numpy ({SEED}), written by pyarrow {pyarrow_version} "
        f"with its defaults: {size / MIB:.0f} MiB on disk, {in_memory} in memory "
        "(`pyarrow.parquet.read_table(path).nbytes`).",
        "",
        f"Method: each contender runs in a fresh subprocess on the same file (in the page "
        f"cache), {REPEATS} times in alternating order; times are medians, peaks the largest "
        "of the runs. Floor: `pyarrow.parquet.read_table` plus a sha256 of the file in 4 MiB "
        "chunks, imports outside the timer. shipyard: `data.add(path, name, project=p)` into a "
        "new project each run, only the add timed (not the imports or `Project.init`); its "
        "peak is the rise of the process's peak RSS (VmHWM, reset before the call) over its RSS "
        "at the start of the call. dvc: `dvc add` of a copy of the file in a new "
        "`dvc init --no-scm` folder, the whole command timed (interpreter start and imports "
        "included), its peak the process's own peak RSS (VmHWM, read as it exits).",
        "",
        "| contender | median (s) | runs (s) | peak memory | peak measured as |",
        "| --- | ---: | --- | ---: | --- |",
        *(f"| {' | '.join(map(str, row))} |" for row in rows),
        "",
        f"- Floor split: {floor_parts}.",
        f"- Shipyard against the floor, {best}.",
    ]
    if tools.dvc is not None:
        lines.append(
            f"- DVC: {tools.dvc_note}, in benchmarks/.venv. Its times include starting Python "
            f"and loading DVC: `dvc version`, which loads DVC but reads no data, takes {startup}."
        )
    else:
        lines.append(
            f"- DVC could not be installed here, so it was not measured: {tools.dvc_note}."
        )
    for name, error in errors.items():
        lines.append(f"- {CONTENDERS[name]} failed: {error[:300]}")
    lines += [
        "",
        "| target | ratio | value | target | verdict |",
        "| --- | --- | ---: | ---: | --- |",
        *(f"| {' | '.join(target)} |" for target in targets),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2:])
    else:
        raise SystemExit("run the benchmarks with `make bench` (benchmarks/run.py)")
