"""Helpers for the CLI tests: run the real `shipyard` console script, read the store it leaves."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPYARD = Path(sys.executable).parent / "shipyard"

PLANS = ("basic", "pro")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_shipyard(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run `shipyard ARGS` in `cwd` with no SHIPYARD_* variables but those in `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    # A wide, colourless console, so tables and messages are not wrapped or styled.
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    environment.update(env or {})
    completed = subprocess.run(
        [str(SHIPYARD), *(str(a) for a in args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


StoreState = tuple[frozenset[tuple[Any, ...]], frozenset[tuple[Any, ...]], frozenset[str]]


def store_state(folder: Path) -> StoreState:
    """Every row of `datasets` and `dataset_versions`, and every file under artifacts/."""
    home = folder / ".shipyard"
    connection = sqlite3.connect(home / "shipyard.db")
    try:
        datasets = frozenset(connection.execute("SELECT * FROM datasets").fetchall())
        versions = frozenset(connection.execute("SELECT * FROM dataset_versions").fetchall())
    finally:
        connection.close()
    artifacts = home / "artifacts"
    files = frozenset(str(p.relative_to(artifacts)) for p in artifacts.rglob("*") if p.is_file())
    return datasets, versions, files


def people_csv(rows: int, *, age_offset: int = 18, plans: tuple[str, ...] = PLANS) -> str:
    lines = ["id,age,plan,income"]
    for k in range(rows):
        lines.append(f"{k},{age_offset + k % 50},{plans[k % len(plans)]},{1000 + 10 * k}.5")
    return "\n".join(lines) + "\n"


def people_v2_csv(rows: int) -> str:
    """A second version: a new plan level, `income` gone, `score` new."""
    lines = ["id,age,plan,score"]
    plans = (*PLANS, "team")
    for k in range(rows):
        lines.append(f"{k},{30 + k % 40},{plans[k % 3]},{k / rows:.4f}")
    return "\n".join(lines) + "\n"


def succeeded(result: Result, code: int = 0) -> str:
    """The command's stdout, once it exited with `code` and showed no traceback."""
    assert result.returncode == code, result.output
    assert "Traceback" not in result.output
    return result.stdout


def error_line(result: Result) -> str:
    """The one `error: ...` line a failed command prints on stderr, without the prefix."""
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


@dataclass(frozen=True)
class Seeded:
    """A project folder holding people@1 (from v1.csv) and people@2 (from v2.csv)."""

    folder: Path
    v1: Path
    v2: Path
