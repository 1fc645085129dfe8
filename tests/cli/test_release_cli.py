"""`shipyard rollout|flags|feedback ...`: a rollout from its TOML file to its end, its status
and history, the refusals (one `error:` line, nothing started), flags from a file, the
controller's loop and one pass of it.

Importing the release layer costs a CLI process about 2 s, so most commands run in-process
(Typer's runner over `shipyard.cli.app`); the refusals, whose one-line form is made by the
console script's `main`, and the controller's signal handling run the real console script.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import SHIPYARD, error_line, run_shipyard
from typer.testing import CliRunner

import shipyard.project
from shipyard.cli import app
from shipyard.cli.console import out
from shipyard.errors import ShipyardError
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import register

CANARY = """\
[rollout]
name = "churn-canary"
model = "churn"
candidate = 2
strategy = "canary"
routing_key = "header:x-user-id"
interval = "30s"
deadline = "2h"

[[rollout.steps]]
weight = 10
hold = "5m"
min_requests = 200

[[rollout.steps]]
weight = 50

[[rollout.steps]]
weight = 100

[[rollout.analysis]]
metric = "error_rate"
max = 0.01
"""

BLUE_GREEN = """\
[rollout]
model = "churn"
candidate = 2
strategy = "bluegreen"
"""

BAD = """\
[rollout]
model = "churn"
candidate = 2
steps = [{ weight = 50 }, { weight = 20 }]
analysis = [{ metric = "happiness", max = 1 }]
"""

FLAG_TOML = """\
[flag]
name = "team-on-v2"
description = "the team plan tries the candidate"
rules = [{ attribute = "plan", operator = "in", values = ["team"], outcome = { version = 2 } }]
"""

FLAGS_JSON = {
    "flags": [
        {
            "name": "calibration",
            "rules": [
                {"operator": "percentage", "percent": 20, "outcome": {"postprocess": {"cal": True}}}
            ],
            "default": {"postprocess": {"cal": False}},
        },
        {"name": "old-age", "rules": [{"attribute": "age", "operator": "range", "min": 65,
                                       "outcome": {"version": 1}}]},
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Folder:
    path: Path

    def write(self, name: str, text: str) -> str:
        (self.path / name).write_text(text)
        return name

    def rows(self, table: str) -> int:
        connection = sqlite3.connect(self.path / ".shipyard" / "shipyard.db")
        try:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            connection.close()

    def __call__(self, *args: str) -> str:
        """`shipyard ARGS` in-process, in this folder: its stdout, once it exited 0."""
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    def refused(self, *args: str) -> ShipyardError:
        """The ShipyardError a command raises in-process (main() prints it as one line)."""
        result = CliRunner().invoke(app, list(args))
        assert isinstance(result.exception, ShipyardError), (result.output, result.exception)
        return result.exception


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with churn@1 (champion) and churn@2: two small logistic regressions."""
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("release-cli")
    project = Project.init(path / ".shipyard")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 200).astype(float)})
    frame["churned"] = (frame["age"] + rng.normal(0, 10, 200) > 50).astype(int)
    for strength in (1.0, 0.1):
        model = LogisticRegression(C=strength).fit(frame[["age"]], frame["churned"])
        register(model, "churn", training_data=frame, target="churned", project=project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    project.close()
    return path


@pytest.fixture
def folder(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Folder]:
    """A copy of the template project for this test alone, as the current folder."""
    path = tmp_path / "work"
    shutil.copytree(template, path)
    for name in [name for name in os.environ if name.startswith("SHIPYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(path)
    monkeypatch.setattr(out, "width", 250)  # no wrapped table cells
    yield Folder(path)
    opened = shipyard.project._current
    for key in [key for key in opened if key[0].startswith(str(tmp_path))]:
        opened.pop(key).close()


def test_a_canary_from_start_to_abort(folder: Folder) -> None:
    started = folder("rollout", "start", folder.write("canary.toml", CANARY))
    assert "started canary rollout churn-canary of churn: v2 against champion v1" in started
    assert "1/3: 10% on the candidate, hold 5m, min 200 candidate requests" in started
    assert "split  v1 90%, v2 10%" in started

    table = folder("rollout", "status")
    assert "churn-canary" in table and "v1 90%, v2 10%" in table and "running" in table
    listed = json.loads(folder("rollout", "status", "--json"))
    assert [(r["name"], r["status"], r["weights"]) for r in listed] == [
        ("churn-canary", "running", {"v1": 90.0, "v2": 10.0})
    ]
    detail = folder("rollout", "status", "churn-canary")
    for expected in (
        "strategy   canary",
        "champion   v1",
        "candidate  v2",
        "step       1/3: 10% on the candidate, hold 5m, min 200 candidate requests (for ",
        "split      v1 90%, v2 10%",
        "failures   0 of 1 allowed",
        "judged     every 30s; inconclusive: wait, deadline 2h",
        "start by ",
    ):
        assert expected in detail, detail
    one = json.loads(folder("rollout", "status", "churn", "--json"))  # by its model's name
    assert one["name"] == "churn-canary" and one["spec"]["steps"][0]["hold_s"] == 300.0
    assert one["last_decision"]["action"] == "start"

    assert "paused; paused" in folder("rollout", "pause", "churn-canary", "-m", "lunch")
    again = folder.refused("rollout", "pause", "churn-canary")
    assert "is paused; it can be paused only when running" in str(again)
    assert "resumed; running" in folder("rollout", "resume", "churn-canary")
    aborted = folder("rollout", "abort", "churn-canary", "--reason", "not today")
    assert "aborted; aborted, split v1 100%" in aborted

    history = folder("rollout", "history", "churn-canary")
    for row in (
        "start",
        "v1 100% -> v1 90%, v2 10%",
        "pause",
        "lunch",
        "resume",
        "abort",
        "not today",
        "v1 90%, v2 10% -> v1 100%",
    ):
        assert row in history, history
    decisions = json.loads(folder("rollout", "history", "churn-canary", "--json"))
    assert [d["action"] for d in decisions] == ["start", "pause", "resume", "abort"]
    assert all("evidence" in d and "spec_hash" in d for d in decisions)

    assert "no live rollouts" in folder("rollout", "status")
    ended = json.loads(folder("rollout", "status", "--all", "--json"))
    assert [(r["status"], r["outcome"]) for r in ended] == [("aborted", "not today")]


def test_a_bad_rollout_file_starts_nothing(folder: Folder) -> None:
    result = run_shipyard("rollout", "start", folder.write("bad.toml", BAD), cwd=folder.path)
    assert result.returncode == 2
    message = error_line(result)
    assert "bad.toml" in message
    assert "canary weights must not decrease" in message and "'happiness'" in message
    missing = folder.refused("rollout", "start", "nowhere.toml")
    assert "cannot read the rollout file nowhere.toml" in str(missing)
    assert folder.rows("rollouts") == 0 and folder.rows("rollout_decisions") == 0
    assert json.loads(folder("rollout", "status", "--json")) == []


def test_a_second_rollout_of_the_same_model_is_refused(folder: Folder) -> None:
    folder("rollout", "start", folder.write("canary.toml", CANARY))
    again = run_shipyard("rollout", "start", folder.write("bg.toml", BLUE_GREEN), cwd=folder.path)
    assert again.returncode == 1
    assert "model churn already has a live rollout, 'churn-canary'" in error_line(again)
    assert folder.rows("rollouts") == 1


def test_blue_green_switch_back_and_promote(folder: Folder) -> None:
    started = folder("rollout", "start", folder.write("bg.toml", BLUE_GREEN))
    assert "split  v1 100%" in started and "x-shipyard-preview" in started
    assert "v2 answers everyone" in folder("rollout", "switch", "churn-2")
    shown = folder("rollout", "status", "churn-2")
    assert "1/1: green answers everyone" in shown and "switched   yes (v2 answers)" in shown
    back = folder("rollout", "switch", "churn-2", "--back")
    assert "switched back, v1 answers everyone" in back and "split v1 100%" in back
    promoted = folder("rollout", "promote", "churn-2", "--reason", "looks good")
    assert "promoted; churn@champion is now v2" in promoted
    assert json.loads(folder("models", "show", "churn@champion", "--json"))["version"] == 2
    ended = folder.refused("rollout", "switch", "churn-2")
    assert "is promoted; it can be switched only when" in str(ended)


def test_flags_set_list_kill_revive_delete(folder: Folder) -> None:
    one = folder("flags", "set", "churn", folder.write("flag.toml", FLAG_TOML))
    assert "set flag team-on-v2 on churn: enabled, 1 rule(s), default -" in one
    two = folder("flags", "set", "churn", folder.write("f.json", json.dumps(FLAGS_JSON)))
    assert "set flag calibration" in two and "set flag old-age" in two

    listed = folder("flags", "list")
    assert "plan in ['team'] -> v2" in listed
    assert "20% of routing keys -> cal on" in listed and "65 <= age -> v1" in listed
    stored = json.loads(folder("flags", "list", "churn", "--json"))
    assert [(f["name"], f["enabled"]) for f in stored] == [
        ("calibration", True),
        ("old-age", True),
        ("team-on-v2", True),
    ]
    killed = folder("flags", "kill", "calibration")
    assert "killed flag calibration on churn" in killed and "(cal off)" in killed
    after = json.loads(folder("flags", "list", "--json"))
    assert {f["name"]: f["enabled"] for f in after}["calibration"] is False
    assert "revived" in folder("flags", "revive", "calibration")
    assert "deleted flag old-age" in folder("flags", "delete", "old-age")
    left = json.loads(folder("flags", "list", "--json"))
    assert sorted(f["name"] for f in left) == ["calibration", "team-on-v2"]

    assert "no flag named 'old-age'" in str(folder.refused("flags", "kill", "old-age"))
    broken = folder.write("broken.yaml", "flag:\n  name: x\n  rules: [{operator: equals}]\n")
    bad = run_shipyard("flags", "set", "churn", broken, cwd=folder.path)
    assert bad.returncode == 2 and "broken.yaml: flag 'x'" in error_line(bad)
    both = folder.write("both.json", json.dumps({"flag": {"name": "a"}, "flags": []}))
    shape = folder.refused("flags", "set", "churn", both)
    assert "a `flag` table (one flag) or a `flags` list" in str(shape)
    taken = folder.refused("flags", "set", "nomodel", "flag.toml")
    assert "already used by another model: team-on-v2 (churn)" in str(taken)
    fresh = folder.write("fresh.json", json.dumps({"flag": {"name": "fresh"}}))
    assert "nomodel" in str(folder.refused("flags", "set", "nomodel", fresh))
    assert len(json.loads(folder("flags", "list", "--json"))) == 2


def test_feedback_for_an_unknown_request_is_refused(folder: Folder) -> None:
    labels = folder.write("labels.csv", "request_id,label\nnever-seen,1\n")
    result = run_shipyard("feedback", "add", labels, cwd=folder.path)
    assert result.returncode == 2
    assert "never-seen" in error_line(result)
    wrong = folder.refused("feedback", "add", folder.write("x.txt", ""))
    assert "feedback files are .csv, .json" in str(wrong)


def test_the_controller_loop_stops_on_sigterm(folder: Folder) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    process = subprocess.Popen(
        [str(SHIPYARD), "rollout", "run", "--poll", "0.1"],
        cwd=folder.path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "controller running" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "controller stopped" in stdout and "Traceback" not in stderr


def test_one_controller_pass_without_traffic_is_inconclusive(folder: Folder) -> None:
    assert "no running rollout was due" in folder("rollout", "run", "--once")
    folder("rollout", "start", folder.write("canary.toml", CANARY))
    once = folder("rollout", "run", "--once")
    assert "churn-canary: hold (verdict inconclusive)" in once, once
    decisions = json.loads(folder("rollout", "history", "churn-canary", "--json"))
    judged = decisions[-1]
    assert (judged["actor"], judged["action"], judged["verdict"]) == (
        "controller",
        "hold",
        "inconclusive",
    )
    assert judged["step_before"] == judged["step_after"] == 0
    assert judged["evidence"], "the analysis is recorded with the decision"
    status = json.loads(folder("rollout", "status", "churn-canary", "--json"))
    assert status["status"] == "running" and status["weights"] == {"v1": 90.0, "v2": 10.0}
