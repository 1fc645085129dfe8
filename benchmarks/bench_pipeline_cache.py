"""A fully cached re-run of a 5-step pipeline against `shipyard --version`, in one run.

Target (issue 3): the cached re-run takes under 1.5x the time of `shipyard --version` (the
interpreter start plus import). Both are whole commands in fresh processes, alternated so that
machine noise hits both alike; medians of REPEATS. Each cached re-run is checked to have executed
no step. Also shown: a re-run that records a run (one step's parameter changed, so it and its
dependents run), which opens the metadata store and so pays for SQLAlchemy and pydantic.

    python benchmarks/bench_pipeline_cache.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPEATS = 9
TARGET = 1.5
SHIPYARD = str(Path(sys.executable).parent / "shipyard")

PIPELINE = """
from shipyard.pipelines import pipeline, step


@step
def numbers(n: int) -> list[int]:
    return list(range(n))


@step
def doubled(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@step
def largest(xs: list[int]) -> int:
    return max(xs)


@step
def summary(total: int, largest: int) -> dict[str, int]:
    return {"total": total, "largest": largest}


@pipeline
def five(n: int = 1000):
    xs = doubled(numbers(n))
    summary(total(xs), largest(xs))
"""


@dataclass(frozen=True)
class CacheResult:
    version_s: float
    cached_run_s: float
    recorded_run_s: float

    @property
    def ratio(self) -> float:
        return self.cached_run_s / self.version_s


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def _check_all_cached(output: str) -> None:
    result = json.loads(output.strip().splitlines()[-1])
    statuses = {step["status"] for step in result["steps"].values()}
    if statuses != {"cached"} or len(result["steps"]) != 5:
        raise SystemExit(f"the re-run was not fully cached: {result['steps']}")


def measure(repeats: int = REPEATS) -> CacheResult:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-cache-") as folder:
        root = Path(folder)
        (root / "five.py").write_text(PIPELINE)
        subprocess.run([SHIPYARD, "init"], cwd=root, check=True, capture_output=True)
        subprocess.run([SHIPYARD, "run", "five.py"], cwd=root, check=True, capture_output=True)
        versions, runs, recorded = [], [], []
        for index in range(repeats):
            versions.append(_timed([SHIPYARD, "--version"], root)[0])
            seconds, output = _timed([SHIPYARD, "run", "five.py", "--json"], root)
            _check_all_cached(output)
            runs.append(seconds)
            changed = [SHIPYARD, "run", "five.py", "--param", f"n={1001 + index}", "--json"]
            recorded.append(_timed(changed, root)[0])
    return CacheResult(
        statistics.median(versions), statistics.median(runs), statistics.median(recorded)
    )


def report(result: CacheResult) -> list[str]:
    verdict = "PASS" if result.ratio < TARGET else "FAIL"
    return [
        f"- `shipyard --version`: {result.version_s:.3f} s",
        f"- fully cached `shipyard run five.py` (5 steps, none executed): "
        f"{result.cached_run_s:.3f} s",
        f"- **ratio {result.ratio:.2f}x** (target < {TARGET}x): {verdict}",
        "- a fully cached re-run is a no-op, as in `make` or `dvc repro`: it reads the local "
        "step-cache index, checks the output blobs exist, and records no run",
        f"- for scale, a re-run that changes `n` (all 5 steps run, a run is recorded): "
        f"{result.recorded_run_s:.3f} s",
    ]


def run(tools: object = None) -> str:
    """Measure, print, and return the RESULTS.md section (called by benchmarks/run.py)."""
    print("\n== fully cached pipeline re-run vs shipyard --version ==")
    result = measure()
    lines = report(result)
    print("\n".join(lines))
    return "\n".join(
        [
            "## Pipeline cache: a fully cached re-run of 5 steps vs `shipyard --version`",
            "",
            "Command: `make bench` (this benchmark alone: `.venv/bin/python benchmarks/run.py "
            "--only pipeline-cache`; benchmarks/bench_pipeline_cache.py).",
            "",
            f"Method: whole commands in fresh processes, alternated, medians of {REPEATS}; every "
            "cached re-run is checked to have executed no step. The project has no lock file, "
            "so the dependency part of each step's key comes from the installed packages.",
            "",
            *lines,
        ]
    )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
