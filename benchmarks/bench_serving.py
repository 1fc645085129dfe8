"""Model serving: `shipyard serve` against MLflow, BentoML and a bare uvicorn floor, under `hey`.

The targets (from the issue), all at one row per request:
- A: throughput at concurrency 32, signature validation and the prediction log on, at least 10x
  `mlflow models serve`, at least 3x BentoML with its batching (`@bentoml.api(batchable=True)`),
  and at least 80% of the bare floor, at the same worker count;
- B: with micro-batching on (`[serving.bench] max_batch_size = 64, max_batch_wait_ms = 2`),
  throughput at concurrency 32 above the bare floor;
- C: p99 latency at concurrency 8 no worse than the floor's by more than 25%;
- D: memory per worker, reported against MLflow's and BentoML's (no threshold);
- E: several workers share load by request, not only by connection (uvicorn's workers balance
  connections, so a few keep-alive clients can pin one worker): checked here as the busiest
  worker's share of the workers' CPU with 2 workers at concurrency 2 and 8, at most 65%.

The contenders serve the same scikit-learn model (a LogisticRegression on 8 float columns, fitted
once here and saved into each one's own format), each from its own interpreter:
- shipyard: `shipyard serve bench@champion --workers N` on a temporary project where the model is
  registered from a dataset version (so its signature is inferred and enforced), prediction log on
  (the default); `shipyard-batch` is the same with micro-batching on in the project's settings;
- floor: benchmarks/serving/floor_app.py, a raw ASGI app under uvicorn (uvloop, httptools) with
  orjson, which parses the records, checks them and calls `model.predict` on a float64 array in
  the model's column order; `floor-frame` wraps that array in a DataFrame first (the input the
  peers' sklearn paths give the model), shown for the DataFrame's cost;
- bentoml / bentoml-batch: benchmarks/serving/bento_service.py under `bentoml serve`
  (benchmarks/.venv-bentoml), the model from a BentoML model store;
- mlflow: `mlflow models serve -m DIR --env-manager local --workers N` (benchmarks/.venv-mlflow).

All of them run at once (idle between their turns), so that the contenders can alternate in every
scenario. Each measurement is a warm-up window and a timed window of Debian's `hey` (keep-alive
clients, a fixed body); around the timed one the CPU time (utime + stime, /proc/PID/stat) of the
server's whole process tree is read, and its difference divided by the completed requests gives
the CPU milliseconds per request: on a machine shared with the load generator (and maybe with
others) it is the figure least disturbed. Memory (RSS and PSS, /proc) is read after the load.

Run through `make bench` or `python benchmarks/run.py --only serving [--quick]` (run.py);
`python bench_serving.py --setup ...` is how the parent prepares each contender's model in that
contender's own interpreter, so this module imports only the standard library at the top.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from run import Tools

HERE = Path(__file__).resolve().parent
SERVING_DIR = HERE / "serving"
WORK_DIR = HERE / "data" / "serving-work"

ROWS, COLUMNS, SEED = 2_000, 8, 20250601
MODEL_NAME, ALIAS = "bench", "champion"
BATCH_SETTINGS = {"max_batch_size": 64, "max_batch_wait_ms": 2}
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "numpy==2.4.6", "scipy==1.17.1", "pandas==3.1.1"]

CONTENDERS = (
    "shipyard",
    "shipyard-batch",
    "shipyard-nolog",
    "floor",
    "floor-frame",
    "bentoml",
    "bentoml-batch",
    "mlflow",
)
# Diagnostics, run only when named: the floor with a DataFrame for the model, and shipyard with
# the prediction log off (`--no-log`), which no target reads.
DEFAULT_CONTENDERS = tuple(n for n in CONTENDERS if n not in ("floor-frame", "shipyard-nolog"))
LABELS = {
    "shipyard": "shipyard serve",
    "shipyard-batch": "shipyard serve, micro-batching",
    "shipyard-nolog": "shipyard serve --no-log",
    "floor": "floor: raw ASGI + uvicorn + orjson, numpy",
    "floor-frame": "floor, DataFrame input",
    "bentoml": "BentoML",
    "bentoml-batch": "BentoML, batchable=True",
    "mlflow": "mlflow models serve",
}
# Target E: with several workers, windows of 2 keep-alive clients, each window on new connections.
SHARING_CONCURRENCY, SHARING_WINDOWS = 2, 3
SHARE_TARGET = 0.65  # the busiest worker's share of the workers' CPU, in every window, at most
# The cells the targets read (one row; concurrency 8 and 32) get this many windows per round.
TARGET_CONCURRENCY, TARGET_WINDOWS = (8, 32), 3
TARGET_MLFLOW, TARGET_BENTOML, TARGET_FLOOR, TARGET_P99 = 10.0, 3.0, 0.8, 1.25
READY_TIMEOUT_S = 240
READY_ANSWERS = 20  # answers in a row, each on a new connection, before a server counts as up
REQUEST_TIMEOUT_S = 30
IDLE_WINDOW_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Options:
    """The measurement matrix: every contender x workers x concurrency x rows per request."""

    seconds: float = 3.0
    warmup: float = 0.5
    concurrency: tuple[int, ...] = (1, 8, 32)
    rows: tuple[int, ...] = (1, 100)
    workers: tuple[int, ...] = (1, 2)
    contenders: tuple[str, ...] = DEFAULT_CONTENDERS
    rounds: int = 1
    quick: bool = False
    command: str = "python benchmarks/run.py --only serving"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        def ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
            if not text:
                return default
            values = tuple(int(part) for part in text.split(",") if part.strip())
            if not values or min(values) < 1:
                raise SystemExit(f"expected positive integers separated by commas, got {text!r}")
            return values

        quick = bool(getattr(args, "quick", False))
        contenders = DEFAULT_CONTENDERS
        if getattr(args, "serving_contenders", None):
            contenders = tuple(p.strip() for p in args.serving_contenders.split(",") if p.strip())
            unknown = sorted(set(contenders) - set(CONTENDERS))
            if unknown:
                raise SystemExit(f"unknown serving contenders {unknown}; known: {CONTENDERS}")
        seconds = getattr(args, "serving_seconds", None) or (2.0 if quick else 3.0)
        return cls(
            seconds=float(seconds),
            warmup=0.5,
            concurrency=ints(
                getattr(args, "serving_concurrency", None), (8, 32) if quick else (1, 8, 32)
            ),
            rows=ints(getattr(args, "serving_rows", None), (1,) if quick else (1, 100)),
            workers=ints(getattr(args, "serving_workers", None), (1, 2)),
            contenders=contenders,
            rounds=max(1, int(getattr(args, "serving_rounds", None) or 1)),
            quick=quick,
            command=" ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        )


# -- the model and each contender's copy of it ------------------------------------------------


def _frame() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    values = rng.normal(size=(ROWS, COLUMNS))
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(COLUMNS)])
    score = values @ rng.normal(size=COLUMNS) + rng.normal(scale=0.5, size=ROWS)
    return frame, (score > 0).astype("int64")


def _prepare(work: Path, rows: tuple[int, ...]) -> dict[str, Any]:
    """Fit the model, pickle it with its data, write the request bodies; what the checks need."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    frame, target = _frame()
    model = LogisticRegression(max_iter=500).fit(frame, target)
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    (work / "data.pkl").write_bytes(pickle.dumps({"frame": frame, "target": target}))
    sizes = sorted({*rows, 1, 100})
    bodies: dict[str, dict[int, Path]] = {"records": {}, "mlflow": {}, "bentoml": {}}
    expected: dict[int, list[float]] = {}
    for size in sizes:
        records = [
            {name: float(value) for name, value in row.items()}
            for row in frame.iloc[:size].to_dict(orient="records")
        ]
        for protocol, body in (
            ("records", records),
            ("mlflow", {"dataframe_records": records}),
            ("bentoml", {"data": [list(row.values()) for row in records]}),
        ):
            path = work / f"body-{protocol}-{size}.json"
            path.write_text(json.dumps(body))
            bodies[protocol][size] = path
        expected[size] = [float(v) for v in model.predict(frame.iloc[:size])]

    # What the model alone costs here (CPU time, this process), for the report.
    def cost(call: Any, calls: int = 2_000) -> float:
        call()
        before = time.process_time()
        for _ in range(calls):
            call()
        return (time.process_time() - before) / calls * 1e3

    import warnings

    costs: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        for size in (1, 100):
            part = frame.iloc[:size]
            array = np.ascontiguousarray(part.to_numpy(dtype=np.float64))
            costs[f"frame-{size}"] = cost(lambda part=part: model.predict(part))
            costs[f"array-{size}"] = cost(lambda array=array: model.predict(array))
    return {"bodies": bodies, "expected": expected, "model_cost_ms": costs}


def _setup_shipyard(work: Path) -> dict[str, Any]:
    """Two projects with the model registered (signature inferred) and aliased champion."""
    from importlib.metadata import version

    import shipyard.data
    from shipyard.project import Project
    from shipyard.registry.aliases import set_alias
    from shipyard.registry.versions import register

    model = pickle.loads((work / "model.pkl").read_bytes())
    data = pickle.loads((work / "data.pkl").read_bytes())
    numbers = {}
    for variant in ("shipyard", "shipyard-batch"):
        home = work / variant / ".shipyard"
        project = Project.init(home)
        training = shipyard.data.add(
            data["frame"].assign(y=data["target"]), "train", project=project
        )
        registered = register(
            model, MODEL_NAME, training_data=training, target="y", project=project
        )
        set_alias(
            MODEL_NAME,
            ALIAS,
            registered.version,
            force=True,
            reason="serving benchmark",
            project=project,
        )
        numbers[variant] = registered.version
        if variant == "shipyard-batch":
            settings = home / "shipyard.toml"
            table = "\n".join(f"{key} = {value}" for key, value in BATCH_SETTINGS.items())
            settings.write_text(settings.read_text() + f"\n[serving.{MODEL_NAME}]\n{table}\n")
        project.close()
    return {"version": version("shipyard"), "model_versions": numbers}


def _setup_mlflow(work: Path) -> dict[str, Any]:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = pickle.loads((work / "model.pkl").read_bytes())
    frame = pickle.loads((work / "data.pkl").read_bytes())["frame"]
    target = work / "mlflow-model"
    shutil.rmtree(target, ignore_errors=True)
    mlflow.sklearn.save_model(
        model,
        str(target),
        signature=infer_signature(frame, model.predict(frame)),
        pip_requirements=PIP_REQUIREMENTS,
    )
    return {"version": mlflow.__version__}


def _setup_bentoml(work: Path) -> dict[str, Any]:
    import bentoml

    model = pickle.loads((work / "model.pkl").read_bytes())
    saved = bentoml.sklearn.save_model("bench_model", model)
    return {"version": bentoml.__version__, "tag": str(saved.tag)}


SETUPS = {"shipyard": _setup_shipyard, "mlflow": _setup_mlflow, "bentoml": _setup_bentoml}


# -- processes: trees, CPU, memory ------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime in clock ticks) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _tree(root: int) -> dict[int, int]:
    """Every live process under `root` (itself included) and its CPU ticks."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid][1]
            todo += children.get(pid, [])
    return tree


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in bytes (0 where /proc does not say)."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    workers: int
    port: int
    path: str  # the route
    protocol: str  # which body files: records, mlflow, bentoml
    process: subprocess.Popen[bytes]
    log: Path
    bodies: dict[int, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def _env(extra: dict[str, str] | None = None, venv_bin: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPYARD_", "MLFLOW_", "BENTOML_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "BENTOML_DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if venv_bin is not None:  # MLflow starts `uvicorn` from the PATH
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env.update(extra or {})
    return env


def _command(tools: Tools, name: str, workers: int, port: int, work: Path) -> tuple[Any, ...]:
    """(argv, cwd, env, route, protocol) that start contender `name`."""
    host, port_text, count = "127.0.0.1", str(port), str(workers)
    if name.startswith("shipyard"):
        shipyard = Path(tools.python).parent / "shipyard"
        argv = [str(shipyard), "serve", f"{MODEL_NAME}@{ALIAS}", "--host", host]
        argv += ["--port", port_text, "--workers", count]
        if name == "shipyard-nolog":
            argv.append("--no-log")
        folder = work / ("shipyard-batch" if name == "shipyard-batch" else "shipyard")
        env = _env({"SHIPYARD_HOME": str(folder / ".shipyard")})
        return argv, folder, env, "/predict", "records"
    if name.startswith("floor"):
        argv = [tools.python, "-m", "uvicorn", "floor_app:app", "--host", host]
        argv += ["--port", port_text, "--workers", count, "--loop", "uvloop"]
        argv += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
        extra = {"BENCH_MODEL": str(work / "model.pkl")}
        if name == "floor-frame":
            extra["BENCH_FLOOR_FRAME"] = "1"
        return argv, SERVING_DIR, _env(extra), "/predict", "records"
    if name.startswith("bentoml"):
        assert tools.bentoml_python is not None
        venv_bin = tools.bentoml_python.parent
        service = "bento_service:Batched" if name == "bentoml-batch" else "bento_service:Plain"
        argv = [str(venv_bin / "bentoml"), "serve", service, "--host", host, "--port", port_text]
        argv += ["--working-dir", str(SERVING_DIR)]
        extra = {"BENTOML_HOME": str(work / "bentoml-home"), "BENCH_WORKERS": count}
        return argv, SERVING_DIR, _env(extra, venv_bin), "/predict", "bentoml"
    if name == "mlflow":
        assert tools.mlflow_python is not None
        venv_bin = tools.mlflow_python.parent
        argv = [str(venv_bin / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model")]
        argv += ["--env-manager", "local", "-h", host, "-p", port_text, "--workers", count]
        return argv, work, _env(None, venv_bin), "/invocations", "mlflow"
    raise ValueError(f"unknown contender {name}")


def _start(tools: Tools, name: str, workers: int, work: Path, bodies: Any) -> Server:
    port = _free_port()
    argv, cwd, env, route, protocol = _command(tools, name, workers, port, work)
    log = work / f"{name}-{workers}w.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(name, workers, port, route, protocol, process, log, bodies[protocol])


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _log_tail(server: Server, chars: int = 1500) -> str:
    try:
        return server.log.read_text(errors="replace").strip()[-chars:]
    except OSError:
        return ""


def _wait_ready(server: Server, deadline: float) -> None:
    """Until READY_ANSWERS requests in a row, each on a new connection, are answered 200: with
    several workers, one answering does not mean that all of them have loaded the model."""
    body = server.bodies[1].read_bytes()
    problem, answered = "no answer", 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"exited {server.process.returncode} before answering: {_log_tail(server)}"
            )
        try:
            status, payload = _post(server.url, body)
        except OSError as exc:
            problem, answered = str(exc), 0
        else:
            if status == 200:
                answered += 1
                if answered >= READY_ANSWERS:
                    return
                continue
            problem, answered = f"HTTP {status}: {payload[:300]!r}", 0
        time.sleep(0.25)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S} s ({problem}): {_log_tail(server)}")


def _predictions(name: str, payload: Any) -> list[float]:
    """The predictions out of a contender's answer."""
    if name.startswith("bentoml"):
        values = payload
    else:
        values = payload["predictions"]
        if name.startswith("shipyard"):
            missing = {"model", "version"} - set(payload)
            if missing:
                raise ValueError(f"the answer lacks {sorted(missing)}: {str(payload)[:200]}")
    if isinstance(values, dict) and len(values) == 1:  # {column: [values]}
        values = next(iter(values.values()))
    out = []
    for value in values:
        if isinstance(value, dict) and len(value) == 1:  # a record per row
            value = next(iter(value.values()))
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        out.append(float(value))
    return out


def _check(server: Server, expected: dict[int, list[float]]) -> str:
    """Every body size answered with the model's own predictions; what was checked."""
    for size in sorted(server.bodies):
        status, payload = _post(server.url, server.bodies[size].read_bytes())
        if status != 200:
            raise RuntimeError(f"{size} rows: HTTP {status}: {payload[:300]!r}")
        got = _predictions(server.name, json.loads(payload))
        if got != expected[size]:
            raise RuntimeError(
                f"{size} rows: predictions differ from model.predict: {got[:10]} vs "
                f"{expected[size][:10]}"
            )
    return ", ".join(f"{size}" for size in sorted(server.bodies))


def _stop(*servers: Server) -> None:
    """SIGTERM to each server's process group, a wait for all of them together (shipyard
    flushes its prediction log on the way out), then SIGKILL to what is left of each tree."""
    pids = {server.name: set(_tree(server.process.pid)) for server in servers}
    for server in servers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    time.sleep(0.5)  # let the workers finish their own shutdown
    for server in servers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.process.pid, signal.SIGKILL)  # the group outlives its leader
        for pid in pids[server.name] | set(_tree(server.process.pid)):  # any that left it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=5)


# -- the load generator -----------------------------------------------------------------------


def _hey(hey: str, server: Server, concurrency: int, rows: int, seconds: float) -> dict[str, Any]:
    argv = [hey, "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", "POST"]
    argv += ["-T", "application/json", "-D", str(server.bodies[rows]), server.url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"hey exited {done.returncode}: {done.stderr.strip()[-500:]}")
    result = _parse_hey(done.stdout)
    result["hey_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _parse_hey(text: str) -> dict[str, Any]:
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    percentiles = {
        int(p): float(v) for p, v in re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", text, re.M)
    }
    statuses = {
        int(c): int(n) for c, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", text, re.M)
    }
    error_block = (
        text.split("Error distribution:", 1)[1].strip() if "Error distribution:" in text else ""
    )
    errors = sum(int(n) for n in re.findall(r"^\[(\d+)\]", error_block, re.M))
    return {
        "seconds": float(total.group(1)) if total else float("nan"),
        "ok": statuses.get(200, 0),
        "non_200": sum(n for code, n in statuses.items() if code != 200),
        "errors": errors,
        "error_text": error_block[:300],
        "p50": percentiles.get(50),
        "p99": percentiles.get(99),
    }


def _measure(
    hey: str, server: Server, concurrency: int, rows: int, seconds: float, warmup: float
) -> dict[str, Any]:
    if warmup > 0:
        _hey(hey, server, concurrency, rows, warmup)  # untimed
    before = _tree(server.process.pid)
    result = _hey(hey, server, concurrency, rows, seconds)
    after = _tree(server.process.pid)
    per_process = {pid: after[pid] - before.get(pid, 0) for pid in after}
    cpu_s = sum(per_process.values()) / CLK_TCK
    busiest = sorted(per_process.values(), reverse=True)[: server.workers]
    ok = result["ok"]
    result.update(
        {
            "rps": ok / result["seconds"] if result["seconds"] else 0.0,
            "cpu_ms": cpu_s * 1e3 / ok if ok else None,
            "hey_cpu_ms": result["hey_cpu_s"] * 1e3 / ok if ok else None,
            "busiest_share": busiest[0] / sum(busiest)
            if server.workers > 1 and sum(busiest)
            else None,
            "processes": len(after),
        }
    )
    return result


# -- running it -------------------------------------------------------------------------------


def _run_setup(python: str, contender: str, work: Path, extra: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [python, str(Path(__file__).resolve()), "--setup", contender, str(work)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=work,
        env=_env(extra),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"setup exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def _serve_available(tools: Tools) -> str | None:
    """Why `shipyard serve` cannot be run here, or None."""
    shipyard = Path(tools.python).parent / "shipyard"
    try:
        done = subprocess.run(
            [str(shipyard), "serve", "--help"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`shipyard serve --help` failed: {exc}"
    if done.returncode != 0:
        lines = [line.strip(" │╭╮╰╯─") for line in (done.stderr + done.stdout).splitlines()]
        return "`shipyard serve --help` exited {}: {}".format(
            done.returncode, " ".join(line for line in lines if line)[:300]
        )
    return None


def _floor_versions(python: str) -> str:
    code = (
        "from importlib.metadata import version as v; "
        "print(', '.join(f'{n} {v(n)}' for n in ('uvicorn', 'uvloop', 'httptools', 'orjson')))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def _idle_cpu(servers: dict[str, Server]) -> dict[str, float]:
    """CPU milliseconds per second each idle server's tree used over a short window."""
    before = {name: _tree(s.process.pid) for name, s in servers.items()}
    time.sleep(IDLE_WINDOW_S)
    out = {}
    for name, server in servers.items():
        after = _tree(server.process.pid)
        ticks = sum(after[pid] - before[name].get(pid, 0) for pid in after)
        out[name] = ticks / CLK_TCK * 1e3 / IDLE_WINDOW_S
    return out


def _memory_of(server: Server) -> dict[str, Any]:
    sizes = [_memory(pid) for pid in _tree(server.process.pid)]
    return {
        "processes": len(sizes),
        "rss": sum(r for r, _ in sizes),
        "pss": sum(p for _, p in sizes),
        "largest_rss": max((r for r, _ in sizes), default=0),
    }


@dataclass
class Outcome:
    """Everything measured, for the report."""

    options: Options
    names: list[str]
    prepared: dict[str, Any]
    versions: dict[str, str]
    problems: dict[str, str] = field(default_factory=dict)
    results: dict[tuple[int, int, int, str], list[dict[str, Any]]] = field(default_factory=dict)
    memory: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    idle: dict[int, dict[str, float]] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)
    prediction_log: str = ""
    load: list[float] = field(default_factory=list)
    elapsed: float = 0.0


def _scenarios(options: Options, workers: int) -> list[tuple[int, int]]:
    cells = [(c, rows) for rows in options.rows for c in options.concurrency]
    if workers > 1 and (SHARING_CONCURRENCY, 1) not in cells:  # target E's cell
        cells.append((SHARING_CONCURRENCY, 1))
    return cells


def _windows(workers: int, concurrency: int, rows: int) -> int:
    """Timed windows per round: more for the cells that the targets read."""
    if rows == 1 and workers > 1 and concurrency == SHARING_CONCURRENCY:
        return SHARING_WINDOWS
    if rows == 1 and concurrency in TARGET_CONCURRENCY:
        return TARGET_WINDOWS
    return 1


def _phase(tools: Tools, outcome: Outcome, workers: int) -> None:
    """Start every contender with `workers` workers, measure every scenario, stop them."""
    assert tools.hey is not None
    options, prepared = outcome.options, outcome.prepared
    names = [n for n in outcome.names if n not in outcome.problems]
    servers: dict[str, Server] = {}
    print(f"\n-- {workers} worker(s): starting {', '.join(names)} ...")
    started = time.monotonic()
    for name in names:
        try:
            servers[name] = _start(tools, name, workers, WORK_DIR, prepared["bodies"])
        except (OSError, AssertionError, ValueError) as exc:
            outcome.problems[name] = f"could not be started: {exc}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, server in list(servers.items()):
            try:  # they all started together; each gets at least 30 s after the one before
                _wait_ready(server, max(deadline, time.monotonic() + 30))
                checked = _check(server, prepared["expected"])
            except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
                outcome.problems[name] = f"with {workers} worker(s): {exc}"
                print(f"  {name}: {str(exc)[:1500]}")
                _stop(server)
                del servers[name]
                continue
            outcome.checked[name] = checked
        print(f"  ready and checked: {', '.join(servers)} ({time.monotonic() - started:.0f} s)")
        outcome.idle[workers] = _idle_cpu(servers)
        index = 0
        for _ in range(options.rounds):
            for concurrency, rows in _scenarios(options, workers):
                for window in range(_windows(workers, concurrency, rows)):
                    order = list(servers) if index % 2 == 0 else list(servers)[::-1]
                    index += 1
                    for name in order:
                        _window(tools, outcome, servers[name], concurrency, rows, window)
        for name, server in servers.items():
            outcome.memory[(workers, name)] = _memory_of(server)
    finally:
        _stop(*servers.values())
    print(f"  {workers} worker(s) done in {time.monotonic() - started:.0f} s")


def _window(
    tools: Tools, outcome: Outcome, server: Server, concurrency: int, rows: int, window: int
) -> None:
    """One timed window (after a warm-up on the first of a cell's windows in a round)."""
    assert tools.hey is not None
    if server.process.poll() is not None:
        outcome.problems.setdefault(server.name, f"exited during the run: {_log_tail(server, 500)}")
        return
    options = outcome.options
    warmup = options.warmup if window == 0 else 0.0
    try:
        result = _measure(tools.hey, server, concurrency, rows, options.seconds, warmup)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"  {server.name}: c={concurrency} rows={rows}: failed: {exc}")
        result = {"failed": str(exc)[:300]}
    key = (server.workers, concurrency, rows, server.name)
    outcome.results.setdefault(key, []).append(result)
    print("  " + _brief(key, result))


def _brief(key: tuple[int, int, int, str], r: dict[str, Any]) -> str:
    workers, concurrency, rows, name = key
    head = f"{workers}w c={concurrency:<3d} rows={rows:<4d} {name:15s}"
    if "failed" in r:
        return f"{head} failed: {r['failed']}"
    share = f" busiest worker {r['busiest_share']:.0%}" if r["busiest_share"] is not None else ""
    bad = f" NON-200 {r['non_200']} errors {r['errors']}" if r["non_200"] or r["errors"] else ""
    return (
        f"{head} {r['rps']:8.0f} req/s  p50 {_ms(r['p50'])}  p99 {_ms(r['p99'])} ms  "
        f"server CPU {_num(r['cpu_ms'], '.3f')} ms/req  hey {_num(r['hey_cpu_ms'], '.3f')} "
        f"ms/req{share}{bad}"
    )


def run(tools: Tools, options: Options | None = None) -> str:
    """Measure every contender, print the figures, and return the RESULTS.md section."""
    options = options or Options()
    print("\n== serving: shipyard serve vs MLflow, BentoML and a bare uvicorn floor (hey) ==")
    started = time.perf_counter()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    names = list(options.contenders)
    outcome = Outcome(options, names, {}, {}, load=[os.getloadavg()[0]])
    if tools.hey is None:
        print(f"hey could not be installed here, so nothing is measured: {tools.hey_note}")
        outcome.problems = {name: f"no load generator: {tools.hey_note}" for name in names}
        return _report(tools, outcome)
    outcome.prepared = _prepare(WORK_DIR, options.rows)
    outcome.versions["floor"] = _floor_versions(tools.python)
    outcome.versions["hey"] = tools.hey_note

    wanted = {name.split("-")[0] for name in names}
    if "shipyard" in wanted:
        problem = _serve_available(tools)
        if problem is None:
            try:
                done = _run_setup(tools.python, "shipyard", WORK_DIR)
                outcome.versions["shipyard"] = f"shipyard {done['version']}"
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                problem = f"the project could not be set up: {exc}"
        if problem:
            print(f"shipyard is not measured: {problem}")
            for name in names:
                if name.startswith("shipyard"):
                    outcome.problems[name] = problem
    for peer, python, note in (
        ("mlflow", tools.mlflow_python, tools.mlflow_note),
        ("bentoml", tools.bentoml_python, tools.bentoml_note),
    ):
        if peer not in wanted:
            continue
        problem = None if python is not None else f"not installed: {note}"
        if python is not None:
            extra = {"BENTOML_HOME": str(WORK_DIR / "bentoml-home")} if peer == "bentoml" else None
            try:
                _run_setup(str(python), peer, WORK_DIR, extra)
                outcome.versions[peer] = note
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                problem = f"its model could not be saved: {exc}"
        if problem:
            print(f"{peer} is not measured: {problem}")
            for name in names:
                if name.startswith(peer):
                    outcome.problems[name] = problem

    for workers in options.workers:
        _phase(tools, outcome, workers)
    logs = WORK_DIR / "shipyard" / ".shipyard" / "predictions"
    if logs.is_dir():
        files = [p for p in logs.rglob("*") if p.is_file()]
        outcome.prediction_log = (
            f"{len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.1f} MiB"
        )
    outcome.load.append(os.getloadavg()[0])
    outcome.elapsed = time.perf_counter() - started
    report = _report(tools, outcome)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return report


# -- the report -------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median over a cell's windows; for p99, None unless every window has one (hey gives
    none below 100 requests, and a median of the windows that do would mix sample sizes)."""
    good = [r for r in runs if "failed" not in r]
    values = [r[key] for r in good if r.get(key) is not None]
    if key == "p99" and len(values) < len(good):
        return None
    return statistics.median(values) if values else None


def _cell(outcome: Outcome, workers: int, concurrency: int, rows: int, name: str, key: str) -> Any:
    return _median(outcome.results.get((workers, concurrency, rows, name), []), key)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _verdicts(outcome: Outcome) -> list[tuple[str, ...]]:
    """(target, workers, measured, ratio, threshold, verdict) rows."""
    rows: list[tuple[str, ...]] = []

    def rps(workers: int, name: str, concurrency: int = 32) -> float | None:
        return _cell(outcome, workers, concurrency, 1, name, "rps")

    for workers in outcome.options.workers:
        ship = rps(workers, "shipyard")
        for target, peer, threshold in (
            ("A. single row, c=32: >= 10x MLflow", "mlflow", TARGET_MLFLOW),
            ("A. single row, c=32: >= 3x BentoML with batching", "bentoml-batch", TARGET_BENTOML),
            ("A. single row, c=32: >= 80% of the floor", "floor", TARGET_FLOOR),
        ):
            other = rps(workers, peer)
            ratio = _ratio(ship, other)
            measured = f"shipyard {_num(ship, ',.0f')} req/s, {peer} {_num(other, ',.0f')} req/s"
            verdict = "not measured" if ratio is None else "PASS" if ratio >= threshold else "FAIL"
            rows.append(
                (
                    target,
                    str(workers),
                    measured,
                    _num(ratio, ".2f") + "x",
                    f">= {threshold:g}x",
                    verdict,
                )
            )
        batch, floor = rps(workers, "shipyard-batch"), rps(workers, "floor")
        ratio = _ratio(batch, floor)
        rows.append(
            (
                "B. micro-batching on, single row, c=32: above the floor",
                str(workers),
                f"shipyard-batch {_num(batch, ',.0f')} req/s, floor {_num(floor, ',.0f')} req/s",
                _num(ratio, ".2f") + "x",
                "> 1x",
                "not measured" if ratio is None else "PASS" if ratio > 1 else "FAIL",
            )
        )
        ship99 = _cell(outcome, workers, 8, 1, "shipyard", "p99")
        floor99 = _cell(outcome, workers, 8, 1, "floor", "p99")
        ratio = _ratio(ship99, floor99)
        rows.append(
            (
                "C. p99 at c=8, single row: within 25% of the floor's",
                str(workers),
                f"shipyard {_ms(ship99)} ms, floor {_ms(floor99)} ms",
                _num(ratio, ".2f") + "x",
                f"<= {TARGET_P99:g}x",
                "not measured" if ratio is None else "PASS" if ratio <= TARGET_P99 else "FAIL",
            )
        )
    for workers in outcome.options.workers:
        if workers < 2:
            continue
        shares = {
            name: _shares(outcome, workers, name)
            for name in ("shipyard", "shipyard-batch", "floor")
        }
        # The same server with micro-batching on or off: every window of both counts.
        known = shares["shipyard"] + shares["shipyard-batch"]
        rows.append(
            (
                f"E. workers share load by request: at c={SHARING_CONCURRENCY}, single row, the "
                "busiest worker's share of the workers' CPU, in every window of shipyard and "
                "shipyard-batch (new connections each)",
                str(workers),
                "; ".join(
                    f"{name} " + (" ".join(f"{v:.0%}" for v in values) or "n/a")
                    for name, values in shares.items()
                ),
                _num(max(known) if known else None, ".0%"),
                f"<= {SHARE_TARGET:.0%}",
                "not measured" if not known else "PASS" if max(known) <= SHARE_TARGET else "FAIL",
            )
        )
    return rows


def _shares(outcome: Outcome, workers: int, name: str) -> list[float]:
    runs = outcome.results.get((workers, SHARING_CONCURRENCY, 1, name), [])
    return [r["busiest_share"] for r in runs if r.get("busiest_share") is not None]


def _report(tools: Tools, outcome: Outcome) -> str:
    options = outcome.options
    names = [n for n in outcome.names if any(k[3] == n for k in outcome.results)]
    verdicts = _verdicts(outcome) if outcome.results else []

    tables: list[str] = []
    for workers in options.workers:
        lines = [
            f"### {workers} worker{'s' if workers > 1 else ''}",
            "",
            "| concurrency | rows/request | contender | req/s | p50 (ms) | p99 (ms) | "
            "server CPU (ms/request) | hey CPU (ms/request) | busiest worker | processes | "
            "windows | errors |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for concurrency, rows in _scenarios(options, workers):
            for name in names:
                runs = outcome.results.get((workers, concurrency, rows, name), [])
                if not runs:
                    continue
                good = [r for r in runs if "failed" not in r]
                shares = [r["busiest_share"] for r in good if r["busiest_share"] is not None]
                errors = sum(r["non_200"] + r["errors"] for r in good)
                failed = len(runs) - len(good)
                lines.append(
                    f"| {concurrency} | {rows} | {LABELS[name]} | "
                    f"{_num(_median(runs, 'rps'), ',.0f')} | {_ms(_median(runs, 'p50'))} | "
                    f"{_ms(_median(runs, 'p99'))} | {_num(_median(runs, 'cpu_ms'), '.3f')} | "
                    f"{_num(_median(runs, 'hey_cpu_ms'), '.3f')} | "
                    f"{' '.join(f'{v:.0%}' for v in shares) or '-'} | "
                    f"{_num(_median(runs, 'processes'), '.0f')} | {len(runs)} | "
                    + (f"{errors} non-200 or failed requests" if errors else "0")
                    + (f"; {failed} window(s) failed" if failed else "")
                    + " |"
                )
        tables += [*lines, ""]

    peers = [
        n for n in ("mlflow", "bentoml", "bentoml-batch", "floor", "floor-frame") if n in names
    ]
    ratio_lines = [
        "| workers | concurrency | rows/request | "
        + " | ".join(f"shipyard / {p}" for p in peers)
        + " | shipyard-batch / floor | CPU per request, shipyard / floor |",
        "| ---: | ---: | ---: | " + " | ".join("---:" for _ in peers) + " | ---: | ---: |",
    ]
    for workers in options.workers:
        for concurrency, rows in _scenarios(options, workers):
            ship = _cell(outcome, workers, concurrency, rows, "shipyard", "rps")
            cells = [
                _num(_ratio(ship, _cell(outcome, workers, concurrency, rows, p, "rps")), ".2f")
                for p in peers
            ]
            batch = _ratio(
                _cell(outcome, workers, concurrency, rows, "shipyard-batch", "rps"),
                _cell(outcome, workers, concurrency, rows, "floor", "rps"),
            )
            cpu = _ratio(
                _cell(outcome, workers, concurrency, rows, "shipyard", "cpu_ms"),
                _cell(outcome, workers, concurrency, rows, "floor", "cpu_ms"),
            )
            ratio_lines.append(
                f"| {workers} | {concurrency} | {rows} | "
                + " | ".join(cells)
                + f" | {_num(batch, '.2f')} | {_num(cpu, '.2f')} |"
            )

    memory_lines = [
        "| contender | workers | processes | RSS, all processes (MiB) | PSS, all processes (MiB) "
        "| PSS per worker (MiB) | largest process RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (workers, name), m in sorted(outcome.memory.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        memory_lines.append(
            f"| {LABELS[name]} | {workers} | {m['processes']} | {m['rss'] / 2**20:.0f} | "
            f"{m['pss'] / 2**20:.0f} | {m['pss'] / workers / 2**20:.0f} | "
            f"{m['largest_rss'] / 2**20:.0f} |"
        )

    # Printed summary.
    print()
    print("\n".join(tables))
    print("ratios of requests per second (and of server CPU per request):")
    print("\n".join(ratio_lines))
    print("\nmemory after load:")
    print("\n".join(memory_lines))
    print()
    for target, workers, measured, ratio, threshold, verdict in verdicts:
        print(
            f"{target} [{workers} worker(s)]: {measured}: {ratio} (target {threshold}): {verdict}"
        )
    for name, problem in outcome.problems.items():
        print(f"{name}: not measured or incomplete: {problem[:500]}")

    costs = outcome.prepared.get("model_cost_ms", {})
    idle = "; ".join(
        f"{workers} worker(s): "
        + ", ".join(f"{name} {value:.1f}" for name, value in sorted(values.items()))
        for workers, values in outcome.idle.items()
    )
    matrix = (
        f"concurrency {', '.join(map(str, options.concurrency))}; "
        f"{' and '.join(map(str, options.rows))} row(s) per request; "
        f"{' and '.join(map(str, options.workers))} worker(s); {options.rounds} round(s) of "
        f"timed windows of {options.seconds:g} s: {TARGET_WINDOWS} per round for the cells the "
        f"targets read (one row, concurrency {' and '.join(map(str, TARGET_CONCURRENCY))}), "
        f"{SHARING_WINDOWS} at concurrency {SHARING_CONCURRENCY} with several workers (target "
        f"E), 1 for the others; the first window of a cell in a round follows "
        f"{options.warmup:g} s of untimed load on that contender. Figures are medians over a "
        "cell's windows"
    )
    lines = [
        "## Serving: `shipyard serve` vs `mlflow models serve`, BentoML and a bare uvicorn floor",
        "",
        "Command: `make bench` (this benchmark alone: "
        "`.venv/bin/python benchmarks/run.py --only serving`, `--quick` for the smaller matrix; "
        f"benchmarks/bench_serving.py). This run: `{options.command}`; it took "
        f"{outcome.elapsed:.0f} s.",
        "",
        "Versions: "
        + "; ".join(
            f"{k}: {v}"
            for k, v in (
                ("shipyard", outcome.versions.get("shipyard", "not measured")),
                (
                    "MLflow",
                    outcome.versions.get("mlflow", "not measured") + " (benchmarks/.venv-mlflow)",
                ),
                (
                    "BentoML",
                    outcome.versions.get("bentoml", "not measured") + " (benchmarks/.venv-bentoml)",
                ),
                ("floor", outcome.versions.get("floor", "?") + " in shipyard's .venv"),
                ("load generator", outcome.versions.get("hey", tools.hey_note)),
            )
        )
        + ".",
        "",
        f"Matrix: {matrix}. Contenders in alternating order from one scenario to the next; "
        "all of them up at once, idle between their turns.",
        "",
        "Method: one scikit-learn LogisticRegression on a seeded "
        f"{ROWS:,} x {COLUMNS} float frame (columns f0..f7), fitted once and saved into each "
        "contender's own format: registered in a temporary shipyard project from a dataset "
        "version (`register(model, 'bench', training_data=..., target='y')`, signature inferred "
        "and enforced) with `champion` set on it, served by `shipyard serve bench@champion "
        "--workers N` with the prediction log on (the default); `shipyard-batch` is the same with "
        f"`[serving.bench] {', '.join(f'{k} = {v}' for k, v in BATCH_SETTINGS.items())}` in "
        "the project's shipyard.toml. MLflow: `mlflow.sklearn.save_model` with a signature, "
        "served by `mlflow models serve -m DIR --env-manager local --workers N` (`POST "
        '/invocations` with `{"dataframe_records": [...]}`). BentoML: `bentoml.sklearn.'
        "save_model` into a temporary BENTOML_HOME, served by `bentoml serve` from "
        "benchmarks/serving/bento_service.py (`@bentoml.service(workers=N)`, `POST /predict` "
        'with `{"data": [[f0, ..., f7], ...]}`, an `np.ndarray` argument, the form of '
        "BentoML's scikit-learn example; the batching service is the same with "
        "`@bentoml.api(batchable=True)` and BentoML's default batch size and latency. A "
        "`pd.DataFrame` argument, which would take records, cannot be batched in BentoML "
        "1.4.40: its DataFrame container gives the frame's shape as the batch size, so every "
        "batched request fails with a 503 after the 60 s latency budget). "
        "Floor: benchmarks/serving/floor_app.py, a raw ASGI app under `uvicorn --loop uvloop "
        "--http httptools --workers N` that parses the list of records with orjson, refuses a "
        "malformed one, and calls `model.predict` on a float64 array in the model's column "
        "order; `floor-frame` wraps the array in a DataFrame first, and `shipyard-nolog` is "
        "shipyard with `--no-log` (both diagnostics, run when named). shipyard and the floors take "
        "the same body (`POST /predict` with a JSON list of records). Before it is timed, every "
        "contender's answers to 1 and 100 rows are checked against `model.predict`. Each "
        "window: `hey -z SECONDS -c C -m POST -T application/json -D body.json URL` (C "
        "keep-alive clients, new connections for each window, a fixed body; the response "
        "cache, off by default in shipyard, stays off); requests/s counts the 200 answers, "
        "p50/p99 are hey's. Server CPU per request: utime + stime of the server's whole process "
        "tree (parent, workers and any helpers, from /proc/PID/stat) across the timed window, "
        "over the answered requests; hey's own CPU per request beside it (hey shares the "
        f"{os.cpu_count()} CPUs with the server). Busiest worker: the largest CPU share among "
        "the N busiest processes of the tree, with N workers, in each window (uvicorn's "
        "workers share one listening socket and each keeps the connections it accepted, so "
        "with 2 clients both connections can land on one worker: target E asks for every "
        "window of 2 clients to be shared). Memory: RSS and PSS "
        "(/proc/PID/smaps_rollup) of every process of the tree after the load.",
        "",
        "The model alone here (CPU time per `predict` call, one process): "
        + ", ".join(
            f"{label} {costs[key]:.3f} ms"
            for key, label in (
                ("frame-1", "DataFrame, 1 row"),
                ("frame-100", "DataFrame, 100 rows"),
                ("array-1", "float64 array, 1 row"),
                ("array-100", "float64 array, 100 rows"),
            )
            if key in costs
        )
        + ".",
        "",
        *tables,
        "### Ratios of requests per second",
        "",
        *ratio_lines,
        "",
        "### Memory after load",
        "",
        *memory_lines,
        "",
        "### Targets",
        "",
        "| target | workers | measured | ratio | target | verdict |",
        "| --- | ---: | --- | ---: | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in verdicts),
        "",
        "D (memory per worker against MLflow's and BentoML's) has no threshold: see the memory "
        "table.",
        "",
        "Notes:",
        "",
        f"- Load average (1 min) at the start and end of this benchmark: {outcome.load[0]:.2f}, "
        f"{outcome.load[-1]:.2f}, on {os.cpu_count()} CPUs; hey runs on the same CPUs as the "
        "servers, so requests/s is bounded by the machine, and the CPU per request is the "
        "figure to compare across machines.",
        f"- Idle CPU of each server's tree over {IDLE_WINDOW_S:g} s before the load (ms per s): "
        + (idle or "n/a")
        + ".",
        "- The issue's figures, measured on a quiet machine: MLflow 130-200 req/s per worker at "
        "6-8 ms of CPU a request; BentoML about 600 req/s (1.6 ms), 930 with batching (1.1 ms); "
        "the bare floor about 3,400 req/s with one worker (0.29 ms) and 4,800 with two; the "
        "model 0.2 ms for 1 or 100 rows.",
        "- hey prints no p99 for a window of fewer than 100 requests: the tables say n/a when "
        "any of a cell's windows had fewer.",
        "- MLflow runs uvicorn without uvloop or httptools (its pinned environment, "
        "requirements-mlflow.txt, has neither); BentoML's venv has both, which uvicorn picks "
        "up by itself.",
    ]
    if outcome.prediction_log:
        lines.append(
            f"- shipyard's prediction log after the run (plain project): {outcome.prediction_log}."
        )
    for name, problem in outcome.problems.items():
        lines.append(f"- {LABELS.get(name, name)}: not measured or incomplete: {problem[:400]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--setup":
        print(json.dumps(SETUPS[sys.argv[2]](Path(sys.argv[3]))), flush=True)
    else:
        raise SystemExit("run the benchmarks with `make bench` (benchmarks/run.py)")
