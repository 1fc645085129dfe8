"""`shipyard gate`, `shipyard approve`, `shipyard gates report`: through the real console script
(once the commands are registered in `shipyard.cli`) and in process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shipyard.cli.gates import approve, gate, gates_app
from shipyard.project import Project
from shipyard.registry.aliases import GatesNotPassed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import error_line, run_shipyard, succeeded

POLICIES = """
[policies.champion]
holdout = "customers-test@1"
target = "churned"
[[policies.champion.gates]]
kind = "evaluation"
metrics = { auc = { min = 0.70 } }
[[policies.champion.gates]]
kind = "approval"
required = false
"""


@pytest.fixture
def folder(project: Project) -> Path:
    """The project's root folder, with `[policies.champion]` configured."""
    settings = project.settings.settings_file
    settings.write_text(settings.read_text() + POLICIES)
    return project.home.resolve().parent


def test_gate_exits_0_on_pass_and_1_on_failure(folder: Path) -> None:
    passed = succeeded(run_shipyard("gate", "churn@1", "--export", "report.md", cwd=folder))
    assert "PASSED" in passed and "auc" in passed and ">= 0.7 (ok)" in passed
    assert "auc" in (folder / "report.md").read_text()
    failed = run_shipyard("gate", "churn@3", cwd=folder)
    assert failed.returncode == 1, failed.output
    assert "FAIL" in failed.stdout
    assert "churn@3 failed the required gates evaluation" in error_line(failed)


def test_gate_with_an_unknown_policy_exits_2_with_one_line(folder: Path) -> None:
    result = run_shipyard("gate", "churn@1", "--policy", "staging", cwd=folder)
    assert result.returncode == 2
    assert "no promotion policy 'staging'" in error_line(result)


def _app() -> typer.Typer:
    """The commands as `shipyard.cli` registers them."""
    app = typer.Typer()
    app.command()(gate)
    app.command()(approve)
    app.add_typer(gates_app, name="gates")
    return app


def test_the_commands_in_process(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    runner = CliRunner()
    app = _app()
    ran = runner.invoke(app, ["gate", "churn@1", "--json"])
    assert ran.exit_code == 0, ran.output
    stored = json.loads(ran.stdout)
    assert stored["passed"] and [r["name"] for r in stored["results"]] == [
        "evaluation",
        "approval",
    ]
    approved = runner.invoke(app, ["approve", "churn@1", "--note", "looks right"])
    assert approved.exit_code == 0 and "approved" in approved.stdout
    shown = runner.invoke(app, ["gates", "report", "churn@1", "--export", "r.html"])
    assert shown.exit_code == 0 and stored["report_id"] in shown.stdout
    assert "<!DOCTYPE html>" in (folder / "r.html").read_text()
    failed = runner.invoke(app, ["gate", "churn@3"])
    assert isinstance(failed.exception, GatesNotPassed) and failed.exception.exit_code == 1
