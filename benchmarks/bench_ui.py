"""Dashboard: how fast each page of `shipyard ui` answers on a project with 10,000 runs and
1,000,000 logged predictions (the issue: "it loads fast ... paginated, queries indexed").

The project (made fresh in benchmarks/data/ui-work/, seeded, removed afterwards):
- 10,000 runs bulk-inserted through SQLAlchemy into the tracking tables in a few transactions,
  as `start_run` would have written them: 8 parameters (JSON), 2 tags, a 20-step `loss` series
  and 3 final metrics each (80,000 parameter rows, 230,000 metric points), spread over 90 days.
- 1,000,000 logged predictions written as Parquet directly in the prediction log's layout
  (`PartitionedFolder.write`, the log writer's own call): 3 models x 14 days of hourly
  partitions (1,008 files), request ids as the server makes them (UUIDv7 layout, made at the
  record's time; 1 in 100 a client's own X-Request-Id, random hex), inputs, outputs,
  latencies, 1% errors, and a
  10% canary arm on the last day of `churn`.
- the 3 models registered (sklearn pipelines), champions set, a live canary, 4 drift results,
  2 SLOs per model (availability and latency over 7 days) with 6 stored evaluations each, and
  a viewer's token.

Then `shipyard ui` runs on 127.0.0.1 (one worker, as a user starts it) and each page is asked
for with httpx, carrying the viewer's cookie: one untimed request, then REPEATS timed ones;
the table gives the median and the slowest. The time is the client's (loopback), so it
includes HTTP and the page's rendering, not the browser's drawing.

Run through `make bench` (benchmarks/run.py, `--only ui`); `python bench_ui.py` runs it alone
and prints the section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Tools

    from shipyard.project import Project

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "data" / "ui-work"

RUNS = 10_000
RUN_BATCH = 2_500  # runs per transaction
LOSS_STEPS = 20
PREDICTIONS = 1_000_000
MODELS = ("churn", "fraud", "upsell")
DAYS = 14
HOURS = DAYS * 24
PER_FILE = PREDICTIONS // (len(MODELS) * HOURS)  # 992 rows per hourly file
END = datetime(2026, 6, 1, tzinfo=UTC)  # the newest hour of traffic ends here
START = END - timedelta(hours=HOURS)
SEED = 20_260_601
PLANS = ["basic", "pro", "team"]
FEATURES = ["age", "income", "plan"]
REPEATS = 7
SLO_EVALUATIONS = 6  # per SLO (each one counts a week of the log: the slow part of seeding)
PAGE = 50  # rows per page of the dashboard's lists
DEEP_PAGE = 150  # of 200: the runs list's deep page
SLOW_MS = 300.0  # the "loads fast": a page over this is named in the report
SERVER_START_TIMEOUT_S = 90


# -- seeding ----------------------------------------------------------------------------------


def _training_frame(rows: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "plan": rng.choice(PLANS, rows),
        }
    )
    score = -0.08 * (frame["age"] - 45) + (frame["plan"] == "basic") * 1.5
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return frame


def _register_models(project: Project) -> None:
    """Each model twice (v1 champion, v2 a candidate), trained on its own stored dataset."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    import shipyard.data as data
    from shipyard.registry.aliases import set_alias
    from shipyard.registry.versions import register

    for index, name in enumerate(MODELS):
        for version, rows in enumerate((3000, 2500), start=1):
            train = _training_frame(rows, SEED + 10 * index + version)
            stored = data.add(train, f"{name}-train", project=project)
            encode = ColumnTransformer(
                [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
                remainder="passthrough",
            )
            model = Pipeline([("encode", encode), ("fit", LogisticRegression(max_iter=500))])
            model.fit(train[FEATURES], train["label"])
            register(model, name, training_data=stored, target="label", project=project)
        set_alias(name, "champion", 1, reason="benchmark", project=project)


def _seed_runs(project: Project) -> float:
    """RUNS runs in the tracking tables, RUN_BATCH per transaction; the seconds it took."""
    import numpy as np
    from sqlalchemy import insert

    from shipyard.store.models import (
        EnvironmentRecord,
        RunMetricRecord,
        RunParamRecord,
        RunRecord,
        RunTagRecord,
    )

    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    environment = uuid.uuid4().hex + uuid.uuid4().hex
    with project.metadata.write() as session:
        session.add(
            EnvironmentRecord(
                id=environment,
                python="3.11.7",
                platform="Linux-x86_64",
                packages={"scikit-learn": "1.5.2", "numpy": "2.1.3"},
            )
        )
    first = END - timedelta(days=90)
    seconds = np.sort(rng.uniform(0, 90 * 86400, RUNS))
    for batch_start in range(0, RUNS, RUN_BATCH):
        runs, params, tags, metrics = [], [], [], []
        for index in range(batch_start, min(RUNS, batch_start + RUN_BATCH)):
            run_id = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | index).hex
            at = first + timedelta(seconds=float(seconds[index]))
            failed = rng.random() < 0.03
            runs.append(
                {
                    "id": run_id,
                    "name": f"train-{MODELS[index % 3]}-{index}",
                    "kind": "run",
                    "pipeline": f"{MODELS[index % 3]}-training" if index % 4 else None,
                    "status": "failed" if failed else "finished",
                    "user": ("ana", "bo", "chen", "dee")[index % 4],
                    "started_at": at,
                    "ended_at": at + timedelta(seconds=float(rng.uniform(20, 900))),
                    "seed": int(rng.integers(0, 2**62)),
                    "code_root": "/home/ana/churn",
                    "code_commit": uuid.uuid4().hex + "abcdef01",
                    "code_dirty": bool(index % 7 == 0),
                    "environment_id": environment,
                    "error": "ValueError: Input contains NaN" if failed else None,
                }
            )
            values = {
                "C": float(rng.choice([0.01, 0.1, 1.0, 10.0])),
                "max_iter": int(rng.choice([100, 500, 1000])),
                "penalty": str(rng.choice(["l1", "l2"])),
                "solver": "saga",
                "features": FEATURES,
                "train_rows": int(rng.integers(10_000, 500_000)),
                "seed": index,
                "dataset": f"{MODELS[index % 3]}-train@{index % 40 + 1}",
            }
            params += [
                {"run_id": run_id, "key": k, "value": json.dumps(v)} for k, v in values.items()
            ]
            tags += [
                {"run_id": run_id, "key": "team", "value": ("growth", "risk")[index % 2]},
                {"run_id": run_id, "key": "purpose", "value": "nightly retrain"},
            ]
            stamp = int(at.timestamp() * 1000)
            decay = rng.uniform(0.05, 0.3)
            for step in range(LOSS_STEPS):
                metrics.append(
                    {"run_id": run_id, "key": "loss", "step": step, "timestamp_ms": stamp + step,
                     "value": float(0.7 * np.exp(-decay * step) + rng.normal(0, 0.005))}
                )  # fmt: skip
            accuracy = float(rng.uniform(0.7, 0.95))
            for key, value in (
                ("accuracy", accuracy),
                ("auc", accuracy + 0.03),
                ("f1", accuracy - 0.05),
            ):
                metrics.append(
                    {"run_id": run_id, "key": key, "step": 0, "timestamp_ms": stamp, "value": value}
                )  # fmt: skip
        with project.metadata.write() as session:
            session.execute(insert(RunRecord), runs)
            session.execute(insert(RunParamRecord), params)
            session.execute(insert(RunTagRecord), tags)
            session.execute(insert(RunMetricRecord), metrics)
    return time.perf_counter() - started


def _seed_predictions(project: Project) -> tuple[float, list[str], list[str]]:
    """PREDICTIONS records in the log's layout, one file per model and hour; the seconds it
    took and a few request ids (for the lookups): server-made ones, and clients' own."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from shipyard.predictions.log import log_folder
    from shipyard.predictions.parquet import PartitionedFolder, hour_of, schema
    from shipyard.serving.request_ids import new_request_id

    started = time.perf_counter()
    rng = np.random.default_rng(SEED + 1)
    folder = PartitionedFolder(log_folder(project.settings))
    samples: list[str] = []
    client_samples: list[str] = []
    canary_from = END - timedelta(days=1)
    for model_index, model in enumerate(MODELS):
        for hour in range(HOURS):
            begin = START + timedelta(hours=hour)
            offsets = np.sort(rng.uniform(0, 3600, PER_FILE))
            micros = (begin.timestamp() + offsets) * 1_000_000
            ids = [new_request_id(int(m // 1000)) for m in micros.tolist()]
            for index, (a, b) in enumerate(rng.integers(0, 2**63, (PER_FILE // 100, 2)).tolist()):
                ids[100 * index + 1] = f"{a:016x}{b:016x}"  # a client's own X-Request-Id
            if hour % 50 == 0:
                samples.append(ids[PER_FILE // 2])
                client_samples.append(ids[PER_FILE // 2 + 5])
            ages = rng.integers(18, 80, PER_FILE)
            incomes = rng.lognormal(10, 0.5, PER_FILE).round(2)
            plans = rng.choice(PLANS, PER_FILE)
            inputs = [
                f'{{"age": {a}, "income": {i}, "plan": "{p}"}}'
                for a, i, p in zip(ages.tolist(), incomes.tolist(), plans.tolist(), strict=True)
            ]
            predicted = (ages < 45).astype(int)
            failed = rng.random(PER_FILE) < 0.01
            outputs = [
                '{"error": "model failed"}' if bad else f'{{"predictions": [{p}]}}'
                for p, bad in zip(predicted.tolist(), failed.tolist(), strict=True)
            ]
            canary = rng.random(PER_FILE) < 0.1
            if model != "churn" or begin < canary_from:
                canary[:] = False
            table = pa.Table.from_arrays(
                [
                    pa.array(ids, pa.string()),
                    pc.cast(pa.array(micros.round().astype(np.int64)), pa.timestamp("us", "UTC")),
                    pa.array([model] * PER_FILE, pa.string()),
                    pa.array(np.where(canary, 2, 1), pa.int64()),
                    pa.array(np.where(canary, "v2", "v1").tolist(), pa.string()),
                    pa.array(["predict"] * PER_FILE, pa.string()),
                    pa.array(inputs, pa.string()),
                    pa.array(outputs, pa.string()),
                    pa.array(rng.lognormal(1.2, 0.4, PER_FILE).round(3), pa.float64()),
                    pa.array([[] for _ in range(PER_FILE)], pa.list_(pa.string())),
                    pa.array(["{}"] * PER_FILE, pa.string()),
                    pa.array(np.where(failed, 500, 200).astype(np.int32), pa.int32()),
                ],
                schema=schema(),
            )
            name = f"part-bench-{model_index}-{hour:06d}.parquet"
            folder.write(model, hour_of(begin.timestamp()), table, name)
    return time.perf_counter() - started, samples, client_samples


def _declare(project: Project) -> None:
    settings = project.settings.settings_file
    text = settings.read_text()
    for model in MODELS:
        text += (
            f'\n[[slos.{model}]]\nname = "availability"\nsli = "availability"\n'
            'objective = 0.99\nwindow = "7d"\n'
            f'\n[[slos.{model}]]\nname = "latency"\nsli = "latency"\nobjective = 0.95\n'
            'threshold_ms = 10\nwindow = "7d"\n'
        )
    settings.write_text(text)


def _monitoring(project: Project) -> None:
    """A live canary of churn v2, 4 drift results and SLO_EVALUATIONS evaluations per SLO."""
    from shipyard.monitoring import drift, slo
    from shipyard.release import rollouts
    from shipyard.release.spec import parse

    for hours_ago in (4, 3, 2, 1):
        drift.check(
            "churn",
            version=1,
            since=END - timedelta(hours=hours_ago),
            until=END - timedelta(hours=hours_ago - 1),
            project=project,
            now=END,
        )
    for step in range(SLO_EVALUATIONS, 0, -1):
        slo.evaluate(project=project, now=END - timedelta(hours=4 * step), notify=False)
    spec = {
        "name": "churn-v2",
        "model": "churn",
        "candidate": 2,
        "steps": [{"weight": 10}, {"weight": 50}],
        "interval": 3600,
        "min_samples": 200,
        "analysis": [{"metric": "error_rate", "max": 0.02}],
    }
    rollouts.start(parse(spec), project=project, now=END - timedelta(days=1))


@dataclass
class Seeded:
    folder: Path
    secret: str
    run_ids: list[str]  # the two newest
    deep_cursor: str  # the runs list's `after` cursor to page DEEP_PAGE
    request_ids: list[str]  # made by the server
    seconds: dict[str, float]
    client_request_ids: list[str] = dataclasses.field(default_factory=list)  # clients' own


def seed(folder: Path) -> Seeded:
    from sqlalchemy import select

    from shipyard.project import Project
    from shipyard.store.models import RunRecord
    from shipyard.tracking.runs import get_run
    from shipyard.ui import tokens
    from shipyard.ui.pages.runs import encode_cursor

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    project = Project.init(folder / ".shipyard")
    _declare(project)
    project.close()
    project = Project.open(folder / ".shipyard")
    seconds: dict[str, float] = {}
    seconds["runs"] = _seed_runs(project)
    seconds["predictions"], request_ids, client_ids = _seed_predictions(project)
    started = time.perf_counter()
    _register_models(project)
    _monitoring(project)
    seconds["models, drift, SLOs"] = time.perf_counter() - started
    secret, _ = tokens.create("bench", "viewer", project=project)
    newest = [RunRecord.started_at.desc(), RunRecord.id.desc()]
    with project.metadata.read() as session:
        first_two = list(session.scalars(select(RunRecord.id).order_by(*newest).limit(2)))
        # The last run of page DEEP_PAGE - 1: the list's own cursor to page DEEP_PAGE.
        before_deep = session.scalar(
            select(RunRecord.id).order_by(*newest).offset((DEEP_PAGE - 1) * PAGE - 1).limit(1)
        )
    cursor = encode_cursor(get_run(str(before_deep), project=project))
    project.close()
    return Seeded(folder, secret, first_two, cursor, request_ids, seconds, client_ids)


# -- the server and the timing ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(folder: Path, python: str) -> Iterator[str]:
    """`shipyard ui` on a free port, run in `folder`; its URL. Stopped by PID at the end."""
    port = _free_port()
    log = folder / "ui.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    shipyard = Path(python).parent / "shipyard"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(shipyard), "ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"shipyard ui exited: {log.read_text()[-2000:]}")
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("shipyard ui did not start listening")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def pages(seeded: Seeded) -> dict[str, str]:
    """What is timed: label -> path (with its query string)."""
    since, until = END - timedelta(hours=6), END - timedelta(hours=5)
    page_since, page_until = (t.strftime("%Y-%m-%dT%H:%M") for t in (since, until))
    api_since, api_until = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (since, until))
    first, second = seeded.run_ids
    request = seeded.request_ids[len(seeded.request_ids) // 2]
    client_request = seeded.client_request_ids[len(seeded.client_request_ids) // 2]
    offset = (DEEP_PAGE - 1) * PAGE
    return {
        "overview": "/ui/",
        "model version": "/ui/models/churn/2",
        "rollout": "/ui/rollouts/churn-v2",
        "SLOs (stored evaluations)": "/ui/slos",
        "drift": "/ui/drift/churn",
        "runs, first page": "/ui/runs",
        f"runs, page {DEEP_PAGE} of {RUNS // PAGE} (cursor)": (
            f"/ui/runs?after={seeded.deep_cursor}"
        ),
        "runs, filtered by status": "/ui/runs?status=failed",
        "runs, compare two": f"/ui/runs/compare?ids={first},{second}",
        "predictions, newest": "/ui/predictions",
        "predictions, model+version+arm+hour": (
            f"/ui/predictions?model=churn&version=2&arm=v2&since={page_since}&until={page_until}"
        ),
        "predictions, request id search": f"/ui/predictions?request_id={request}",
        "one prediction (by request id)": f"/ui/predictions/{request}",
        f"API: runs, offset {offset:,}": f"/api/v1/runs?limit={PAGE}&offset={offset}",
        "API: predictions, model+version+arm+hour": (
            f"/api/v1/predictions?model=churn&version=2&arm=v2&start={api_since}&end={api_until}"
        ),
        "API: prediction by request id": f"/api/v1/predictions/{request}",
        "API: prediction by a client's own request id (reads every file)": (
            f"/api/v1/predictions/{client_request}"
        ),
        "API: SLOs (latest stored evaluations)": "/api/v1/slos",
        "API: SLOs computed now (live=true)": "/api/v1/slos?live=true",
    }


@dataclass
class Timing:
    label: str
    path: str
    status: int
    size: int
    times_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def time_pages(url: str, secret: str, wanted: dict[str, str]) -> list[Timing]:
    import httpx

    timings = []
    with httpx.Client(
        base_url=url,
        cookies={"shipyard_token": secret},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    ) as client:
        for label, path in wanted.items():
            first = client.get(path)  # untimed: imports, first DuckDB connection, caches
            times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            timings.append(Timing(label, path, response.status_code, len(first.content), times))
    return timings


# -- the report -------------------------------------------------------------------------------


def _report(seeded: Seeded, timings: list[Timing]) -> str:
    slow = [t for t in timings if t.median > SLOW_MS]
    broken = [t for t in timings if t.status != 200]
    lines = [
        "## Dashboard: page times on 10,000 runs and 1,000,000 logged predictions",
        "",
        "Command: `.venv/bin/python benchmarks/run.py --only ui` (benchmarks/bench_ui.py; its "
        "docstring gives the method). Seeding: "
        + ", ".join(f"{name} {value:.0f} s" for name, value in seeded.seconds.items())
        + ".",
        "",
        f"| page | path | status | KiB | median ms (of {REPEATS}) | slowest ms |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for t in timings:
        path = t.path if len(t.path) < 70 else t.path[:67] + "..."
        lines.append(
            f"| {t.label} | `{path}` | {t.status} | {t.size / 1024:.0f} | {t.median:.1f} "
            f"| {max(t.times_ms):.1f} |"
        )
    lines += ["", f"Pages over {SLOW_MS:.0f} ms (median): " + (
        ", ".join(f"{t.label} ({t.median:.0f} ms)" for t in slow) if slow else "none"
    )]  # fmt: skip
    if broken:
        lines.append(
            "Pages that did not answer 200: " + ", ".join(f"{t.label} ({t.status})" for t in broken)
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    return text


def run(tools: Tools) -> str:
    """Seed the project, time every page, and return the RESULTS.md section."""
    print("\n== ui: dashboard pages on 10,000 runs and 1,000,000 logged predictions ==")
    seeded = seed(WORK_DIR)
    print("seeded: " + ", ".join(f"{k} {v:.1f} s" for k, v in seeded.seconds.items()))
    try:
        with serve(seeded.folder, tools.python) as url:
            timings = time_pages(url, seeded.secret, pages(seeded))
    finally:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    return _report(seeded, timings)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from run import Tools as _Tools

    run(_Tools(sys.executable, None, "not run"))
