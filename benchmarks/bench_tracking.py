"""Run tracking: shipyard's logging side by side with MLflow's, both on SQLite.

The targets (from the issue):
- one-by-one metric logging at least 20x faster than MLflow's `log_metric`, per call, and the
  points durable once the run has ended, even if the process is then killed;
- batch logging and run creation at least 5x faster than MLflow's `log_batch` path (the same
  10,000 points) and than 100 runs of 10 params and 10 metrics logged call by call.

Each measurement is a fresh subprocess on a fresh store (a new `Project.init` folder for
shipyard, a new `sqlite:///` file with one experiment for MLflow); imports and store creation
happen before the timer. Every worker ends by killing itself with SIGKILL (no atexit handlers,
no interpreter shutdown), and the parent then counts what is in the database: the durability
check. MLflow lives in benchmarks/.venv-mlflow (run.py); shipyard runs in the project's venv.

Run through `make bench` (benchmarks/run.py); `python bench_tracking.py --worker ...` is how the
parent starts one measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Tools

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "data" / "tracking-work"  # on the same disk as a project's own .shipyard/

POINTS = 10_000  # case 1 (shipyard) and case 2 (both): points of one series, steps 0..9,999
MLFLOW_ONE_BY_ONE_CALLS = 1_000  # case 1 for MLflow: at ~10 ms a call, 10,000 would take minutes
BATCH_SIZE = 1_000  # MLflow's limit of metrics per log_batch request
RUNS = 100
PARAMS_PER_RUN = 10
METRICS_PER_RUN = 10
REPEATS = 5
WORKER_TIMEOUT_S = 600

ONE_BY_ONE_TARGET = 20.0  # MLflow / shipyard time per call, at least
BATCH_TARGET = 5.0
RUNS_TARGET = 5.0
# MLflow's figures in the issue (another machine): per log_metric call, log_batch, 100 runs.
ISSUE_MLFLOW = {"one_by_one": 7_000.0, "batch": 0.66, "runs": 5.0}


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    mlflow_call: str
    shipyard_call: str
    target: float


CASES = (
    Case(
        "one_by_one",
        "one-by-one log_metric to one run (per call)",
        "mlflow.log_metric(key, value, step=i), then mlflow.end_run()",
        "run.log_metric(key, value, step=i), then run.end()",
        ONE_BY_ONE_TARGET,
    ),
    Case(
        "batch",
        f"{POINTS:,} points, batch path",
        f"MlflowClient().log_batch(run_id, metrics=[{BATCH_SIZE} Metric]) x "
        f"{POINTS // BATCH_SIZE}, then mlflow.end_run()",
        "run.log_metrics({key: value}, step=i) x 10,000, then run.end()",
        BATCH_TARGET,
    ),
    Case(
        "runs",
        f"{RUNS} runs x ({PARAMS_PER_RUN} params + {METRICS_PER_RUN} metrics), call by call",
        "mlflow.start_run(); log_param x 10; log_metric x 10; mlflow.end_run()",
        "start_run(); run.log_param x 10; run.log_metric x 10; run.end()",
        RUNS_TARGET,
    ),
)


def _values(count: int) -> list[float]:
    return [1.0 / (i + 1) + (i % 7) * 1e-3 for i in range(count)]


# -- the workers (each a fresh process; the parent counts the rows after it is killed) --------


def _shipyard_worker(case: str, workdir: Path, count: int) -> dict[str, Any]:
    from importlib.metadata import version

    from shipyard.project import Project
    from shipyard.tracking import start_run

    project = Project.init(workdir / "project")
    values = _values(count)
    result: dict[str, Any] = {"version": version("shipyard"), "sqlite": sqlite3.sqlite_version}
    if case == "runs":
        started = time.perf_counter()
        for r in range(RUNS):
            run = start_run(f"run-{r}", project=project)
            if r == 0:
                result["first_start_seconds"] = time.perf_counter() - started
            for k in range(PARAMS_PER_RUN):
                run.log_param(f"param_{k}", r * PARAMS_PER_RUN + k)
            for k in range(METRICS_PER_RUN):
                run.log_metric(f"metric_{k}", values[k])
            run.end()
        result["seconds"] = time.perf_counter() - started
        return result
    started = time.perf_counter()
    run = start_run("bench", project=project)
    result["start_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    if case == "one_by_one":
        for i in range(count):
            run.log_metric("loss", values[i], step=i)
    else:
        for i in range(count):
            run.log_metrics({"loss": values[i]}, step=i)
    run.end()
    result["seconds"] = time.perf_counter() - started
    return result


def _mlflow_worker(case: str, workdir: Path, count: int) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(workdir / "art").as_uri())
    values = _values(count)
    result: dict[str, Any] = {"version": mlflow.__version__, "sqlite": sqlite3.sqlite_version}
    if case == "runs":
        started = time.perf_counter()
        for r in range(RUNS):
            mlflow.start_run(experiment_id=experiment, run_name=f"run-{r}")
            if r == 0:
                result["first_start_seconds"] = time.perf_counter() - started
            for k in range(PARAMS_PER_RUN):
                mlflow.log_param(f"param_{k}", r * PARAMS_PER_RUN + k)
            for k in range(METRICS_PER_RUN):
                mlflow.log_metric(f"metric_{k}", values[k])
            mlflow.end_run()
        result["seconds"] = time.perf_counter() - started
        return result
    started = time.perf_counter()
    run_id = mlflow.start_run(experiment_id=experiment, run_name="bench").info.run_id
    result["start_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    if case == "one_by_one":
        for i in range(count):
            mlflow.log_metric("loss", values[i], step=i)
    else:
        client = MlflowClient()
        for first in range(0, count, BATCH_SIZE):
            stamp = int(time.time() * 1000)
            batch = [
                Metric("loss", values[i], stamp, i)
                for i in range(first, min(first + BATCH_SIZE, count))
            ]
            client.log_batch(run_id, metrics=batch)
    mlflow.end_run()
    result["seconds"] = time.perf_counter() - started
    return result


def _worker_main(args: list[str]) -> None:
    contender, case, workdir, count = args[0], args[1], Path(args[2]), int(args[3])
    if contender == "shipyard":
        result = _shipyard_worker(case, workdir, count)
    elif contender == "mlflow":
        result = _mlflow_worker(case, workdir, count)
    else:
        raise SystemExit(f"unknown worker {contender!r}")
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # the durability check: nothing runs after this


# -- counting what reached the database -------------------------------------------------------

_COUNTS = {
    "shipyard": (
        "project/shipyard.db",
        "SELECT (SELECT COUNT(*) FROM run_metrics), (SELECT COUNT(*) FROM run_params), "
        "(SELECT COUNT(*) FROM runs WHERE status = 'finished'), (SELECT COUNT(*) FROM runs)",
    ),
    "mlflow": (
        "mlflow.db",
        "SELECT (SELECT COUNT(*) FROM metrics), (SELECT COUNT(*) FROM params), "
        "(SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'), (SELECT COUNT(*) FROM runs)",
    ),
}


def _count_rows(contender: str, workdir: Path) -> dict[str, int]:
    name, query = _COUNTS[contender]
    with sqlite3.connect(f"file:{workdir / name}?mode=ro", uri=True) as db:
        metrics, params, finished, runs = db.execute(query).fetchone()
    return {"metrics": metrics, "params": params, "finished": finished, "runs": runs}


def _expected(case: str, count: int) -> dict[str, int]:
    if case == "runs":
        return {
            "metrics": RUNS * METRICS_PER_RUN,
            "params": RUNS * PARAMS_PER_RUN,
            "finished": RUNS,
            "runs": RUNS,
        }
    return {"metrics": count, "params": 0, "finished": 1, "runs": 1}


# -- running the contenders -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "MLFLOW_"))}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    return env


def _run_worker(
    python: str, contender: str, case: str, workdir: Path, count: int
) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    done = subprocess.run(
        [python, script, "--worker", contender, case, str(workdir), str(count)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
        cwd=HERE.parent,  # the repository: both record the git state of the code, as in use
        env=_env(),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != -signal.SIGKILL or not lines:
        raise RuntimeError(
            f"{contender} {case} worker exited {done.returncode} (expected its own SIGKILL): "
            f"{done.stderr.strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["count"] = count
    result["rows"] = _count_rows(contender, workdir)
    result["durable"] = result["rows"] == _expected(case, count)
    return result


def _plan(tools: Tools, mlflow_calls: int) -> list[tuple[str, str, int]]:
    """(contender, case, count) for every measurement of one repetition."""
    plan = [("shipyard", "one_by_one", POINTS), ("shipyard", "batch", POINTS)]
    plan.append(("shipyard", "runs", RUNS))
    if tools.mlflow_python is not None:
        plan += [
            ("mlflow", "one_by_one", mlflow_calls),
            ("mlflow", "batch", POINTS),
            ("mlflow", "runs", RUNS),
        ]
    return plan


def run(tools: Tools, mlflow_calls: int = MLFLOW_ONE_BY_ONE_CALLS) -> str:
    """Measure every case, print the table, and return the RESULTS.md section."""
    print("\n== run tracking: shipyard vs MLflow, SQLite ==")
    if tools.mlflow_python is None:
        print(f"MLflow could not be installed here, so it is not measured: {tools.mlflow_note}")
    plan = _plan(tools, mlflow_calls)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {(c, k): [] for c, k, _ in plan}
    errors: dict[tuple[str, str], str] = {}
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    for repeat in range(REPEATS):
        for contender, case, count in plan if repeat % 2 == 0 else plan[::-1]:
            if (contender, case) in errors:
                continue
            python = tools.python if contender == "shipyard" else str(tools.mlflow_python)
            workdir = WORK_DIR / f"{contender}-{case}-{repeat}"
            workdir.mkdir(parents=True)
            os.sync()  # no writeback of an earlier run's files during this one
            try:
                result = _run_worker(python, contender, case, workdir, count)
            except (RuntimeError, OSError, ValueError, sqlite3.Error) as exc:
                errors[(contender, case)] = str(exc)
                print(f"  {contender} {case}: failed: {exc}")
                continue
            except subprocess.TimeoutExpired as exc:
                errors[(contender, case)] = f"timed out after {exc.timeout:.0f} s"
                print(f"  {contender} {case}: timed out")
                continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            results[(contender, case)].append(result)
            print(
                f"  run {repeat + 1}/{REPEATS} {contender:8s} {case:16s} {count:6,d} "
                f"{result['seconds']:8.3f} s  rows {result['rows']['metrics']:,} "
                f"{'durable' if result['durable'] else 'MISSING ROWS'}"
            )
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    load.append(os.getloadavg()[0])
    return _report(tools, mlflow_calls, results, errors, time.perf_counter() - started, load)


# -- the report -------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str = "seconds") -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _per_call_us(runs: list[dict[str, Any]], pick: Any = statistics.median) -> float | None:
    per_call = [r["seconds"] / r["count"] * 1e6 for r in runs]
    return pick(per_call) if per_call else None


def _ratio(mlflow: float | None, shipyard: float | None) -> float | None:
    return mlflow / shipyard if mlflow and shipyard else None


def _report(
    tools: Tools,
    mlflow_calls: int,
    results: dict[tuple[str, str], list[dict[str, Any]]],
    errors: dict[tuple[str, str], str],
    elapsed: float,
    load: list[float],
) -> str:
    def get(contender: str, case: str) -> list[dict[str, Any]]:
        return results.get((contender, case), [])

    def version(contender: str) -> str:
        for (name, _), runs in results.items():
            if name == contender and runs:
                return f"{runs[0]['version']} (SQLite {runs[0]['sqlite']})"
        return "n/a"

    rows: list[tuple[str, ...]] = []
    verdicts: list[tuple[str, ...]] = []
    for case in CASES:
        ship, ml = get("shipyard", case.name), get("mlflow", case.name)
        if case.name == "one_by_one":
            ship_value, ml_value = _per_call_us(ship), _per_call_us(ml)
            ship_best, ml_best = _per_call_us(ship, min), _per_call_us(ml, min)
            unit, spec = " us/call", ".1f"
        else:
            ship_value, ml_value = _median(ship), _median(ml)
            ship_best = min((r["seconds"] for r in ship), default=None)
            ml_best = min((r["seconds"] for r in ml), default=None)
            unit, spec = " s", ".3f"
        for contender, runs, call, value in (
            ("shipyard", ship, case.shipyard_call, ship_value),
            ("MLflow", ml, case.mlflow_call, ml_value),
        ):
            each = " ".join(f"{r['seconds']:.3f}" for r in runs) or "n/a"
            count = f"{runs[0]['count']:,}" if runs else "n/a"
            error = errors.get((contender.lower(), case.name))
            rows.append(
                (
                    case.title,
                    contender,
                    f"`{call}`",
                    count,
                    _fmt(_median(runs)),
                    _fmt(value, spec, unit),
                    each if error is None else f"failed: {error[:200]}",
                )
            )
        ratio = _ratio(ml_value, ship_value)
        verdict = "not measured" if ratio is None else "PASS" if ratio >= case.target else "FAIL"
        verdicts.append(
            (
                case.title,
                _fmt(ratio, ".1f", "x"),
                f">= {case.target:.0f}x",
                verdict,
                _fmt(_ratio(ml_best, ship_best), ".1f", "x"),
                _fmt(_ratio(ISSUE_MLFLOW[case.name], ship_value), ".1f", "x"),
            )
        )

    starts = {
        name: _median(get(name, "one_by_one"), "start_seconds") for name in ("shipyard", "mlflow")
    }
    first_starts = {
        name: _median(get(name, "runs"), "first_start_seconds") for name in ("shipyard", "mlflow")
    }
    durability: list[tuple[str, ...]] = []
    for (contender, case), runs in results.items():
        if not runs:
            continue
        expected = _expected(case, runs[0]["count"])
        found = [r["rows"] for r in runs]
        ok = all(r["durable"] for r in runs)
        durability.append(
            (
                contender,
                case,
                f"{expected['metrics']:,} points, {expected['params']:,} params, "
                f"{expected['finished']} finished run(s)",
                "; ".join(
                    sorted(
                        {
                            f"{f['metrics']:,} points, {f['params']:,} params, "
                            f"{f['finished']}/{f['runs']} finished"
                            for f in found
                        }
                    )
                ),
                f"{len(runs)}/{len(runs)}" if ok else "NO",
            )
        )
    ship_durable = all(
        r["durable"] for (c, _), runs in results.items() if c == "shipyard" for r in runs
    )

    # Printed tables.
    print()
    widths = [58, 9, 9, 11, 16]
    head = ("case", "contender", "count", "median s", "compared value")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        cells = (row[0], row[1], row[3], row[4], row[5])
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
    print(
        f"\nrun start (untimed in case 1, shown apart): shipyard "
        f"{_fmt(starts['shipyard'], '.3f', ' s')}, MLflow {_fmt(starts['mlflow'], '.3f', ' s')}"
    )
    for contender, case, expected, found, ok in durability:
        print(f"durability {contender:8s} {case:16s} expected {expected}; found {found}; {ok}")
    print(f"shipyard {version('shipyard')}; MLflow {version('mlflow')}; {tools.mlflow_note}")
    print()
    for title, ratio, target, verdict, best, issue in verdicts:
        print(
            f"{title:52s} MLflow/shipyard {ratio:>7s} (target {target})  {verdict:4s}  "
            f"fastest runs {best:>7s}; vs the issue's MLflow figure {issue:>7s}"
        )
    print(
        "shipyard points durable after the run ends and the process is SIGKILLed: "
        + ("PASS" if ship_durable and any(get("shipyard", "one_by_one")) else "FAIL")
    )

    # Markdown section.
    lines = [
        "## Run tracking: shipyard vs MLflow, both on SQLite",
        "",
        "Command: `make bench` (this benchmark alone: "
        "`.venv/bin/python benchmarks/run.py --only tracking`; "
        "benchmarks/bench_tracking.py).",
        "",
        f"Versions: shipyard {version('shipyard')}; MLflow {version('mlflow')}, in "
        "benchmarks/.venv-mlflow from the pinned benchmarks/requirements-mlflow.txt. "
        f"This section's whole run took {elapsed:.0f} s.",
        "",
        f"Method: every measurement is a fresh subprocess on a fresh store, {REPEATS} "
        "repetitions in alternating order, medians reported. shipyard: `Project.init(folder)` "
        "(SQLite, the default), then `start_run(..., project=p)`. MLflow: "
        "`mlflow.set_tracking_uri('sqlite:///...')` and `mlflow.create_experiment` up front. "
        "Imports and store creation are outside the timer; only the logging is timed, "
        "including ending the run (so shipyard's final flush counts). In case 1 the "
        "`start_run` before the calls is timed apart and left out; in case 3 starting and "
        "ending the 100 runs is what is measured. The stores sit in benchmarks/data/ (ext4 "
        "here); the workers run from the repository root, so both record its git state. "
        "MLflow's telemetry is off (`MLFLOW_DISABLE_TELEMETRY`).",
        "",
        f"Case 1 is compared per call: shipyard makes {POINTS:,} `log_metric` calls, MLflow "
        f"{mlflow_calls:,} (MLflow commits one transaction per call, so {POINTS:,} calls would "
        "take minutes each repetition; its time per call does not depend on the count "
        "to first order). Case 2: the same "
        f"{POINTS:,} points (one series, steps 0..{POINTS - 1:,}); shipyard has no "
        "multi-step batch call, so its side is `log_metrics` per step, which buffers like "
        f"`log_metric`; MLflow's is `log_batch` in batches of {BATCH_SIZE:,}, its limit.",
        "",
        "| case | contender | calls | count | median (s) | compared | runs (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
        *(
            f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} | {row[5]} | {row[6]} |"
            for row in rows
        ),
        "",
        "| target | MLflow / shipyard (medians) | target | verdict | fastest runs' ratio | "
        "the issue's MLflow figure / shipyard's median |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
        *(f"| {' | '.join(v)} |" for v in verdicts),
        "",
        "The last column sets shipyard's median here against the MLflow figures quoted in the "
        "issue (7 ms a `log_metric` call, 0.66 s for `log_batch`, 5.0 s for the 100 runs), "
        "measured on another machine: for orientation only, not the verdict, but it shows how "
        "much of each ratio comes from MLflow being slower on this machine than there.",
        "",
        "Durability: each worker kills itself with SIGKILL right after the run ends (no atexit "
        "handler, no interpreter shutdown); the parent then counts the rows in the database.",
        "",
        "| contender | case | expected | found | every repetition |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(d)} |" for d in durability),
        "",
        "Notes:",
        "",
        f"- Run start (case 1, not in the timed part): shipyard "
        f"{_fmt(starts['shipyard'], '.3f', ' s')} (the first run of a process also records the "
        f"git state and the installed packages, once), MLflow "
        f"{_fmt(starts['mlflow'], '.3f', ' s')}.",
        "- The stores do not promise the same thing: MLflow's SQLite store keeps SQLite's "
        "defaults (rollback journal, `synchronous=FULL`): each call is an fsynced commit. "
        "shipyard buffers points in memory (committed every 1,000 points or 1 s, and at run "
        "end) and uses WAL with `synchronous=NORMAL`: a commit survives the process being "
        "killed (checked above) but the last commits may be lost on power failure or an OS "
        "crash; a process killed mid-run loses the points since its last flush. MLflow's "
        "times therefore depend on the disk's fsync latency much more than shipyard's.",
        f"- Case 3's first `start_run` (inside the timed part, once per process): shipyard "
        f"{_fmt(first_starts['shipyard'], '.3f', ' s')}, MLflow "
        f"{_fmt(first_starts['mlflow'], '.3f', ' s')} (medians).",
        f"- Load average (1 min) at the start and end of this benchmark: "
        f"{load[0]:.2f}, {load[-1]:.2f}, on {os.cpu_count()} CPUs; the spread of each "
        "contender's runs is in the first table.",
        "- MLflow is 3.17.2, not 3.18.0: the package index here has mlflow 3.18.0 but not the "
        "mlflow-skinny 3.18.0 it requires.",
    ]
    for (contender, case), error in errors.items():
        lines.append(f"- {contender} {case} failed: {error[:300]}")
    if tools.mlflow_python is None:
        lines.append(f"- MLflow could not be installed here, so it was not measured: "
                     f"{tools.mlflow_note}.")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2:])
    else:
        raise SystemExit("run the benchmarks with `make bench` (benchmarks/run.py)")
