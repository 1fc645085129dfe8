"""`shipyard slo status|check|alerts`, run as the real console script on a real project."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slo_helpers import record, run_shipyard, write_log
from sqlalchemy import func, select

from receivers import Receiver
from shipyard.project import Project
from shipyard.store.models import AlertRecord, SLOEvaluationRecord

SLOS = """
[[slos.churn]]
name = "availability"
sli = "availability"
objective = 0.999
window = "28d"

[[slos.churn]]
name = "fast"
sli = "latency"
threshold_ms = 100
objective = 0.99
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_status_check_and_alerts(tmp_path: Path, receiver: Receiver) -> None:
    project = Project.init(tmp_path / ".shipyard")
    settings = tmp_path / ".shipyard" / "shipyard.toml"
    settings.write_text(f'alert_webhook_url = "{receiver.url}"\n{SLOS}')
    now = datetime.now(UTC)
    # 1,000 requests over the last 10 minutes, 5% failing: a fast burn (50x) that pages.
    write_log(
        project,
        [
            record(f"r{k}", now - timedelta(seconds=1 + 0.6 * k),
                   status=503 if k % 20 == 0 else 200)
            for k in range(1000)
        ],
    )  # fmt: skip
    project.close()

    status = run_shipyard("slo", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "availability" in status.stdout and "95%" in status.stdout
    assert "-4900.0%" in status.stdout  # the budget, overspent 49 times
    assert "50.00x" in status.stdout and "page 14.4x 1h/5m" in status.stdout
    assert receiver.received == []  # status sends nothing

    check = run_shipyard("slo", "check", "churn", "--json", cwd=tmp_path)
    assert check.returncode == 1, check.stderr  # a page fires
    by_name = {item["slo"]: item for item in json.loads(check.stdout)}
    assert by_name["availability"]["burn_rates"]["1h"] == pytest.approx(50.0)
    assert by_name["fast"]["firing"] == []
    assert sorted(body["severity"] for body in receiver.received) == ["page", "ticket"]

    from shipyard.monitoring import alerting

    reopened = Project.open(tmp_path / ".shipyard")
    assert sorted(i.key for i in alerting.open_alerts("churn", project=reopened)) == [
        "slo:churn:availability:page",
        "slo:churn:availability:ticket",
    ]
    reopened.close()
    table = run_shipyard("slo", "alerts", "churn", "--all", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "burns its error budget" in table.stdout and "page" in table.stdout


def test_impossible_objective_is_one_line_and_exit_2(tmp_path: Path) -> None:
    Project.init(tmp_path / ".shipyard").close()
    settings = tmp_path / ".shipyard" / "shipyard.toml"
    settings.write_text(SLOS.replace("objective = 0.999", "objective = 1.5"))
    result = run_shipyard("slo", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "slos.churn.availability.objective" in result.stderr
    assert "Traceback" not in result.stderr
    project = Project.open(tmp_path / ".shipyard")
    with project.metadata.read() as session:  # nothing was evaluated, stored or alerted
        assert session.scalar(select(func.count()).select_from(SLOEvaluationRecord)) == 0
        assert session.scalar(select(func.count()).select_from(AlertRecord)) == 0
    project.close()
