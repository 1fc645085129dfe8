"""Helpers for the deployment tests: a registered churn model, and the real `shipyard` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipyard.data as data
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import ModelVersion, register

FEATURES = ["age", "income", "tenure"]
SHIPYARD = Path(sys.executable).parent / "shipyard"


def churn_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "tenure": rng.integers(0, 120, rows),
        }
    )
    score = -0.04 * (frame["age"] - 45) - 0.02 * (frame["tenure"] - 60)
    frame["churned"] = rng.random(rows) < 1 / (1 + np.exp(-score))
    return frame


@dataclass(frozen=True)
class Registered:
    """A project holding churn@1 and churn@2, `champion` on version 2."""

    project: Project
    folder: Path  # the folder holding .shipyard/
    v1: ModelVersion
    champion: ModelVersion
    frame: pd.DataFrame


def register_churn(project: Project) -> Registered:
    frame = churn_frame()
    train = data.add(frame, "churn-train", project=project)
    versions = [
        register(
            LogisticRegression(C=c, max_iter=500).fit(frame[FEATURES], frame["churned"]),
            "churn",
            training_data=train,
            target="churned",
            description=f"C={c}",
            project=project,
        )
        for c in (1.0, 0.05)
    ]
    champion = set_alias("churn", "champion", 2, reason="better", project=project)
    set_alias("churn", "candidate", 2, project=project)
    return Registered(project, project.home.parent, versions[0], champion, frame)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_shipyard(*args: str | Path, cwd: Path, timeout: float = 180) -> Result:
    """`shipyard ARGS` in `cwd`, with no SHIPYARD_* variables and a wide, plain console."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    done = subprocess.run(
        [str(SHIPYARD), *(str(a) for a in args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def error_line(result: Result) -> str:
    """The one `error: ...` line a failed command prints, without the prefix."""
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def tree(folder: Path) -> set[str]:
    """Every path under `folder`, relative to it (hidden ones included)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def free_port() -> int:
    """A port nobody listens on at 127.0.0.1 just now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
