"""Run every benchmark and write benchmarks/RESULTS.md (`make bench`).

Contenders that are not shipyard dependencies (DVC) live in the benchmarks' own virtualenv,
benchmarks/.venv, made here from benchmarks/requirements.txt when it is missing or stale. If it
cannot be made, the benchmarks say so and go on without those contenders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
RESULTS = HERE / "RESULTS.md"
INSTALL_TIMEOUT_S = 240


@dataclass(frozen=True)
class Tools:
    """What the benchmarks run: shipyard's interpreter and the bench venv's contenders."""

    python: str  # the project's interpreter (shipyard and pyarrow importable)
    dvc: Path | None  # the `dvc` executable, or None when it could not be installed
    dvc_note: str  # its version, or why it could not be installed


def _venv_bin(name: str) -> Path:
    return BENCH_VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _tail(text: str, lines: int = 4) -> str:
    """The end of a tool's error output, its ERROR lines when it has some."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("ERROR")]
    return " | ".join((errors or kept)[-lines:])


def ensure_bench_venv() -> Tools:
    """benchmarks/.venv with the pinned contenders, made or refreshed when needed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = BENCH_VENV / ".requirements-sha256"
    dvc = _venv_bin("dvc")
    fresh = stamp.is_file() and stamp.read_text().strip() == wanted and dvc.is_file()
    if not fresh:
        print(f"setting up {BENCH_VENV} from {REQUIREMENTS.name} ...")
        started = time.perf_counter()
        problem = _install(wanted, stamp)
        if problem:
            print(f"DVC could not be installed here: {problem}")
            return Tools(sys.executable, None, problem)
        print(f"  done in {time.perf_counter() - started:.0f} s")
    version = subprocess.run(
        [str(dvc), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return Tools(sys.executable, dvc, f"dvc {version}")


def _install(wanted: str, stamp: Path) -> str | None:
    """Make the venv and install the requirements; the problem, or None."""
    if BENCH_VENV.exists():
        shutil.rmtree(BENCH_VENV)
    steps = [
        [sys.executable, "-m", "venv", str(BENCH_VENV)],
        [
            str(_venv_bin("python")),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "30",
            "--retries",
            "1",
            "-r",
            str(REQUIREMENTS),
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(step[:4])} ...: {exc}"
        if done.returncode != 0:
            return f"{' '.join(step[:4])} ... exited {done.returncode}: {_tail(done.stderr)}"
    stamp.write_text(wanted + "\n")
    return None


def _command(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def machine() -> str:
    """The machine in one line: CPUs (nproc), memory (free -h), CPU model (lscpu), OS."""
    cpus = _command(["nproc"]).strip() or str(os.cpu_count())
    memory = "?"
    for line in _command(["free", "-h"]).splitlines():
        if line.startswith("Mem:"):
            memory = line.split()[1]
    model = platform.processor() or "?"
    for line in _command(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return (
        f"{cpus} CPUs (nproc), {memory} memory (free -h), {model} (lscpu model name), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    sys.path.insert(0, str(HERE))
    import bench_data_add  # the benchmarks sit beside this file

    started = time.perf_counter()
    tools = ensure_bench_venv()
    header = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py); each run replaces this file.",
        "",
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}",
        "",
    ]
    sections = [bench_data_add.run(tools)]
    RESULTS.write_text("\n".join(header + sections).rstrip() + "\n")
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
