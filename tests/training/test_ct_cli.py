"""`shipyard ct ...` as a user runs it: the real console script on a project configured in its
shipyard.toml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import OpenProject, weather_frame
from typer.testing import CliRunner

import shipyard.data as data

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from cli_helpers import SHIPYARD, run_shipyard, succeeded

SETTINGS = """
[policies.champion]
holdout = "weather-holdout@1"
target = "rain"
[[policies.champion.gates]]
kind = "evaluation"
metrics = { accuracy = { min = 0.6 } }

[training.weather]
pipeline = "pipelines/weather_pipeline.py:weather"
params = { depth = 3 }
dataset = "weather"
data_param = "data"
cooldown = "0s"
rollout = { strategy = "canary", steps = [{ weight = 10, hold = "5m" }, { weight = 100 }] }

[[training.weather.triggers]]
name = "new-data"
kind = "dataset"

[[training.weather.triggers]]
name = "nightly"
kind = "schedule"
cron = "0 3 * * *"
"""


@pytest.fixture
def folder(weather_project: OpenProject, tmp_path: Path) -> Path:
    """The weather project with the settings above, and weather@2 waiting to be trained on."""
    project = weather_project()
    with (project.home / "shipyard.toml").open("a") as settings:
        settings.write(SETTINGS)
    data.add(weather_frame(400, 11), "weather", project=project)
    return tmp_path / "work"


def test_ct_run_once_then_history(folder: Path) -> None:
    ran = succeeded(run_shipyard("ct", "run", "--once", cwd=folder))
    lines = ran.splitlines()
    assert len(lines) == 2, ran
    assert (
        " running weather: firing 1 (new-data, dataset) fired: weather@2 is newer than "
        in (lines[0])
    )
    assert lines[0].endswith("; training on weather@2")
    assert (
        " rolling_out weather: firing 1 (new-data, dataset) trained weather@2 in run " in (lines[1])
    )
    assert lines[1].endswith("and its rollout weather-v2 started")

    table = succeeded(run_shipyard("ct", "history", "weather", cwd=folder))
    assert "continuous-training firings, newest first" in table
    row = next(line for line in table.splitlines() if "new-data" in line)
    for cell in ("weather", "dataset", "rolling_out", "weather-v2", "│ 2 "):
        assert cell in row, row


def test_ct_history_triggers_and_approve_in_process(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.cli import app
    from shipyard.errors import InvalidInput

    monkeypatch.chdir(folder)
    runner = CliRunner()
    assert runner.invoke(app, ["ct", "history"]).output == "no trigger has fired yet\n"
    shown = runner.invoke(app, ["ct", "triggers"])
    assert shown.exit_code == 0, shown.output
    assert "yes" in next(line for line in shown.output.splitlines() if "new-data" in line)

    ran = runner.invoke(app, ["ct", "run", "--once", "--json"])
    assert ran.exit_code == 0, ran.output
    started, ended = (json.loads(line) for line in ran.output.splitlines())
    assert (started["status"], ended["status"]) == ("running", "rolling_out")
    (firing,) = json.loads(runner.invoke(app, ["ct", "history", "--json"]).output)
    assert (firing["status"], firing["version"], firing["rollout"]) == (
        "rolling_out",
        2,
        "weather-v2",
    )
    states = json.loads(runner.invoke(app, ["ct", "triggers", "--json"]).output)
    assert [(s["trigger"], s["due"]) for s in states] == [("new-data", False), ("nightly", False)]
    assert states[1]["next_at"] is not None
    assert "rollout 'weather-v2' of weather is live" in states[0]["blocked"]

    refused = runner.invoke(app, ["ct", "approve", str(firing["id"])])
    assert isinstance(refused.exception, InvalidInput)
    assert str(refused.exception) == (
        f"firing {firing['id']} of weather is rolling_out, not awaiting_approval; only a "
        "version that passed its gates and waits for approval can be approved"
    )


def test_sigterm_stops_the_loop_cleanly(weather_project: OpenProject, tmp_path: Path) -> None:
    project = weather_project()
    with (project.home / "shipyard.toml").open("a") as settings:
        settings.write(SETTINGS.replace('kind = "dataset"', 'kind = "drift"'))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    loop = subprocess.Popen(
        [str(SHIPYARD), "ct", "run", "--poll", "0.1"],
        cwd=tmp_path / "work",
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout is not None
        first = loop.stdout.readline()  # printed once the signal handlers are in place
        assert first.startswith("continuous training running, a pass every 0.1s"), first
        loop.send_signal(signal.SIGTERM)
        stdout, stderr = loop.communicate(timeout=60)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    assert loop.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("continuous training stopped after "), stdout
