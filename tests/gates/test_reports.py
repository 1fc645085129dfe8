"""Stored gate reports, approvals, the alias guard that reads them, and their exports."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from gates_helpers import policy

from shipyard.errors import NotFound
from shipyard.gates import Approval, Evaluation, Slice, approve, latest_report, run_gates
from shipyard.project import Project
from shipyard.registry.aliases import GatesNotPassed, history, set_alias

POLICY_TOML = """
[policies.champion]
holdout = "customers-test@1"
target = "churned"
[[policies.champion.gates]]
kind = "evaluation"
metrics = { auc = { min = 0.70 } }
[[policies.champion.gates]]
kind = "approval"
required = {approval_required}
"""


@pytest.fixture
def configured(project: Project) -> Iterator[Project]:
    """The project with `[policies.champion]` in its shipyard.toml (approval required)."""
    settings = project.settings.settings_file
    settings.write_text(settings.read_text() + POLICY_TOML.replace("{approval_required}", "true"))
    reopened = Project.open(project.home)
    yield reopened
    reopened.close()


def test_a_report_is_stored_in_one_piece_and_read_back(project: Project) -> None:
    gates = policy(Evaluation(metrics={"auc": {"min": 0.7}}), Slice(column="city", max_gap=0.1))
    report = run_gates("churn@1", gates, project=project)
    assert not report.passed and [r.name for r in report.failed] == ["slice"]
    stored = latest_report("churn@1", "champion", project=project)
    assert stored == report
    assert stored.created_by == project.user and stored.version == "churn@1"
    connection = sqlite3.connect(project.home / "shipyard.db")
    rows = connection.execute(
        "SELECT report_id, policy, gate, kind, required, passed FROM gate_results"
    ).fetchall()
    connection.close()
    assert rows == [
        (report.report_id, "champion", "evaluation", "evaluation", 1, 1),
        (report.report_id, "champion", "slice", "slice", 1, 0),
    ]


def test_the_latest_report_wins_and_an_alias_ref_resolves(project: Project) -> None:
    failing = policy(Evaluation(metrics={"auc": {"min": 0.99}}))
    passing = policy(Evaluation(metrics={"auc": {"min": 0.5}}))
    run_gates("churn@2", failing, project=project)
    second = run_gates("churn@2", passing, project=project)
    assert latest_report("churn@2", project=project).report_id == second.report_id
    with pytest.raises(NotFound, match=r"churn@1 has no gate report for policy 'champion'"):
        latest_report("churn@1", project=project)


def test_the_alias_is_refused_before_the_gates_pass_and_allowed_after(
    configured: Project,
) -> None:
    with pytest.raises(GatesNotPassed, match="has not been through the gates"):
        set_alias("churn", "champion", 1, project=configured)
    report = run_gates("churn@1", project=configured)  # the policy from shipyard.toml
    assert [r.passed for r in report.results] == [True, False]  # not approved yet
    with pytest.raises(GatesNotPassed, match="failed the required gates approval"):
        set_alias("churn", "champion", 1, project=configured)
    approval = approve("churn@1", note="slices reviewed", project=configured)
    assert approval.results[0].details["user"] == configured.user
    # The approval alone is not a report of the gates: the latest report still failed.
    with pytest.raises(GatesNotPassed):
        set_alias("churn", "champion", 1, project=configured)
    again = run_gates("churn@1", project=configured)
    assert again.passed
    assert again.result("approval").details["note"] == "slices reviewed"
    assert latest_report("churn@1", project=configured).report_id == again.report_id
    assert set_alias("churn", "champion", 1, project=configured).aliases == ["champion"]


def test_a_forced_move_is_recorded_with_its_reason(configured: Project) -> None:
    run_gates("churn@3", "champion", project=configured)
    with pytest.raises(GatesNotPassed, match="failed the required gates approval, evaluation"):
        set_alias("churn", "champion", 3, project=configured)
    set_alias("churn", "champion", 3, force=True, reason="hotfix", project=configured)
    event = history("churn", project=configured)[-1]
    assert (event.version, event.forced, event.reason) == (3, True, "hotfix")


def test_an_optional_approval_does_not_block(project: Project) -> None:
    report = run_gates("churn@1", policy(Approval(required=False)), project=project)
    assert report.passed and report.results[0].verdict == "failed (optional)"


def test_markdown_and_html_exports_carry_the_numbers(project: Project) -> None:
    approve("churn@1", note="<script>alert(1)</script> ok", project=project)
    gates = policy(Evaluation(metrics={"auc": {"min": 0.7}}), Slice(column="city"), Approval())
    report = run_gates("churn@1", gates, project=project)
    auc = report.result("evaluation").details["metrics"]["auc"]
    east = next(s for s in report.result("slice").details["slices"] if s["value"] == "east")
    markdown = report.to_markdown()
    assert f"auc {auc:.4g} >= 0.7 (ok)" in markdown
    assert f"| east | {east['rows']} | {east['metric']:.4g} |" in markdown
    assert "FAILED" in markdown.splitlines()[0]
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and f"{auc:.4g}" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http" not in page and "<link" not in page  # nothing fetched from elsewhere
