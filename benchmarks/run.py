"""Run every benchmark and write benchmarks/RESULTS.md (`make bench`).

Contenders that are not shipyard dependencies live in the benchmarks' own virtualenvs, made here
from pinned requirements when missing or stale: DVC in benchmarks/.venv (requirements.txt),
MLflow in benchmarks/.venv-mlflow (requirements-mlflow.txt) and BentoML in benchmarks/.venv-bentoml
(requirements-bentoml.txt), and the drift benchmark's Evidently, NannyML and alibi-detect in
benchmarks/.venv-evidently, .venv-nannyml and .venv-alibi (requirements-evidently.txt, ...); each
a venv of its own so that no contender's pins move another's. The serving benchmark's load
generator, `hey`, is Debian's package, installed with apt-get when missing. If one cannot be
made, the benchmarks say so and go on without that contender.

`python benchmarks/run.py --only tracking` runs one benchmark and replaces only its section of
RESULTS.md; every section says when and on what machine it was measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
MLFLOW_VENV = HERE / ".venv-mlflow"
MLFLOW_REQUIREMENTS = HERE / "requirements-mlflow.txt"
BENTOML_VENV = HERE / ".venv-bentoml"
BENTOML_REQUIREMENTS = HERE / "requirements-bentoml.txt"
# The drift benchmark's peers, each in a venv of its own: name -> (venv, requirements, module).
DRIFT_PEERS = {
    "evidently": (HERE / ".venv-evidently", HERE / "requirements-evidently.txt", "evidently"),
    "nannyml": (HERE / ".venv-nannyml", HERE / "requirements-nannyml.txt", "nannyml"),
    "alibi-detect": (HERE / ".venv-alibi", HERE / "requirements-alibi.txt", "alibi_detect"),
}
DRIFT_INSTALL_TIMEOUT_S = 600  # NannyML pulls in LightGBM, FLAML, s3fs, gcsfs, ...
RESULTS = HERE / "RESULTS.md"
INSTALL_TIMEOUT_S = 240
MLFLOW_INSTALL_TIMEOUT_S = 480  # MLflow pulls in pandas, scipy, scikit-learn, matplotlib, ...
BENTOML_INSTALL_TIMEOUT_S = 480
APT_TIMEOUT_S = 300

# The benchmarks, in the order of RESULTS.md, with the heading that starts each one's section.
BENCHMARKS = {
    "data-add": "## `shipyard data add`",
    "tracking": "## Run tracking",
    "pipeline-cache": "## Pipeline cache",
    "registry": "## Model registry",
    "serving": "## Serving",
    "release": "## Release",
    "drift": "## Drift",
    "ui": "## Dashboard",
}


@dataclass(frozen=True)
class Tools:
    """What the benchmarks run: shipyard's interpreter and the bench venvs' contenders."""

    python: str  # the project's interpreter (shipyard and pyarrow importable)
    dvc: Path | None  # the `dvc` executable, or None when it could not be installed
    dvc_note: str  # its version, or why it could not be installed
    mlflow_python: Path | None = None  # benchmarks/.venv-mlflow's interpreter, or None
    mlflow_note: str = "not set up"  # MLflow's version, or why it could not be installed
    bentoml_python: Path | None = None  # benchmarks/.venv-bentoml's interpreter, or None
    bentoml_note: str = "not set up"  # BentoML's version, or why it could not be installed
    hey: str | None = None  # the `hey` load generator (Debian's package), or None
    hey_note: str = "not set up"  # its package version, or why it could not be installed
    # The drift peers' interpreters (None when not installed) and versions or why not, by name.
    drift_peers: Mapping[str, tuple[Path | None, str]] = field(default_factory=dict)


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _tail(text: str, lines: int = 4) -> str:
    """The end of a tool's error output, its ERROR lines when it has some."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("ERROR")]
    return " | ".join((errors or kept)[-lines:])


def _ensure_venv(venv: Path, requirements: Path, needed: Path, timeout_s: int) -> str | None:
    """`venv` with `requirements` installed, made or remade when stale; the problem, or None.

    Fresh means: the requirements' hash matches the stamp the last install left, and `needed`
    (the contender's executable) is there.
    """
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    if stamp.is_file() and stamp.read_text().strip() == wanted and needed.is_file():
        return None
    print(f"setting up {venv} from {requirements.name} ...")
    started = time.perf_counter()
    problem = _install(venv, requirements, timeout_s)
    if problem:
        return problem
    stamp.write_text(wanted + "\n")
    print(f"  done in {time.perf_counter() - started:.0f} s")
    return None


def _install(venv: Path, requirements: Path, timeout_s: int) -> str | None:
    """Make the venv and install the requirements; the problem, or None."""
    if venv.exists():
        shutil.rmtree(venv)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(_venv_bin(venv, "python")),
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
            str(requirements),
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(step[:4])} ...: {exc}"
        if done.returncode != 0:
            return f"{' '.join(step[:4])} ... exited {done.returncode}: {_tail(done.stderr)}"
        if step[0] == sys.executable:  # git ignores the venv, whatever .gitignore says
            (venv / ".gitignore").write_text("*\n")
    return None


def ensure_dvc() -> tuple[Path | None, str]:
    """benchmarks/.venv's `dvc` and its version, or None and why it could not be installed."""
    dvc = _venv_bin(BENCH_VENV, "dvc")
    problem = _ensure_venv(BENCH_VENV, REQUIREMENTS, dvc, INSTALL_TIMEOUT_S)
    if problem:
        print(f"DVC could not be installed here: {problem}")
        return None, problem
    version = subprocess.run(
        [str(dvc), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return dvc, f"dvc {version}"


def ensure_mlflow() -> tuple[Path | None, str]:
    """benchmarks/.venv-mlflow's interpreter and MLflow's version, or None and why not."""
    python = _venv_bin(MLFLOW_VENV, "python")
    problem = _ensure_venv(MLFLOW_VENV, MLFLOW_REQUIREMENTS, python, MLFLOW_INSTALL_TIMEOUT_S)
    if problem is None:
        done = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return python, f"mlflow {done.stdout.strip()}"
        problem = f"import mlflow exited {done.returncode}: {_tail(done.stderr)}"
    print(f"MLflow could not be installed here: {problem}")
    return None, problem


def ensure_bentoml() -> tuple[Path | None, str]:
    """benchmarks/.venv-bentoml's interpreter and BentoML's version, or None and why not."""
    python = _venv_bin(BENTOML_VENV, "python")
    problem = _ensure_venv(BENTOML_VENV, BENTOML_REQUIREMENTS, python, BENTOML_INSTALL_TIMEOUT_S)
    if problem is None:
        done = subprocess.run(
            [str(python), "-c", "import bentoml; print(bentoml.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return python, f"bentoml {done.stdout.strip()}"
        problem = f"import bentoml exited {done.returncode}: {_tail(done.stderr)}"
    print(f"BentoML could not be installed here: {problem}")
    return None, problem


def ensure_drift_peers() -> dict[str, tuple[Path | None, str]]:
    """Each drift peer's interpreter and version, or None and why it could not be installed."""
    found: dict[str, tuple[Path | None, str]] = {}
    for name, (venv, requirements, module) in DRIFT_PEERS.items():
        python = _venv_bin(venv, "python")
        problem = _ensure_venv(venv, requirements, python, DRIFT_INSTALL_TIMEOUT_S)
        if problem is None:
            # pyarrow too: the workers read the benchmark's Parquet files with it.
            check = f"import pyarrow.parquet, {module}; print({module}.__version__)"
            done = subprocess.run(
                [str(python), "-c", check],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                found[name] = (python, f"{name} {done.stdout.strip().splitlines()[-1]}")
                continue
            problem = f"import {module} exited {done.returncode}: {_tail(done.stderr)}"
        print(f"{name} could not be installed here: {problem}")
        found[name] = (None, problem)
    return found


def _hey_version() -> str:
    """The installed `hey` package's version (dpkg), or "" when dpkg does not know it."""
    done = _command(["dpkg-query", "-W", "-f", "${Version}", "hey"])
    return f"hey {done.strip()} (Debian package)" if done.strip() else "hey"


def ensure_hey() -> tuple[str | None, str]:
    """The `hey` load generator, installed from Debian's package when missing; or None and why.

    (`wrk`'s percentiles are corrected for coordinated omission, so they would not compare with
    the figures in the issue, which are hey's.)
    """
    found = shutil.which("hey")
    if found:
        return found, _hey_version()
    if shutil.which("apt-get") is None:
        problem = "`hey` is not installed and there is no apt-get here to install it"
        print(problem)
        return None, problem
    print("installing hey (Debian package) with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "hey"]):
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False, env=env
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"{' '.join(step)}: {exc}"
            print(f"hey could not be installed here: {problem}")
            return None, problem
        if done.returncode != 0:
            problem = f"{' '.join(step)} exited {done.returncode}: {_tail(done.stderr)}"
            print(f"hey could not be installed here: {problem}")
            return None, problem
    found = shutil.which("hey")
    if found is None:
        return None, "apt-get installed hey, but no `hey` is on the PATH"
    return found, _hey_version()


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


def _sections(text: str) -> tuple[list[str], dict[str, str]]:
    """RESULTS.md's header lines and its sections by benchmark name."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    sections: dict[str, str] = {}
    for part in parts[1:]:
        for name, heading in BENCHMARKS.items():
            if part.startswith(heading):
                sections[name] = part.rstrip() + "\n"
    return parts[0].splitlines(), sections


def _with_measured(section: str, line: str, *, keep: bool = False) -> str:
    """The section with its "Measured ..." line (after the heading) set to `line`, or, with
    `keep`, left as it is when it has one."""
    heading, _, rest = section.partition("\n")
    rest = rest.lstrip("\n")
    if rest.startswith("Measured "):
        if keep:
            return section
        rest = rest.partition("\n")[2].lstrip("\n")
    return f"{heading}\n\n{line}\n\n{rest}"


def write_results(fresh: dict[str, str], measured: str) -> None:
    """RESULTS.md with the sections just measured, keeping the others as they were."""
    kept: dict[str, str] = {}
    if RESULTS.is_file():
        header, kept = _sections(RESULTS.read_text())
        # Files from before the per-section line: the header's date and machine are theirs.
        found = dict(
            line[2:].split(": ", 1) for line in header if line.startswith(("- Date:", "- Machine:"))
        )
        if "Date" in found and "Machine" in found:
            old = f"Measured {found['Date']} on: {found['Machine']}."
            kept = {name: _with_measured(text, old, keep=True) for name, text in kept.items()}
    sections = [
        _with_measured(fresh[name], measured) if name in fresh else kept[name]
        for name in BENCHMARKS
        if name in fresh or name in kept
    ]
    header = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py), which replaces this file; "
        "`.venv/bin/python benchmarks/run.py --only NAME` replaces that benchmark's section "
        "only. Each section says when and on what machine it was measured.",
        "",
    ]
    RESULTS.write_text("\n".join(header) + "\n" + "\n".join(s.rstrip() + "\n" for s in sections))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (may be given more than once); the others' sections of "
        "RESULTS.md are kept",
    )
    parser.add_argument(
        "--mlflow-calls",
        type=int,
        default=None,
        help="MLflow's one-by-one log_metric calls in the tracking benchmark (default 1,000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="serving: a smaller matrix (concurrency 8 and 32, one row per request, 2 s "
        "windows), enough for every verdict",
    )
    parser.add_argument(
        "--serving-seconds",
        type=float,
        default=None,
        help="serving: length of each timed load window (default 3 s, 2 s with --quick)",
    )
    parser.add_argument(
        "--serving-concurrency",
        default=None,
        help="serving: comma-separated client concurrencies (default 1,8,32)",
    )
    parser.add_argument(
        "--serving-rows", default=None, help="serving: rows per request (default 1,100)"
    )
    parser.add_argument(
        "--serving-workers", default=None, help="serving: server worker counts (default 1,2)"
    )
    parser.add_argument(
        "--serving-contenders",
        default=None,
        help="serving: comma-separated contenders (default "
        "shipyard,shipyard-batch,floor,bentoml,bentoml-batch,mlflow; shipyard-nolog and "
        "floor-frame, diagnostics, only when named)",
    )
    parser.add_argument(
        "--serving-rounds",
        type=int,
        default=None,
        help="serving: rounds over the matrix, contenders in alternating order (default 1)",
    )
    args = parser.parse_args(argv)
    selected = args.only or list(BENCHMARKS)

    sys.path.insert(0, str(HERE))
    import bench_data_add  # the benchmarks sit beside this file
    import bench_drift
    import bench_pipeline_cache
    import bench_registry
    import bench_release
    import bench_serving
    import bench_tracking
    import bench_ui

    started = time.perf_counter()
    dvc, dvc_note = ensure_dvc() if "data-add" in selected else (None, "not run")
    needs_mlflow = {"tracking", "registry", "serving"} & set(selected)
    mlflow, mlflow_note = ensure_mlflow() if needs_mlflow else (None, "not run")
    bentoml, bentoml_note = ensure_bentoml() if "serving" in selected else (None, "not run")
    needs_hey = {"serving", "release"} & set(selected)
    hey, hey_note = ensure_hey() if needs_hey else (None, "not run")
    drift_peers = ensure_drift_peers() if "drift" in selected else {}
    tools = Tools(
        sys.executable,
        dvc,
        dvc_note,
        mlflow,
        mlflow_note,
        bentoml,
        bentoml_note,
        hey,
        hey_note,
        drift_peers,
    )
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    fresh: dict[str, str] = {}
    if "data-add" in selected:
        fresh["data-add"] = bench_data_add.run(tools)
    if "tracking" in selected:
        calls = args.mlflow_calls or bench_tracking.MLFLOW_ONE_BY_ONE_CALLS
        fresh["tracking"] = bench_tracking.run(tools, calls)
    if "pipeline-cache" in selected:
        fresh["pipeline-cache"] = bench_pipeline_cache.run(tools)
    if "registry" in selected:
        fresh["registry"] = bench_registry.run(tools)
    if "serving" in selected:
        options = bench_serving.Options.from_args(args)
        fresh["serving"] = bench_serving.run(tools, options)
    if "release" in selected:
        fresh["release"] = bench_release.run(tools)
    if "drift" in selected:
        fresh["drift"] = bench_drift.run(tools)
    if "ui" in selected:
        fresh["ui"] = bench_ui.run(tools)
    write_results(fresh, f"Measured {when} on: {machine()}.")
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
