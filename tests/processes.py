"""Running test workers in spawned processes at the same moment (a barrier), bounded in time."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT_S = 120  # a hung worker fails the test instead of hanging it
SPAWN = multiprocessing.get_context("spawn")


def run_together(target: Callable[..., None], url: str, home: Path, workers: int) -> dict[int, Any]:
    """Run `target(url, home, worker, barrier, results)` in `workers` spawned processes.

    Each worker puts `(worker, "ok" | "error", detail)` on `results`; this returns the details
    by worker, or fails the test with every worker's error.
    """
    barrier = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=target, args=(url, str(home), worker, barrier, results))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=WAIT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
    errors = [f"worker {w}:\n{detail}" for w, status, detail in reports if status != "ok"]
    assert not errors, "\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * workers
    return {worker: detail for worker, _, detail in reports}
