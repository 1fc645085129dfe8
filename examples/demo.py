"""`make demo`: the whole loop, on real data, on the embedded default (SQLite + local files).

The data is Seattle's daily weather, 2012-2015 (NOAA), as shipped inside the `vega-datasets`
package: nothing is downloaded. Its drift is real: the seasons move the temperatures, and the
way the days were labelled changed over the years (concept drift). The model answers "was the
day recorded as wet (rain, drizzle, snow) or dry (sun, fog)?" from the day's measurements
(examples/weather_pipeline.py).

It drives the real `shipyard` command in a fresh folder, demo-data/ (a git repository, so runs
record their commit), and tells what happens as it happens:

1. data: Jan-Jun 2012 as `weather@1`; a later batch fails validation (drift);
2. training: the pipeline trains v1, then v2 with one parameter changed (the rest is cached);
3. gates: a `champion` policy in shipyard.toml; v1 passes and becomes the champion;
4. serving and release: `shipyard serve weather@champion` answers three protocols; v2 goes out
   by canary under simulated traffic, the controller promotes it; delayed labels arrive;
   the prediction log is queried and one prediction replayed;
5. the world moves: Jul-Dec 2012 arrives (traffic and `weather@2`); drift is measured against
   the training data, its alert reaches a webhook receiver running in this process; the
   monitor's pass (`shipyard monitor run --once`) estimates the accuracy from calibrated
   confidence, and the estimate is checked when the delayed labels arrive;
6. continuous training: `shipyard ct run --once` sees the drift and the new data, retrains on
   `weather@2`, gates the result and starts its canary, which traffic from 2013 promotes;
7. a broken candidate (a schema bug that raises on readings it never saw) passes the offline
   gates, fails on live traffic, and the controller rolls it back by itself (alert included);
   the failed requests overspend the availability SLO's error budget, and the monitor pages;
8. a summary table of what happened, and the paths of the HTML reports.
"""

from __future__ import annotations

import csv
import importlib
import importlib.resources
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent / "demo-data"
REPORTS = ROOT / "reports"
SERVER_LOG = ROOT / "serve.log"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
FEATURES = ["precipitation", "temp_max", "temp_min", "wind"]
WET = ("rain", "drizzle", "snow")
# Wide enough for shipyard's tables, also when the output is piped (make demo | tee ...).
WIDTH = max(shutil.get_terminal_size((120, 40)).columns, 100)
ENV = {**os.environ, "COLUMNS": str(WIDTH)}
console = Console(highlight=False, width=WIDTH)
STARTED = time.monotonic()
TIMINGS: list[tuple[float, str]] = []  # (seconds, command): demo-data/timings.txt


# -- the story's bookkeeping ------------------------------------------------------------------


@dataclass
class Ledger:
    """What happened, one row per stage, for the summary table at the end."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, stage: str, version: str, decision: str, numbers: str) -> None:
        self.rows.append((stage, version, decision, numbers))


LEDGER = Ledger()


def section(title: str, what: str) -> None:
    console.rule(f"[bold cyan]{title}[/]  [dim]({time.monotonic() - STARTED:.0f} s)[/]")
    console.print(f"[cyan]{what}[/]")


def say(text: str) -> None:
    console.print(f"[yellow]>[/] {text}")


def shipyard(*args: str, expect_failure: bool | None = False) -> int:
    """Run the real `shipyard` command; `expect_failure=None` accepts either outcome."""
    console.print(f"\n[bold]$ shipyard {shlex.join(args)}[/]")
    sys.stdout.flush()
    began = time.monotonic()
    result = subprocess.run([SHIPYARD, *args], cwd=ROOT, check=False, env=ENV)
    TIMINGS.append((time.monotonic() - began, shlex.join(args)))
    if expect_failure is not None and (result.returncode != 0) != expect_failure:
        sys.exit(f"demo step failed: shipyard {shlex.join(args)} exited {result.returncode}")
    return result.returncode


def available(group: str, command: str) -> bool:
    """Whether `shipyard GROUP COMMAND` exists in this installation."""
    module = importlib.import_module(f"shipyard.cli.{group}")
    app = getattr(module, f"{group}_app")
    names = {
        info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        for info in app.registered_commands
    }
    return command in names


def optional(*args: str, expect_failure: bool | None = None) -> int | None:
    """A command of the monitoring and CT groups; skipped (and noted) where it is missing."""
    if not available(args[0], args[1]):
        console.print(f"\n[bold]$ shipyard {shlex.join(args)}[/]  [red](not available yet)[/]")
        LEDGER.missing.append(f"shipyard {args[0]} {args[1]}")
        return None
    return shipyard(*args, expect_failure=expect_failure)


# -- the data ---------------------------------------------------------------------------------


def seattle() -> pd.DataFrame:
    """NOAA's daily weather in Seattle, 2012-2015, from inside the vega-datasets package."""
    source = importlib.resources.files("vega_datasets") / "_data" / "seattle-weather.csv"
    with importlib.resources.as_file(source) as path:
        frame = pd.read_csv(path, parse_dates=["date"])
    return frame


def days(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return frame[(frame["date"] >= start) & (frame["date"] < end)].reset_index(drop=True)


def write_csv(frame: pd.DataFrame, name: str) -> str:
    frame.to_csv(ROOT / name, index=False, date_format="%Y-%m-%d")
    return name


# -- the webhook receiver ---------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    """Stands in for a pager: prints every alert shipyard POSTs, as it arrives."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # the name http.server calls
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            alert = json.loads(body)
        except ValueError:
            alert = {"alert": "unreadable", "summary": body[:200].decode(errors="replace")}
        Receiver.received.append(alert)
        self.send_response(204)
        self.end_headers()
        name = alert.get("alert") or alert.get("name") or alert.get("kind") or "alert"
        summary = alert.get("summary") or alert.get("reason") or json.dumps(alert)[:200]
        console.print(
            f"[bold white on red] WEBHOOK [/] [bold]{escape(str(name))}[/] "
            f"({alert.get('severity', '?')}, {alert.get('status', 'firing')}): "
            + escape(str(summary))
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_receiver() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/alerts"


# -- settings ---------------------------------------------------------------------------------

# The promotion policy of the alias "champion": what a version must pass to take it, or to be
# rolled out. The holdout is the newest `weather-holdout`, written by each training run.
POLICY = """
[policies.champion]
holdout = "weather-holdout"
target = "sky"

[[policies.champion.gates]]
kind = "evaluation"
metrics = { auc = { min = 0.75 }, accuracy = { min = 0.7 } }

[[policies.champion.gates]]
kind = "blessing"          # reported; not required: a retrained model is judged on new days
metric = "auc"
required = false

[[policies.champion.gates]]
kind = "differential"
max_flip_share = 0.25

[[policies.champion.gates]]
kind = "benchmark"
max_latency_ratio = 3.0
rows = 20
"""

# Monitoring: drift over the last 150 predictions, three SLOs, and continuous training.
MONITORING = """
[drift.weather]
last = 150
persistence = 1
share = 0.5

[[slos.weather]]
name = "availability"
sli = "availability"
objective = 0.998        # at most 1 request in 500 may fail
window = "1h"

[[slos.weather]]
name = "latency"
sli = "latency"
threshold_ms = 250
objective = 0.95
window = "1h"

[[slos.weather]]
name = "accuracy"          # on the delayed labels; estimated (CBPE) until they arrive
sli = "quality"
objective = 0.7
window = "1h"

[training.weather]
pipeline = "weather_pipeline.py:weather"
params = { depth = 8 }
dataset = "weather"
data_param = "data"
policy = "champion"
auto_rollout = true
cooldown = "0s"
rollout = { ROLLOUT }

[[training.weather.triggers]]
name = "drift"
kind = "drift"

[[training.weather.triggers]]
name = "new-data"
kind = "dataset"
dataset = "weather"
"""

# Every canary of the demo: half the days, then all; judged at every `rollout run` pass.
CANARY = {
    "strategy": "canary",
    "routing_key": "header:x-day",  # the same day always gets the same version
    "interval": "0s",  # judge at every `rollout run` pass (a demo's pace)
    "min_samples": 40,
    "steps": [{"weight": 50}, {"weight": 100}],
    "analysis": [
        {"metric": "error_rate", "max": 0.02},
        {"metric": "latency_p50_ms", "max_ratio": 3.0},
        {"metric": "agreement", "min": 0.7},  # the champion answers a copy of each request
    ],
}


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def rollout_file(name: str, candidate: int) -> str:
    lines = ["[rollout]", f'name = "{name}"', 'model = "weather"', f"candidate = {candidate}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in CANARY.items()]
    path = f"{name}.toml"
    (ROOT / path).write_text("\n".join(lines) + "\n")
    return path


def write_settings(webhook: str) -> None:
    settings = ROOT / ".shipyard" / "shipyard.toml"
    inline = ", ".join(f"{k} = {toml_value(v)}" for k, v in CANARY.items())
    settings.write_text(
        settings.read_text()
        + f'\nalert_webhook_url = "{webhook}"   # alerts are POSTed here (and logged)\n'
        + POLICY
        + MONITORING.replace("ROLLOUT", inline)
    )


# -- reading the project back (for the summary) ----------------------------------------------


def project() -> Any:
    from shipyard.project import Project

    return Project.open(ROOT / ".shipyard")


def model_version(ref: str) -> Any:
    from shipyard import registry

    opened = project()
    try:
        return registry.get(ref, project=opened)
    finally:
        opened.close()


def scores(ref: str) -> str:
    metrics = model_version(ref).metrics
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in ("auc", "accuracy") if k in metrics)


def gate_numbers(ref: str) -> str:
    """The latest `champion` gate report of `ref`, in a few words."""
    from shipyard.gates import latest_report

    opened = project()
    try:
        report = latest_report(ref, "champion", project=opened)
    finally:
        opened.close()
    verdicts = ", ".join(f"{r.name} {'pass' if r.passed else 'FAIL'}" for r in report.results)
    return f"{'passed' if report.passed else 'failed'}: {verdicts}"


def live_rollout() -> Any:
    from shipyard.release.rollouts import list_rollouts

    opened = project()
    try:
        found = list_rollouts(active_only=True, project=opened)
        return found[0] if found else None
    finally:
        opened.close()


def rollout_state(name: str) -> Any:
    from shipyard.release.rollouts import get

    opened = project()
    try:
        return get(name, project=opened)
    finally:
        opened.close()


# -- serving and traffic ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET or POST JSON; the status and the decoded answer (4xx and 5xx included)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def show(method: str, path: str, status: int, answer: Any) -> None:
    console.print(f"\n[bold]{method} {path}[/] -> {status}\n{json.dumps(answer)[:300]}")


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


@dataclass
class Answer:
    request_id: str
    day: str
    label: str
    status: int
    version: int | None


def send(url: str, frame: pd.DataFrame, tag: str) -> list[Answer]:
    """One request per day of `frame`, four clients at once; the day is the routing key."""

    def one(index: int, row: Any) -> Answer:
        day = row.date.strftime("%Y-%m-%d")
        request_id = f"{tag}-{index}-{day}"
        body = [{name: float(getattr(row, name)) for name in FEATURES}]
        status, answer = http(f"{url}/predict", body, {"x-request-id": request_id, "x-day": day})
        label = "wet" if row.weather in WET else "dry"
        return Answer(request_id, day, label, status, answer.get("version"))

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(len(frame)), frame.itertuples()))
    by_version: dict[str, int] = {}
    for answer in answers:
        key = f"v{answer.version}" if answer.status == 200 else f"HTTP {answer.status}"
        by_version[key] = by_version.get(key, 0) + 1
    say(f"{len(answers)} requests ({tag}) answered: {dict(sorted(by_version.items()))}")
    return answers


def feedback(answers: list[Answer], name: str) -> None:
    """The delayed truth: what each day was recorded as, joined to the request by its id."""
    path = ROOT / f"{name}.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["request_id", "label"])
        writer.writerows((a.request_id, a.label) for a in answers if a.status == 200)
    shipyard("feedback", "add", path.name, "--source", "noaa")


def canary(url: str, name: str, traffic: pd.DataFrame, tag: str) -> tuple[Any, int, int]:
    """Traffic, a flush, one controller pass; again until the rollout is decided.
    The rollout's end state, the requests sent and the 5xx answers."""
    sent = errors = 0
    for round_ in range(5):
        sample = traffic.sample(120, random_state=round_, replace=len(traffic) < 120)
        answers = send(url, sample, f"{tag}-r{round_}")
        sent += len(answers)
        errors += sum(a.status >= 500 for a in answers)
        time.sleep(1.2)  # the prediction log is flushed every second
        shipyard("rollout", "run", "--once")
        state = rollout_state(name)
        if not state.active:
            time.sleep(0.5)  # every worker follows the new split within 0.25 s
            return state, sent, errors
    return rollout_state(name), sent, errors


# -- the story --------------------------------------------------------------------------------


def version_the_data(weather: pd.DataFrame) -> None:
    section("1. Data", "Seattle's weather, Jan-Jun 2012 (NOAA, from the vega-datasets package)")
    first = write_csv(days(weather, "2012-01-01", "2012-07-01"), "weather-2012-h1.csv")
    later = write_csv(days(weather, "2012-07-01", "2013-01-01"), "weather-2012-h2.csv")
    shipyard("init")
    shipyard("data", "add", first, "--name", "weather")
    shipyard("data", "show", "weather")
    say("the second half-year, checked against the first: summer is out of its ranges")
    failed = shipyard("data", "validate", "weather@1", later, expect_failure=None)
    LEDGER.add(
        "data",
        "weather@1",
        "versioned",
        "182 days, Jan-Jun 2012; Jul-Dec batch "
        + ("fails validation" if failed else "passes validation"),
    )


def pipeline_run(*params: str) -> None:
    shipyard("run", "weather_pipeline.py", *[part for p in params for part in ("--param", p)])


def train() -> None:
    section("2. Training", "the pipeline (examples/weather_pipeline.py), run by `shipyard run`")
    shutil.copy(EXAMPLES / "weather_pipeline.py", ROOT / "weather_pipeline.py")
    (ROOT / ".gitignore").write_text(".shipyard/\n*.csv\n*.parquet\nreports/\n")
    git("init", "--quiet")
    git("add", ".")
    git("commit", "--quiet", "-m", "weather pipeline")
    pipeline_run("data=weather")
    say("v2: deeper trees; the load, features, split and holdout steps come from the cache")
    pipeline_run("data=weather", "depth=8")
    shipyard("runs", "list", "--limit", "2")
    LEDGER.add("train", "weather v1", "registered", scores("weather@1") + " (depth 4)")
    LEDGER.add("train", "weather v2", "registered", scores("weather@2") + " (depth 8, cached)")


def git(*args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=shipyard demo", "-c", "user.email=demo@localhost", *args],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def gate_v1() -> None:
    section("3. Gates", "a `champion` policy in shipyard.toml; v1 must pass it to take the alias")
    report = REPORTS / "gates-weather-1.html"
    shipyard("gate", "weather@1", "--export", str(report.relative_to(ROOT)))
    LEDGER.reports.append(report)
    shipyard("models", "alias", "set", "weather", "champion", "1", "--reason", "first model")
    LEDGER.add("gates", "weather v1", "passed -> champion", gate_numbers("weather@1"))


def serve_and_release(url: str, weather: pd.DataFrame) -> None:
    section(
        "4. Serving and release",
        "the champion behind `shipyard serve`; v2 by canary, judged on the live prediction log",
    )
    status, metadata = http(f"{url}/v2/models/weather")
    show("GET", "/v2/models/weather", status, metadata)
    row = days(weather, "2012-06-30", "2012-07-01")[FEATURES]
    records = json.loads(row.to_json(orient="records"))
    show(
        "POST",
        "/predict (X-Request-Id: demo-1)",
        *http(f"{url}/predict", records, {"x-request-id": "demo-1"}),
    )
    split = {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
    show("POST", "/invocations (MLflow)", *http(f"{url}/invocations", split))
    tensors = [
        {"name": n, "datatype": "FP64", "shape": [1], "data": [float(row[n].iloc[0])]}
        for n in FEATURES
    ]
    show(
        "POST",
        "/v2/models/weather/infer (Open Inference Protocol)",
        *http(f"{url}/v2/models/weather/infer", {"inputs": tensors}),
    )
    bad = [{**records[0], "wind": "breezy"}]
    show("POST", "/predict with wind = 'breezy'", *http(f"{url}/predict", bad))

    shipyard("gate", "weather@2")
    shipyard("rollout", "start", rollout_file("weather-v2", 2))
    spring = days(weather, "2012-01-01", "2012-07-01")
    state, sent, _ = canary(url, "weather-v2", spring, "spring")
    LEDGER.add("canary", "weather v2", state.status, f"{sent} requests on Jan-Jun 2012 days")
    shipyard("predictions", "query",
             "select version, arm, count(*) as requests, round(median(latency_ms), 1) as p50_ms "
             "from predictions group by all order by version, arm")  # fmt: skip
    shipyard("replay", "demo-1")


def world_moves(url: str, weather: pd.DataFrame) -> None:
    section(
        "5. The world moves",
        "Jul-Dec 2012: summer temperatures the model never saw, and fog in the labels",
    )
    summer = days(weather, "2012-07-01", "2013-01-01")
    answers = send(url, summer, "summer")
    time.sleep(1.2)  # flushed
    say("drift of the last 150 requests against the champion's training data")
    report = REPORTS / "drift-1.html"
    drifted = optional("drift", "run", "weather", "--report", str(report.relative_to(ROOT)))
    if drifted is not None and report.exists():
        LEDGER.reports.append(report)
    say("the monitor's pass: drift (alerted once already), SLOs, the accuracy estimate (CBPE)")
    optional("monitor", "run", "--once")
    say("the labels of those days arrive later (delayed feedback)")
    feedback(answers, "labels-2012-h2")
    optional("quality", "show", "weather")
    optional("quality", "check", "weather")
    say("the data team adds the whole of 2012 as a new version of the dataset")
    year = write_csv(days(weather, "2012-01-01", "2013-01-01"), "weather-2012.csv")
    shipyard("data", "add", year, "--name", "weather")
    shipyard("data", "diff", "weather@1", "weather@2")
    alerts = [a for a in Receiver.received if "drift" in json.dumps(a).lower()]
    LEDGER.add(
        "drift", f"weather v{model_version('weather@champion').version}",
        drift_verdict() if drifted is not None else "drift run missing",
        f"{len(answers)} Jul-Dec requests, labelled later; "
        f"{len(alerts)} drift alert(s) at the webhook",
    )  # fmt: skip


def drift_verdict() -> str:
    """The latest stored drift result of `weather`, in a few words."""
    from shipyard.monitoring import drift

    opened = project()
    try:
        result = drift.latest("weather", project=opened)
    finally:
        opened.close()
    if result is None:
        return "no drift result stored"
    columns = [c["name"] for c in result.columns if c.get("drifted")]
    verdict = "drift" if result.drifted else "no drift"
    return f"{verdict} vs {result.reference}: {', '.join(columns) or 'no column'}"


def continuous_training(url: str, weather: pd.DataFrame) -> None:
    section(
        "6. Continuous training",
        "the triggers fire: retrain on the newest data, gate, and roll out by canary",
    )
    before = model_version("weather@champion").version
    fired = optional("ct", "run", "--once")
    version = model_version("weather").version
    rollout = live_rollout()
    if fired is None or rollout is None:
        say("no canary was started by continuous training; nothing to promote")
        LEDGER.add("ct", f"weather v{version}", "no rollout", f"ct run: {fired}")
        return
    LEDGER.add("ct", f"weather v{version}", firing_summary(), scores(f"weather@{version}"))
    winter = days(weather, "2013-01-01", "2013-07-01")
    state, sent, _ = canary(url, rollout.name, winter, "2013-h1")
    LEDGER.add(
        "canary", f"weather v{rollout.candidate}", state.status,
        f"{sent} requests on Jan-Jun 2013 days, against champion v{before}",
    )  # fmt: skip
    optional("ct", "history", "weather")


def firing_summary() -> str:
    """The latest continuous-training firing: which trigger, and what it led to."""
    from shipyard.training import continuous

    opened = project()
    try:
        firings = continuous.history("weather", project=opened)
    finally:
        opened.close()
    if not firings:
        return "no trigger fired"
    latest = max(firings, key=lambda firing: firing.fired_at)
    return f"trigger {latest.trigger!r} ({latest.kind}) fired -> gates passed, canary started"


def broken_candidate(url: str, weather: pd.DataFrame) -> None:
    section(
        "7. A broken candidate",
        "a schema bug (readings encoded as categories) that the offline gates cannot see",
    )
    pipeline_run("data=weather", "depth=8", "readings_as_categories=true")
    broken = model_version("weather").version
    report = REPORTS / f"gates-weather-{broken}.html"
    shipyard("gate", f"weather@{broken}", "--export", str(report.relative_to(ROOT)))
    LEDGER.reports.append(report)
    name = f"weather-v{broken}"
    shipyard("rollout", "start", rollout_file(name, broken))
    autumn = days(weather, "2013-07-01", "2014-01-01")
    alerts_before = len(Receiver.received)
    state, sent, errors = canary(url, name, autumn, "2013-h2")
    log = SERVER_LOG.read_text().splitlines()
    failures = [line for line in log if line.startswith("ValueError")]
    if failures:
        say(f"{SERVER_LOG.name}: {len(failures)} failed requests, e.g. {escape(failures[-1])}")
    LEDGER.add(
        "canary", f"weather v{broken}", state.status,
        f"gates {gate_numbers(f'weather@{broken}').split(':')[0]}; "
        f"{errors} of {sent} requests answered 5xx; "
        f"{len(Receiver.received) - alerts_before} alert(s) at the webhook",
    )  # fmt: skip
    shipyard("rollout", "history", name)
    say("the failed requests spent the availability SLO's error budget: the monitor alerts")
    optional("monitor", "run", "--once")
    optional("slo", "status", "weather")
    if available("slo", "status"):
        LEDGER.add("slo", "weather", *availability())


def availability() -> tuple[str, str]:
    """The availability SLO now: its verdict and its numbers."""
    from shipyard.monitoring import slo

    opened = project()
    try:
        found = [s for s in slo.status("weather", project=opened) if s.sli == "availability"]
    finally:
        opened.close()
    if not found or found[0].value is None:
        return "no events", "-"
    now = found[0]
    budget = "-" if now.budget_remaining is None else f"{now.budget_remaining:.0%}"
    return (
        "firing: " + ", ".join(now.firing) if now.firing else "ok",
        f"{now.value:.2%} of {now.total} requests good (objective {now.objective:.1%}), "
        f"error budget left {budget}",
    )


def summary() -> None:
    section("8. Summary", "what happened, and where the reports are")
    table = Table(show_lines=False)
    for column in ("stage", "version", "verdict / decision", "key numbers"):
        table.add_column(column)
    for row in LEDGER.rows:
        table.add_row(*row)
    console.print(table)
    console.print("[bold]reports[/]")
    for path in LEDGER.reports:
        console.print(f"  {path}" + ("" if path.exists() else "  [red](not written)[/]"))
    (ROOT / "timings.txt").write_text(
        "".join(f"{seconds:6.1f} s  shipyard {command}\n" for seconds, command in TIMINGS)
    )
    if LEDGER.missing:
        console.print("[red]not available yet:[/] " + ", ".join(sorted(set(LEDGER.missing))))
    console.print(
        f"\nThe project lives in {ROOT / '.shipyard'}; try `cd demo-data && shipyard models "
        f"history weather`. The demo took {time.monotonic() - STARTED:.0f} s."
    )


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    REPORTS.mkdir(parents=True)
    weather = seattle()
    webhook = start_receiver()
    version_the_data(weather)
    write_settings(webhook)
    train()
    gate_v1()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console.print(
        f"\n[bold]$ shipyard serve weather@champion --workers 1 --port {port} "
        f"> {SERVER_LOG.name} 2>&1 &[/]"
    )
    server = subprocess.Popen(
        [SHIPYARD, "serve", "weather@champion", "--workers", "1", "--port", str(port)],
        cwd=ROOT, env=ENV, stdout=SERVER_LOG.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_ready(url, server)
        serve_and_release(url, weather)
        world_moves(url, weather)
        continuous_training(url, weather)
        broken_candidate(url, weather)
    finally:
        # Graceful: in-flight requests finish and the prediction log is flushed.
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    summary()


if __name__ == "__main__":
    main()
