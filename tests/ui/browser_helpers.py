"""Helpers for the dashboard's browser tests: a project seeded with everything the pages show,
a real `shipyard ui` server on 127.0.0.1, and a Chromium (Debian's) driven by Playwright that
records every console error, page error, failed request and request to another host."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
# The seeding reuses the drift tests' model and traffic; their folder is not on sys.path here.
sys.path.insert(0, str(TESTS / "monitoring"))

from drift_helpers import HOUR, T0, frame, records, register_model  # noqa: E402

from shipyard.project import Project  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium on a closed network: without the background-networking flags it keeps
# trying to reach Google's hosts (and the tests would see those requests refused).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = TESTS.parent / "test-artifacts" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1"}

# The seeded project's names.
CHURN = "churn"  # champion v2 after the finished rollout; v3 is being rolled out
FRAUD = "fraud"  # champion v1; v2 is being rolled out
FINISHED = "churn-v2"  # promoted already
TO_PROMOTE = "churn-v3"
TO_ABORT = "fraud-v2"
VIEWER = "vera"
OPERATOR = "otto"
FIRST_REQUEST = "clean0"  # a logged request id of churn v1


def _at(hours: float) -> datetime:
    return datetime.fromtimestamp(T0 + hours * HOUR, UTC)


@dataclass
class Seeded:
    """The seeded project, where it lives and the token secrets of each role."""

    folder: Path  # the project's parent folder: where `shipyard ui` runs
    project: Project
    secrets: dict[str, str] = field(default_factory=dict)  # owner -> token secret
    runs: list[str] = field(default_factory=list)  # run ids, oldest first


def seed(folder: Path) -> Seeded:
    """A SQLite project with what every dashboard page shows: two models with champions, a
    finished (promoted) rollout and two live ones, four hours of logged traffic, drift results
    over four windows, SLO evaluations over those hours, runs, and a viewer's and an operator's
    token."""
    project = Project.init(folder / ".shipyard")
    _declare_slo(project)
    project = Project.open(folder / ".shipyard")  # re-read with the SLO declared
    seeded = Seeded(folder, project)
    seeded.runs = _runs(project)
    for rows in (600, 500, 400):  # v1, v2, v3: refitted on more or less data
        register_model(project, rows=rows, name=CHURN)
    for rows in (300, 250):
        register_model(project, rows=rows, name=FRAUD)
    _traffic(project)
    _drift(project)
    _slo_evaluations(project)
    _rollouts(project)
    seeded.secrets = _tokens(project)
    return seeded


def _declare_slo(project: Project) -> None:
    settings = project.settings.settings_file
    settings.write_text(
        settings.read_text()
        + "\n[[slos.churn]]\n"
        + 'name = "availability"\nsli = "availability"\nobjective = 0.99\nwindow = "1d"\n'
    )


def _runs(project: Project) -> list[str]:
    from shipyard.tracking import start_run

    ids = []
    for index, (c, depth) in enumerate([(1.0, 3), (0.5, 4), (0.1, 6)]):
        with start_run(
            f"train-{index}", params={"C": c, "max_depth": depth}, project=project
        ) as run:
            for step in range(5):
                run.log_metric("loss", 1.0 / (step + 1 + index), step=step)
            run.log_metric("accuracy", 0.8 + index * 0.03)
            ids.append(run.id)
    return ids


def _traffic(project: Project) -> None:
    """Four hours of churn v1 traffic (one clean, three drifting) and some of fraud."""
    from slo_helpers import write_log

    items = records(frame(400, seed=1), T0, prefix="clean")
    for hour in (1, 2, 3):
        drifted = frame(400, seed=10 + hour, age_shift=8 * hour, plans=[0.2, 0.2, 0.6])
        items += records(drifted, T0 + hour * HOUR, prefix=f"drift{hour}-")
        items += records(drifted.head(6), T0 + hour * HOUR + 1, prefix=f"failed{hour}-", status=503)
    items += records(frame(100, seed=5), T0, model=FRAUD, prefix="fraud")
    write_log(project, items)


def _drift(project: Project) -> None:
    from shipyard.monitoring import drift

    for hour in range(4):
        drift.check(
            CHURN, version=1, since=_at(hour), until=_at(hour + 1), project=project, now=_at(4)
        )


def _slo_evaluations(project: Project) -> None:
    from shipyard.monitoring import slo

    for minutes in range(30, 4 * 60 + 1, 30):
        slo.evaluate(CHURN, project=project, now=_at(0) + timedelta(minutes=minutes), notify=False)


def _canary(model: str, candidate: int, name: str) -> Any:
    from shipyard.release.spec import parse

    return parse(
        {
            "name": name,
            "model": model,
            "candidate": candidate,
            "steps": [{"weight": 10}, {"weight": 50}],
            "interval": 0,
            "min_samples": 20,
            "analysis": [{"metric": "error_rate", "max": 0.2}],
        }
    )


def _rollouts(project: Project) -> None:
    from shipyard.registry.aliases import set_alias
    from shipyard.release import rollouts

    set_alias(CHURN, "champion", 1, reason="first", project=project)
    set_alias(FRAUD, "champion", 1, reason="first", project=project)
    rollouts.start(_canary(CHURN, 2, FINISHED), project=project)
    rollouts.promote(FINISHED, reason="good numbers", project=project)
    rollouts.start(_canary(CHURN, 3, TO_PROMOTE), project=project)
    rollouts.start(_canary(FRAUD, 2, TO_ABORT), project=project)


def _tokens(project: Project) -> dict[str, str]:
    from shipyard.ui import tokens

    viewer, _ = tokens.create(VIEWER, "viewer", project=project)
    operator, _ = tokens.create(OPERATOR, "operator", project=project)
    return {VIEWER: viewer, OPERATOR: operator}


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def ui_server(folder: Path) -> Iterator[Server]:
    """`shipyard ui` on a free port of 127.0.0.1, run in `folder`; stopped by PID at the end."""
    port = free_port()
    log = folder / "ui-server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "shipyard"),
                "ui",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_listening(port, process, log)
            yield Server(f"http://127.0.0.1:{port}", process, log)
        finally:
            _stop(process)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"shipyard ui exited early: {log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"shipyard ui did not listen on port {port} within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- the browser ------------------------------------------------------------------------------


def chromium_path() -> str:
    """Debian's Chromium; a missing one fails loudly (`make test` installs it)."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Debian's chromium is missing ({CHROMIUM}): run `make system-packages` "
            "(or `make test`), which installs it"
        )
    return str(CHROMIUM)


@dataclass
class Trouble:
    """What went wrong in the browser: console errors, page errors, failed requests and
    requests to a host other than 127.0.0.1 (refused before they leave)."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def clear(self) -> None:
        for found in (self.console, self.page_errors, self.failed, self.external):
            found.clear()

    def summary(self) -> dict[str, list[str]]:
        return {
            name: list(found)
            for name, found in vars(self).items()
            if found  # only the kinds that happened
        }


def watch(context: Any) -> Trouble:
    """Record the trouble of every page of `context`; external requests are aborted."""
    trouble = Trouble()

    def route(handle: Any) -> None:
        host = urlsplit(handle.request.url).hostname
        if handle.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            handle.continue_()
        else:
            trouble.external.append(handle.request.url)
            handle.abort()

    def on_page(page: Any) -> None:
        page.on(
            "console",
            lambda message: (
                trouble.console.append(f"{page.url}: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: trouble.page_errors.append(f"{page.url}: {error}"))
        page.on(
            "requestfailed",
            lambda request: trouble.failed.append(f"{request.url}: {request.failure}"),
        )

    context.route("**/*", route)
    context.on("page", on_page)
    return trouble


def status_of(page: Any, response: Any) -> int:
    assert response is not None, f"no response for {page.url}"
    return int(response.status)


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
