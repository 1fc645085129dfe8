"""Serving test helpers: the churn model, its data, and a real `shipyard serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import shipyard.data as data
from shipyard.project import Project
from shipyard.registry.versions import ModelVersion, register

FEATURES = ["age", "income", "plan"]
PLANS = ["basic", "pro", "team"]
READY_TIMEOUT_S = 120


def churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "plan": pd.Categorical(rng.choice(PLANS, rows), categories=PLANS),
        }
    )
    score = -0.08 * (frame["age"] - 45) + (frame["plan"] == "basic") * 1.5
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return frame


def churn_model(frame: pd.DataFrame) -> Pipeline:
    encode = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    model = Pipeline([("encode", encode), ("fit", LogisticRegression(max_iter=1000))])
    return model.fit(frame[FEATURES], frame["churned"])


def register_churn(project: Project, seed: int = 0, name: str = "churn") -> ModelVersion:
    frame = churn_frame(seed=seed)
    train = data.add(frame, f"{name}-train", project=project)
    return register(
        churn_model(frame), name, training_data=train, target="churned", project=project
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """`shipyard serve ARGS` in `folder` on a free port, once /v2/health/ready answers 200."""
    port = _free_port()
    log = folder / f"serve-{port}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "shipyard"), "serve", *args, "--port", str(port)],
        cwd=folder,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"shipyard serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return Server(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"shipyard serve was not ready in {READY_TIMEOUT_S} s:\n{log.read_text()}")
