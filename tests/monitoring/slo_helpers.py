"""Helpers for the SLO and alerting tests: prediction-log records written by the project's own
log writer, and the real `shipyard` command (the webhook receiver is in tests/receivers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from shipyard.predictions.log import open_log
from shipyard.project import Project
from shipyard.serving.record import PredictionRecord


def record(
    request_id: str,
    at: datetime,
    *,
    model: str = "churn",
    version: int = 1,
    status: int = 200,
    latency_ms: float = 10.0,
    arm: str = "default",
    prediction: Any = 1,
) -> PredictionRecord:
    """The record the server logs for one answered `predict` request."""
    outputs = {"predictions": [prediction]} if status < 400 else {"error": "failed"}
    return PredictionRecord(
        request_id=request_id,
        time=at.timestamp(),
        model=model,
        version=version,
        protocol="predict",
        inputs='{"age": 40}',
        outputs=json.dumps(outputs),
        latency_ms=latency_ms,
        arm=arm,
        status=status,
    )


def write_log(project: Project, records: Iterable[PredictionRecord]) -> None:
    """Append `records` through the project's prediction-log writer and wait until written."""
    # One file per hour partition rather than one per default batch: the same writer, faster.
    settings = project.settings.model_copy(update={"prediction_log_flush_rows": 50_000})
    log = open_log(settings)
    for item in records:
        log.append(item)
    log.close()


def run_shipyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `shipyard` console script in `cwd` (as tests/cli does), wide and colourless."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return subprocess.run(
        [str(Path(sys.executable).parent / "shipyard"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
