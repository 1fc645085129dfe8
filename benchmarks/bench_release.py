"""Release: what the router costs a request, and what shadowing costs the champion's latency.

The targets (from the issue):
- A: the router's decision (arm choice and flag evaluation) costs under 2% of the single-row
  request time of the serving benchmark;
- B: shadowing at 100% leaves the champion's p99 within 10% of no shadowing.

The model is the serving benchmark's (a LogisticRegression on 8 float columns, one row per
request), registered twice (v1 champion, v2 a refit) in a temporary project, served by
`shipyard serve bench@champion` (1 worker, prediction log on). Between load windows the release
state is switched in this process (the server follows it within its 0.25 s poll):

- none: no rollout, no flag (the router's fast path);
- canary: a 50% canary keyed on a header, plus three flags (equals, range, percentage), so
  every request hashes its key and evaluates every rule;
- shadow: a shadow rollout mirroring 100% of requests to v2 off the response path.

A: the decision itself is timed in-process (`ReleaseRouter.route` on the same tables, best of 5
x 20,000 calls) and divided by the server's CPU time per single-row request measured with
`hey -c 1` (no rollout); the end-to-end CPU per request with the canary live is shown beside it.
B: `hey -c 4 -q 50` (a fixed 200 requests/s, below saturation: a latency comparison at a
saturating load would measure the extra work, not its placement) for 5 s windows, none and
shadow alternating, 3 each; p99 is hey's, the ratio is of the medians.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "data" / "release-work"
MODEL = "bench"
ROUTE_CALLS = 20_000
RATE_CLIENTS, RATE_PER_CLIENT = 4, 50
WINDOW_S = 5.0
ROUNDS = 3


def _project(work: Path) -> Any:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import shipyard.data
    from shipyard.project import Project
    from shipyard.registry.aliases import set_alias
    from shipyard.registry.versions import register

    rng = np.random.default_rng(7)
    values = rng.normal(size=(2000, 8))
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(8)])
    target = (values @ rng.normal(size=8) > 0).astype("int64")
    project = Project.init(work / ".shipyard")
    train = shipyard.data.add(frame.assign(y=target), "train", project=project)
    for c in (1.0, 0.5):
        model = LogisticRegression(C=c, max_iter=500).fit(frame, target)
        register(model, MODEL, training_data=train, target="y", project=project)
    set_alias(MODEL, "champion", 1, force=True, reason="benchmark", project=project)
    body = work / "body.json"
    row = {name: float(value) for name, value in frame.iloc[0].items()}
    import json

    body.write_text(json.dumps([row]))
    return project, body


FLAGS = [
    {
        "name": "pro-plan",
        "rules": [
            {"attribute": "plan", "operator": "equals", "value": "pro", "outcome": {"version": 2}}
        ],
    },
    {
        "name": "big-f0",
        "rules": [{"attribute": "f0", "operator": "range", "min": 10.0, "outcome": {"version": 2}}],
    },
    {
        "name": "tenth",
        "rules": [
            {
                "attribute": "x-user-id",
                "operator": "percentage",
                "percent": 0.0,
                "outcome": {"version": 2},
            }
        ],
    },
]


def _canary(project: Any) -> None:
    from shipyard.release import flagstore, rollouts
    from shipyard.release.spec import parse

    spec = {
        "model": MODEL,
        "candidate": 2,
        "routing_key": "header:x-user-id",
        "steps": [{"weight": 50}],
        "analysis": [],
    }
    rollouts.start(parse(spec), project=project)
    for flag in FLAGS:
        flagstore.set_flag(MODEL, flag, project=project)


def _shadow(project: Any) -> None:
    from shipyard.release import rollouts
    from shipyard.release.spec import parse

    rollouts.start(parse({"model": MODEL, "candidate": 2, "strategy": "shadow"}), project=project)


def _clear(project: Any) -> None:
    from shipyard.release import flagstore, rollouts

    for rollout in rollouts.list_rollouts(active_only=True, project=project):
        rollouts.abort(rollout.id, reason="benchmark state", project=project)
    for flag in flagstore.list_flags(project=project):
        flagstore.delete(flag.flag.name, project=project)


def _route_cost(project: Any, body: Path) -> dict[str, float]:
    """Microseconds per `route` call on the canary + flags tables, and on the fast path."""
    import json

    from shipyard.deploy.local import ServeConfig, build_app

    os.environ["SHIPYARD_HOME"] = str(project.home)
    app = build_app(ServeConfig(refs=[f"{MODEL}@champion"], home=str(project.home), log=False))
    app.load()
    router = app.router
    assert router is not None
    served = app.models[MODEL]
    row = json.loads(body.read_text())[0]
    data = {name: [value] for name, value in row.items()}
    results = {}
    for state in ("none", "canary"):
        _clear(project)
        if state == "canary":
            _canary(project)
        router.refresh(force=True)  # type: ignore[attr-defined]
        best = float("inf")
        for attempt in range(5):
            keys = [{"x-user-id": f"user-{attempt}-{i}"} for i in range(ROUTE_CALLS)]
            started = time.perf_counter()
            for headers in keys:
                router.route(served, headers, data, False)
            best = min(best, (time.perf_counter() - started) / ROUTE_CALLS * 1e6)
        results[state] = best
    router.close()
    _clear(project)
    return results


def run(tools: Any) -> str:
    sys.path.insert(0, str(HERE))
    import bench_serving as serving

    print("\n== release: the router's cost per request, and shadowing's cost to the p99 ==")
    if tools.hey is None:
        return "## Release\n\nNot measured: hey is not available: " + str(tools.hey_note) + "\n"
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    project, body = _project(WORK_DIR)
    route_us = _route_cost(project, body)
    print(
        f"  route(): {route_us['canary']:.2f} us with a canary and 3 flags, "
        f"{route_us['none']:.2f} us with nothing live"
    )

    port = serving._free_port()
    log = WORK_DIR / "serve.log"
    env = {**os.environ, "SHIPYARD_HOME": str(project.home)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "shipyard"),
                "serve",
                f"{MODEL}@champion",
                "--port",
                str(port),
            ],
            cwd=WORK_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = serving.Server("shipyard", 1, port, "/predict", "records", process, log, {1: body})
    try:
        serving._wait_ready(server, time.monotonic() + 120)
        figures = _windows(tools.hey, server, project)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    project.close()
    return _report(route_us, figures)


def _windows(hey: str, server: Any, project: Any) -> dict[str, list[dict[str, Any]]]:
    import bench_serving as serving

    figures: dict[str, list[dict[str, Any]]] = {
        "cpu-none": [],
        "cpu-canary": [],
        "p99-none": [],
        "p99-shadow": [],
    }
    for round_ in range(ROUNDS):
        for state, setter in (("none", None), ("canary", _canary)):
            _clear(project)
            if setter is not None:
                setter(project)
            time.sleep(1.0)
            result = serving._measure(hey, server, 1, 1, 3.0, 0.5)
            figures[f"cpu-{state}"].append(result)
            print(
                f"  round {round_ + 1} c=1 {state:7s} {result['rps']:7.0f} req/s "
                f"CPU {result['cpu_ms']:.3f} ms/req"
            )
        for state, setter in (("none", None), ("shadow", _shadow)):
            _clear(project)
            if setter is not None:
                setter(project)
            time.sleep(1.0)
            result = _rate(hey, server)
            figures[f"p99-{state}"].append(result)
            print(
                f"  round {round_ + 1} {RATE_CLIENTS * RATE_PER_CLIENT} req/s {state:7s} "
                f"p50 {result['p50'] * 1e3:.2f} ms p99 {result['p99'] * 1e3:.2f} ms"
            )
    _clear(project)
    return figures


def _rate(hey: str, server: Any) -> dict[str, Any]:
    import bench_serving as serving

    argv = [hey, "-z", f"{WINDOW_S:g}s", "-c", str(RATE_CLIENTS), "-q", str(RATE_PER_CLIENT)]
    argv += ["-m", "POST", "-T", "application/json", "-D", str(server.bodies[1]), server.url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WINDOW_S + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hey exited {done.returncode}: {done.stderr[-300:]}")
    return serving._parse_hey(done.stdout)


def _report(route_us: dict[str, float], figures: dict[str, list[dict[str, Any]]]) -> str:
    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in figures[key] if r.get(field) is not None)

    request_ms = median("cpu-none", "cpu_ms")
    canary_ms = median("cpu-canary", "cpu_ms")
    share = route_us["canary"] / (request_ms * 1000.0)
    p99_none, p99_shadow = median("p99-none", "p99"), median("p99-shadow", "p99")
    ratio = p99_shadow / p99_none
    verdict_a = "PASS" if share < 0.02 else "FAIL"
    verdict_b = "PASS" if ratio <= 1.10 else "FAIL"
    lines = [
        "## Release: the router's cost per request, shadowing's cost to the p99",
        "",
        "Command: `.venv/bin/python benchmarks/run.py --only release` "
        "(benchmarks/bench_release.py; its docstring gives the method).",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| `route()` with a 50% canary and 3 flags (us/call, best of 5 x {ROUTE_CALLS:,}) "
        f"| {route_us['canary']:.2f} |",
        f"| `route()` with nothing live (us/call) | {route_us['none']:.2f} |",
        f"| server CPU per single-row request, no rollout, c=1 (ms, median of {ROUNDS}) "
        f"| {request_ms:.3f} |",
        f"| server CPU per single-row request, canary + 3 flags live, c=1 (ms) | {canary_ms:.3f} |",
        f"| p99 at {RATE_CLIENTS * RATE_PER_CLIENT} req/s, no shadow (ms, median of {ROUNDS}) "
        f"| {p99_none * 1e3:.2f} |",
        f"| p99 at {RATE_CLIENTS * RATE_PER_CLIENT} req/s, shadowing 100% (ms) "
        f"| {p99_shadow * 1e3:.2f} |",
        "",
        f"A. router decision / single-row request CPU: {share * 100:.2f}% (target < 2%): "
        f"{verdict_a}",
        f"B. champion p99 with 100% shadowing / without: {ratio:.2f}x (target <= 1.10x): "
        f"{verdict_b}",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    return text
