"""`make demo`: the loop as far as it exists, on the embedded default (SQLite + local files).

It makes a small synthetic customer table, then drives the real `shipyard` command in a fresh
folder (a git repository, so runs record their commit):

- data: init, add, a re-add that stores nothing, show, a drifted batch that fails validation,
  that batch as version 2, the diff between the versions, and a reproducible split;
- training: the churn pipeline (examples/churn_pipeline.py) run, re-run fully cached, re-run
  with one parameter changed (only what depends on it runs again), and after an edit to a helper
  module two calls deep (the steps that reach it run again, and say so);
- tracking: runs list, compare and search; the lineage of the data; a reproduction of the first
  run from its commit, parameters and seed, output by output;
- registry and gates: every run registered its model; a promotion policy for `champion` is
  added to the settings; an alias move refused before the gates ran, the gates run and
  exported, champion set, the next version judged against it, diff, ONNX compilation;
- serving: `shipyard serve churn@champion` answers the same rows over the Open Inference
  Protocol, MLflow's /invocations and /predict, refuses a bad request with a 422 naming the
  field, explains a prediction; on shutdown its prediction log is flushed, queried with SQL, and
  one prediction replayed; then the champion scores a whole dataset version in batch;
- release: a version that passed its gates goes out by canary (20% -> 50% -> 100%) to
  simulated customers while the server runs; the controller (`shipyard rollout run --once`)
  judges each step on the live prediction log and promotes it; its decisions are listed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent / "demo-data"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def customers(rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """A churn table; `drift` moves ages and incomes up and brings in a new city."""
    rng = np.random.default_rng(seed)
    cities = ["Lyon", "Marseille", "Nantes", "Paris", "Toulouse"]
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "signup": pd.date_range("2025-01-01", periods=rows, freq="17min"),
            "age": rng.integers(18, 80, rows) + int(drift * 15),
            "income": rng.lognormal(10.3 + drift * 0.4, 0.5, rows).round(2),
            "city": rng.choice(cities + (["Berlin"] if drift else []), rows),
            "tenure_months": pd.array(rng.integers(0, 120, rows), dtype="Int64"),
        }
    )
    # Churn is likelier for young, short-tenure, low-income customers outside the big cities:
    # a signal the example pipeline's model can learn.
    tenure = frame["tenure_months"].to_numpy(dtype=float)
    score = (
        -1.5
        - 0.03 * (frame["age"] - 45)
        - 0.02 * (tenure - 60)
        - 0.8 * (np.log(frame["income"]) - 10.3)
        - 0.6 * frame["city"].isin(["Paris", "Lyon", "Marseille", "Toulouse"])
    )
    frame["churned"] = rng.random(rows) < 1 / (1 + np.exp(-score))
    frame.loc[rng.random(rows) < 0.03, "tenure_months"] = pd.NA  # nullable integers are fine
    return frame


def shipyard(*args: str, expect_failure: bool | None = False) -> int:
    """Run the real `shipyard` command; `expect_failure=None` accepts either outcome."""
    print(f"\n\033[1m$ shipyard {shlex.join(args)}\033[0m", flush=True)
    result = subprocess.run([SHIPYARD, *args], cwd=ROOT, check=False)
    if expect_failure is not None and (result.returncode != 0) != expect_failure:
        sys.exit(f"demo step failed: shipyard {shlex.join(args)} exited {result.returncode}")
    return result.returncode


# The promotion policy of the alias "champion": the gates a version must pass to take it.
POLICY = """
[policies.champion]
holdout = "churn-holdout@1"
target = "churned"

[[policies.champion.gates]]
kind = "evaluation"
metrics = { auc = { min = 0.65 }, accuracy = { min = 0.6 } }

[[policies.champion.gates]]
kind = "blessing"
metric = "auc"
margin = 0.0

[[policies.champion.gates]]
kind = "differential"
max_mean_abs_diff = 0.2
max_flip_share = 0.2

[[policies.champion.gates]]
kind = "benchmark"
max_latency_ratio = 3.0
rows = 100

[[policies.champion.gates]]
kind = "slice"
column = "big_city"
metric = "accuracy"
max_gap = 0.15
"""


def run_pipeline(*params: str) -> str:
    """`shipyard run` the churn pipeline, showing its output; the new run's id."""
    args = ["run", "churn_pipeline.py", *[part for p in params for part in ("--param", p)]]
    shipyard(*args)
    latest = subprocess.run(
        [SHIPYARD, "runs", "list", "--limit", "1", "--json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(latest.stdout)[0]["id"])


def git(*args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=shipyard demo", "-c", "user.email=demo@localhost", *args],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def training_loop() -> None:
    for name in ("churn_pipeline.py", "churn_features.py"):
        shutil.copy(EXAMPLES / name, ROOT / name)
    (ROOT / ".gitignore").write_text(".shipyard/\n*.csv\n*.parquet\n")
    git("init", "--quiet")
    git("add", ".")
    git("commit", "--quiet", "-m", "churn pipeline")

    first = run_pipeline("data=customers@1")
    run_pipeline("data=customers@1")  # nothing changed: every step comes from the cache
    more_trees = run_pipeline("data=customers@1", "trees=80")  # only the steps taking `trees`
    features = ROOT / "churn_features.py"
    big_cities = '("Paris", "Lyon", "Marseille")'
    features.write_text(
        features.read_text().replace(big_cities, '("Paris", "Lyon", "Marseille", "Toulouse")')
    )
    edited = run_pipeline("data=customers@1")  # BIG_CITIES, two calls deep, changed
    features.write_text((EXAMPLES / "churn_features.py").read_text())

    shipyard("runs", "list")
    shipyard("runs", "compare", first, more_trees, edited)
    shipyard("runs", "search", "metrics.auc > 0.5 and params.trees = 80")
    shipyard("lineage", "customers@1", "--depth", "2")
    shipyard("reproduce", first)
    registry_and_gates()


def registry_and_gates() -> None:
    """Each pipeline run registered its model; the policy decides which may become champion."""
    settings = ROOT / ".shipyard" / "shipyard.toml"
    settings.write_text(settings.read_text() + POLICY)
    shipyard("models", "list")
    shipyard("models", "show", "churn@1")
    shipyard("models", "alias", "set", "churn", "champion", "1", expect_failure=True)  # no gates
    shipyard("gate", "churn@1", "--export", "churn-1-gates.md")
    shipyard("models", "alias", "set", "churn", "champion", "1", "--reason", "first model")
    # Passing the gates earns v2 a canary release (in serving()), not the alias straight away.
    passed = shipyard("gate", "churn@2", expect_failure=None) == 0  # blessing: beat champion
    if not passed:
        shipyard("models", "alias", "set", "churn", "challenger", "2", "--reason", "lost v1")
    shipyard("models", "diff", "churn@1", "churn@2")
    shipyard("models", "compile", "churn@1", "--data", "churn-holdout@1")
    if passed:  # compiled too, or the canary compares a compiled champion with a slow forest
        shipyard("models", "compile", "churn@2", "--data", "churn-holdout@1")
    serving(candidate=2 if passed else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(url: str, body: Any = None, request_id: str | None = None) -> tuple[int, Any]:
    """GET or POST JSON; the status and the decoded answer (4xx included)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def show(method: str, path: str, status: int, answer: Any) -> None:
    print(f"\n\033[1m{method} {path}\033[0m -> {status}\n{json.dumps(answer)[:400]}", flush=True)


def wait_until_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"demo step failed: shipyard serve exited {server.returncode}")
        try:
            if http(f"{url}/v2/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    sys.exit("demo step failed: shipyard serve was not ready in 120 s")


def serving(candidate: int | None) -> None:
    """The champion behind a real server: three protocols, a refusal, an explanation; then the
    candidate released by canary under simulated traffic and promoted by the controller."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"\n\033[1m$ shipyard serve churn@champion --port {port}\033[0m", flush=True)
    server = subprocess.Popen([SHIPYARD, "serve", "churn@champion", "--port", str(port)], cwd=ROOT)
    try:
        wait_until_ready(url, server)
        status, metadata = http(f"{url}/v2/models/churn")
        show("GET", "/v2/models/churn", status, metadata)
        columns = [tensor["name"] for tensor in metadata["inputs"]]
        rows = holdout_rows(columns)
        records = json.loads(rows.to_json(orient="records"))
        show("POST", "/predict (X-Request-Id: demo-1)", *http(f"{url}/predict", records, "demo-1"))
        for path, body in (
            (
                "/invocations",
                {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
            ),
            ("/v2/models/churn/infer", {"inputs": v2_tensors(rows, metadata)}),
            ("/v2/models/churn/explain", {"inputs": v2_tensors(rows.head(1), metadata)}),
            ("/predict", [{**records[0], columns[0]: "not a number"}]),
        ):
            show("POST", path, *http(f"{url}{path}", body))
        if candidate is not None:
            release(url, candidate, records)
    finally:
        # Graceful: in-flight requests finish and the prediction log is flushed.
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    shipyard(
        "predictions", "query",
        "select request_id, model, version, protocol, round(latency_ms, 2) as ms "
        "from predictions order by time",
    )  # fmt: skip
    shipyard("replay", "demo-1")
    shipyard("score", "churn@champion", "churn-holdout@1", "--out", "churn-holdout-scored.parquet")
    shipyard("lineage", "churn-holdout-scored@1", "--depth", "1")


ROLLOUT = """
[rollout]
name = "churn-v{candidate}"
model = "churn"
candidate = {candidate}
strategy = "canary"
routing_key = "header:x-customer"   # the same customer always gets the same version
interval = "0s"                     # judge at every `rollout run` pass (a demo's pace)
min_samples = 40

[[rollout.steps]]
weight = 20
[[rollout.steps]]
weight = 50
[[rollout.steps]]
weight = 100

[[rollout.analysis]]
metric = "error_rate"
max = 0.02

[[rollout.analysis]]
metric = "latency_p50_ms"
max_ratio = 3.0

[[rollout.analysis]]
metric = "agreement"                # the champion answers the candidate's requests too
min = 0.7
"""


def release(url: str, candidate: int, records: list[dict[str, Any]]) -> None:
    """A canary of the candidate: simulated customers, the controller deciding each step."""
    (ROOT / "rollout.toml").write_text(ROLLOUT.format(candidate=candidate))
    shipyard("rollout", "start", "rollout.toml")
    rng = np.random.default_rng(3)
    rows = holdout_rows(list(records[0]), rows=None).sample(200, random_state=3, replace=True)
    bodies = json.loads(rows.to_json(orient="records"))
    for _ in range(8):
        answered: dict[int, int] = {}
        for body in bodies:
            customer = f"customer-{rng.integers(100_000)}"
            request = urllib.request.Request(
                f"{url}/predict",
                data=json.dumps([body]).encode(),
                headers={"content-type": "application/json", "x-customer": customer},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                version = json.loads(answer.read())["version"]
            answered[version] = answered.get(version, 0) + 1
        print(f"\n200 simulated customers answered by version: {answered}", flush=True)
        time.sleep(1.5)  # the prediction log is flushed every second
        shipyard("rollout", "run", "--once")
        time.sleep(0.5)  # every worker follows the new split within 0.25 s
        if not rollout_live():
            break
    shipyard("rollout", "history", f"churn-v{candidate}")
    shipyard("models", "history", "churn")


def rollout_live() -> bool:
    from shipyard.project import Project
    from shipyard.release.rollouts import list_rollouts

    project = Project.open(ROOT / ".shipyard")
    try:
        return bool(list_rollouts(active_only=True, project=project))
    finally:
        project.close()


def holdout_rows(columns: list[str], rows: int | None = 3) -> pd.DataFrame:
    """Rows of the held-out data, in the model's own columns (what a client would send)."""
    from shipyard.data import get
    from shipyard.project import Project

    project = Project.open(ROOT / ".shipyard")
    try:
        frame = get("churn-holdout@1", project=project).to_pandas(columns)
        return frame if rows is None else frame.head(rows)
    finally:
        project.close()


def v2_tensors(rows: pd.DataFrame, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    tensors = []
    for tensor in metadata["inputs"]:
        values = json.loads(rows[tensor["name"]].to_json(orient="values"))
        tensors.append(
            {
                "name": tensor["name"],
                "datatype": tensor["datatype"],
                "shape": [len(values)],
                "data": values,
            }
        )
    return tensors


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    customers(20_000, seed=1).to_csv(ROOT / "customers.csv", index=False)
    customers(20_000, seed=2, drift=1.0).to_parquet(ROOT / "customers_march.parquet")

    shipyard("init")
    shipyard("data", "add", "customers.csv", "--name", "customers")
    shipyard("data", "add", "customers.csv", "--name", "customers")  # same bytes: no new version
    shipyard("data", "show", "customers")
    shipyard("data", "validate", "customers@1", "customers_march.parquet", expect_failure=True)
    shipyard("data", "add", "customers_march.parquet", "--name", "customers")
    shipyard("data", "diff", "customers@1", "customers@2")
    shipyard("data", "split", "customers@1", "--seed", "42")
    shipyard("data", "split", "customers@2", "--by-time", "signup", "--ratio", "train=0.8",
             "--ratio", "test=0.2", "--prefix", "customers-by-time")  # fmt: skip
    shipyard("data", "list")
    training_loop()
    print(f"\nThe project lives in {ROOT / '.shipyard'}; try `cd demo-data && shipyard runs list`.")


if __name__ == "__main__":
    main()
