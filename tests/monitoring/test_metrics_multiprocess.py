"""The app's metrics in prometheus-client's multiprocess mode, as `shipyard serve --workers N`
runs them: each "worker" here is a real Python process started with the folder in its
environment (the mode is fixed when prometheus-client is imported), and the merged view is read
the way a scrape reads it, after one worker is marked dead as the supervisor does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metrics_helpers import total, value

WORKER = """
import os, sys, warnings
warnings.simplefilter("error")  # prometheus-client warns on what multiprocess mode cannot do
from shipyard.serving.metrics import ServingMetrics

class Sink:
    queue_depth = int(sys.argv[1])

metrics = ServingMetrics()
assert metrics.multiprocess, "multiprocess mode is off"
metrics.requests.labels("churn", "1", "default", "predict", "200").inc(int(sys.argv[2]))
metrics.release_weight.labels("churn", "1").set(70)
metrics.release_weight.labels("churn", "2").set(30)
metrics.release_weight.clear()  # the rollout ended: v1 answers everyone
metrics.release_weight.labels("churn", "1").set(100)
sys.stdout.write(metrics.render(Sink()).decode())
print(f"pid {os.getpid()}")
"""


def run_worker(folder: Path, queue: int, requests: int) -> tuple[str, int]:
    answer = subprocess.run(
        [sys.executable, "-c", WORKER, str(queue), str(requests)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    text, _, pid = answer.stdout.rpartition("pid ")
    return text, int(pid)


def test_workers_add_up_and_a_dead_workers_counts_stay(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    first, first_pid = run_worker(tmp_path, queue=5, requests=7)
    assert total(first, "shipyard_requests_total") == 7
    assert value(first, "shipyard_prediction_log_queue") == 5
    second, _ = run_worker(tmp_path, queue=3, requests=4)
    assert total(second, "shipyard_requests_total") == 11  # both workers' counts
    assert value(second, "shipyard_prediction_log_queue") == 8  # both workers' backlogs
    # a cleared split is 0 across workers, not the last value some worker set
    assert value(second, "shipyard_release_weight_percent", model="churn", version="2") == 0
    assert value(second, "shipyard_release_weight_percent", model="churn", version="1") == 100

    mark_process_dead(first_pid, str(tmp_path))  # what the supervisor does when one dies
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    merged = generate_latest(registry).decode()
    assert total(merged, "shipyard_requests_total") == 11  # totals never go back
    assert value(merged, "shipyard_prediction_log_queue") == 3  # only the live worker's backlog
