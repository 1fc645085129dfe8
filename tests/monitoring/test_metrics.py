"""`/metrics` of a real `shipyard serve --workers 2`: totals over workers, promtool's lint, and a
real Prometheus (Debian's package) scraping the server and answering queries about it.

One server for the module (starting one costs seconds). It serves a project that has stored
drift and SLO results, and `Served.sent` counts every prediction request the tests sent it, so
each test checks the totals whatever ran before it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from metrics_helpers import column, store_drift, store_slo, total, value

from shipyard.project import Project
from shipyard.registry.aliases import set_alias

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from serving_helpers import Server, register_churn, start_server

ROW = {"age": 30, "income": 20000.0, "plan": "basic"}
PROMETHEUS_WAIT_S = 30.0
MISSING = "{tool} is not installed: run `make system-packages` (Debian's `prometheus` package)"


@dataclass
class Served:
    server: Server
    project: Project
    tmp: Path  # the server's TMPDIR: where its metrics folder lives while it runs
    sent: int = 0  # prediction requests sent so far, failures included

    def predict(self, body: Any) -> httpx.Response:
        """One request on a connection of its own: the kernel picks a worker per connection."""
        self.sent += 1
        return httpx.post(f"{self.server.url}/predict", json=body, timeout=10)

    def scrape(self) -> tuple[str, str]:
        """The metrics text and the worker that answered, on a connection of its own."""
        answer = httpx.get(f"{self.server.url}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.text, answer.headers["x-shipyard-worker"]


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(MISSING.format(tool=name))
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("metrics")
    project = Project.init(folder / ".shipyard")
    register_churn(project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    with (folder / ".shipyard" / "shipyard.toml").open("a") as settings:
        settings.write("\n[serving.churn]\ncache_size = 100\n")
    store_drift(
        project,
        "churn",
        0.5,
        [column("age", 0.31, True), column("plan", 0.02, False, method="jensenshannon")],
        drifted=True,
    )
    store_slo(project, "churn", "availability", budget=0.75, burn_rates={"1h": 0.25, "5m": 1.5})
    tmp = folder / "tmp"
    tmp.mkdir()
    server = start_server(folder, "churn@1", "--workers", "2", env={"TMPDIR": str(tmp)})
    yield Served(server, project, tmp)
    assert server.stop() == 0
    assert list(tmp.glob("shipyard-metrics-*")) == []  # the supervisor removed its folder
    project.close()


def test_every_scrape_reports_the_total_over_both_workers(served: Served) -> None:
    answered_by = {served.predict([ROW]).headers["x-shipyard-worker"] for _ in range(30)}
    bad = served.predict([{"age": 30}])  # a signature error: counted with its code and class
    assert bad.status_code == 422
    assert len(answered_by) == 2, "30 connections all landed on one worker"
    (folder,) = served.tmp.glob("shipyard-metrics-*")  # multiprocess mode is on
    assert len(list(folder.glob("counter_*.db"))) == 2  # one file per worker

    scraped_by = set()
    for _ in range(40):
        text, worker = served.scrape()
        scraped_by.add(worker)
        assert total(text, "shipyard_requests_total") == served.sent, worker
        assert total(text, "shipyard_requests_total", code="200") == served.sent - 1
        assert total(text, "shipyard_request_latency_seconds_count") == served.sent - 1
        assert total(text, "shipyard_request_errors_total", model="churn", error="signature") == 1
        # the exporter's gauges are added once, never summed over the workers
        assert value(text, "shipyard_drift_share", model="churn") == 0.5
        if len(scraped_by) == 2:
            break
    assert len(scraped_by) == 2, "40 scrapes all answered by one worker"


def test_promtool_finds_no_problem_in_the_metrics(served: Served) -> None:
    for _ in range(3):
        assert served.predict([ROW]).status_code == 200
    text, _ = served.scrape()
    for name in (
        "shipyard_requests_total",
        "shipyard_request_latency_seconds_bucket",
        "shipyard_batch_rows_bucket",
        "shipyard_cache_total",
        "shipyard_prediction_log_queue",
        "shipyard_drift_statistic",
        "shipyard_drift_detected",
        "shipyard_slo_error_budget_remaining",
        "shipyard_slo_burn_rate",
    ):
        assert f"\n{name}{{" in text or f"\n{name} " in text, f"{name} is missing:\n{text}"
    assert total(text, "shipyard_cache_total", result="hit") >= 2  # the same row, cached
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode() + checked.stderr.decode() == ""  # no lint problem either


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    log: Path

    def said(self) -> str:
        return f"Prometheus's log:\n{self.log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus on 127.0.0.1 scraping the server every second."""
    folder = tmp_path_factory.mktemp("prometheus")
    target = served.server.url.removeprefix("http://")
    (folder / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: shipyard\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = _free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={folder / 'data'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield Prometheus(f"http://127.0.0.1:{port}", folder / "prometheus.log")
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


def query(prometheus: Prometheus, promql: str) -> float | None:
    """The value of a one-series PromQL query, or None while there is none (or no server)."""
    try:
        answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return None
    result = answer.json()["data"]["result"] if answer.status_code == 200 else []
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: Prometheus, promql: str, expected: float) -> float | None:
    """Poll until the query answers `expected` (bounded: the last answer otherwise)."""
    deadline = time.monotonic() + PROMETHEUS_WAIT_S
    found = None
    while time.monotonic() < deadline:
        found = query(prometheus, promql)
        if found == expected:
            break
        time.sleep(0.25)
    return found


def test_a_real_prometheus_scrapes_the_totals_and_the_monitoring_gauges(
    served: Served, prometheus: Prometheus
) -> None:
    for _ in range(5):
        assert served.predict([{**ROW, "age": 41}]).status_code == 200
    requests = wait_for(prometheus, "sum(shipyard_requests_total)", served.sent)
    assert requests == served.sent, prometheus.said()
    budget = 'shipyard_slo_error_budget_remaining{model="churn",slo="availability"}'
    assert wait_for(prometheus, budget, 0.75) == 0.75
    burn = 'shipyard_slo_burn_rate{model="churn",slo="availability",window="5m"}'
    assert query(prometheus, burn) == 1.5
    drifted = 'shipyard_drift_detected{model="churn",feature="age",role="feature"}'
    assert query(prometheus, drifted) == 1.0
    assert query(prometheus, 'up{job="shipyard"}') == 1.0
