"""Incidents: opened once per condition, notified once, resolved once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receivers import Receiver
from shipyard.errors import InvalidInput
from shipyard.monitoring import alerting
from shipyard.project import Project
from shipyard.store.models import AlertRecord

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = "slo:churn:availability:page"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def fire(project: Project, key: str = KEY, **fields: object) -> alerting.Incident | None:
    values: dict[str, object] = {
        "kind": "slo",
        "model": "churn",
        "severity": "page",
        "summary": "availability burns 20x",
        "evidence": {"burn_rates": {"1h": 20.0, "5m": 21.0}},
        "now": NOW,
    }
    values.update(fields)
    return alerting.raise_alert(key, project=project, **values)  # type: ignore[arg-type]


def test_one_incident_notified_once_then_resolved(project: Project, receiver: Receiver) -> None:
    project.settings.alert_webhook_url = receiver.url
    opened = fire(project)
    assert opened is not None and opened.open
    assert opened.notified["firing"]["delivered"] is True
    # The condition still holds on the next evaluations: no new incident, nothing sent again.
    assert fire(project, now=NOW + timedelta(minutes=1)) is None
    assert fire(project, now=NOW + timedelta(minutes=2)) is None
    assert [body["status"] for body in receiver.received] == ["firing"]
    body = receiver.received[0]
    assert body["labels"] == {
        "alertname": KEY,
        "kind": "slo",
        "model": "churn",
        "severity": "page",
    }
    assert body["annotations"]["summary"] == "availability burns 20x"
    assert body["startsAt"] == NOW.isoformat() and body["endsAt"] is None
    assert body["evidence"]["burn_rates"]["1h"] == 20.0
    assert [i.id for i in alerting.open_alerts("churn", project=project)] == [opened.id]

    resolved = alerting.clear_alert(
        KEY, project=project, now=NOW + timedelta(hours=1), summary="burn rate back to 0.5"
    )
    assert resolved is not None and not resolved.open
    assert resolved.notified["resolved"]["delivered"] is True
    assert alerting.clear_alert(KEY, project=project) is None  # nothing open: nothing sent
    assert [body["status"] for body in receiver.received] == ["firing", "resolved"]
    assert receiver.received[1]["endsAt"] == (NOW + timedelta(hours=1)).isoformat()
    assert receiver.received[1]["annotations"]["resolution"] == "burn rate back to 0.5"
    assert alerting.open_alerts(project=project) == []

    # The condition comes back: a new incident, notified again.
    again = fire(project, now=NOW + timedelta(hours=2))
    assert again is not None and again.id != opened.id
    history = alerting.alerts("churn", project=project)
    assert [i.id for i in history] == [again.id, opened.id]
    assert history[1].resolved_at == NOW + timedelta(hours=1)
    assert [body["status"] for body in receiver.received] == ["firing", "resolved", "firing"]


def test_racing_evaluators_open_one_incident(project: Project, receiver: Receiver) -> None:
    project.settings.alert_webhook_url = receiver.url
    start = threading.Barrier(4)
    results: list[alerting.Incident | None] = []

    def evaluator() -> None:
        start.wait()
        results.append(fire(project))

    threads = [threading.Thread(target=evaluator) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1
    assert len(receiver.received) == 1
    with project.metadata.read() as session:
        assert session.query(AlertRecord).count() == 1


def test_undelivered_notification_is_recorded(project: Project) -> None:
    project.settings.alert_webhook_url = "http://127.0.0.1:9/nobody-listens"
    opened = fire(project)
    assert opened is not None
    assert opened.notified["firing"] == {
        "delivered": False,
        "webhook": True,
        "at": NOW.isoformat(),
    }
    assert alerting.open_alerts(kind="slo", project=project)[0].id == opened.id
    assert alerting.open_alerts(kind="drift", project=project) == []


def test_without_webhook_the_alert_is_logged(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    opened = fire(project)
    assert opened is not None and opened.notified["firing"]["webhook"] is False
    assert "availability burns 20x" in caplog.text


BAD_ALERTS = [
    ({"severity": ""}, "severity is a non-empty string"),
    ({"kind": "x" * 40}, "kind is at most 32 characters"),
    ({"now": datetime(2024, 5, 1, 12)}, "aware UTC datetime"),
    ({"evidence": [1, 2]}, "evidence is a mapping"),
]


def test_bad_alerts_are_refused_and_nothing_stored(tmp_path: Path) -> None:
    project = Project.init(tmp_path / ".shipyard")
    for fields, message in BAD_ALERTS:
        with pytest.raises(InvalidInput, match=message):
            fire(project, **fields)
    assert alerting.alerts(project=project) == []
    with pytest.raises(InvalidInput, match="limit must be an integer >= 1"):
        alerting.alerts(limit=0, project=project)
    project.close()
