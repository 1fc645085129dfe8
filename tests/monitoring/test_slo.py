"""SLOs on crafted prediction logs with known counts: budget and burn-rate arithmetic, the
multiwindow rules, each SLI, alerts sent once and resolved, and bad declarations refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slo_helpers import record, write_log
from sqlalchemy import func, select

from receivers import Receiver
from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.monitoring import alerting, slo
from shipyard.predictions import feedback
from shipyard.project import Project
from shipyard.serving.record import PredictionRecord
from shipyard.store.models import AlertRecord, SLOEvaluationRecord

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=4)


def availability(**extra: Any) -> dict[str, Any]:
    return {"name": "availability", "sli": "availability", "objective": 0.999, **extra}


def hour_of_traffic(
    model: str, end: datetime, *, failing: Any, prefix: str = ""
) -> list[PredictionRecord]:
    """10,000 requests in the hour before `end`: 1,000 in its last 5 minutes, 9,000 before;
    `failing(k, recent)` says which fail with a 500."""
    recent = [
        record(f"{model}{prefix}-r{k}", end - timedelta(seconds=0.25 + k * 0.29),
               model=model, status=500 if failing(k, True) else 200)
        for k in range(1000)
    ]  # fmt: skip
    older = [
        record(f"{model}{prefix}-o{k}", end - timedelta(seconds=301 + k * 0.36),
               model=model, status=500 if failing(k, False) else 200)
        for k in range(9000)
    ]  # fmt: skip
    return recent + older


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One SQLite project whose log holds a model per scenario (written once: it is the slow
    part)."""
    project = Project.init(tmp_path_factory.mktemp("slo") / ".shipyard")
    records = [
        # 2% of requests fail, evenly: 20 of the last 1,000, 180 of the 9,000 before.
        *hour_of_traffic("burning", NOW, failing=lambda k, recent: k % 50 == 0),
        # The same 200 failures, all about 41 minutes ago: over by now.
        *hour_of_traffic(
            "recovered", NOW, failing=lambda k, recent: not recent and 6000 <= k < 6200
        ),
        # Healthy again four days later.
        *hour_of_traffic("burning", LATER, failing=lambda k, recent: False, prefix="later"),
        # Latency: 900 answered in 50 ms, 100 in 500 ms; slow shadow copies must not count.
        *[
            record(f"slow-{k}", NOW - timedelta(seconds=1 + k), model="slow",
                   latency_ms=500.0 if k % 10 == 0 else 50.0)
            for k in range(1000)
        ],
        *[
            record(f"slow-{k}", NOW - timedelta(seconds=1 + k), model="slow", arm="shadow",
                   latency_ms=900.0)
            for k in range(100)
        ],
        # Quality: 100 answered predictions of class k % 2 in the last hour.
        *[
            record(f"labelled-{k}", NOW - timedelta(seconds=10 + 30 * k), model="labelled",
                   prediction=k % 2)
            for k in range(100)
        ],
        # A regressor: predictions 10.0.
        *[
            record(f"price-{k}", NOW - timedelta(seconds=10 + 30 * k), model="price",
                   prediction=10.0)
            for k in range(20)
        ],
    ]  # fmt: skip
    write_log(project, records)
    # 60 of the 100 classifications get a label: 45 right, 15 wrong.
    labels = [
        {"request_id": f"labelled-{k}", "label": k % 2 if k < 45 else 1 - k % 2} for k in range(60)
    ]
    # Regression labels: |error| 0.5 for 15 (within tolerance 1), 2.0 for 5.
    labels += [{"request_id": f"price-{k}", "label": 10.5 if k < 15 else 12.0} for k in range(20)]
    feedback.add(labels, project=project, source="test")
    yield project
    project.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def declare(project: Project, model: str, *slos: dict[str, Any]) -> None:
    project.settings.slos = {model: list(slos)}


def stored(project: Project, model: str) -> int:
    with project.metadata.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(SLOEvaluationRecord)
                .where(SLOEvaluationRecord.model == model)
            )
            or 0
        )


def test_budget_and_burn_rates_from_known_counts(logged: Project) -> None:
    declare(logged, "burning", availability(window="28d"))
    (result,) = slo.status("burning", project=logged, now=NOW)
    assert (result.good, result.total) == (9800, 10_000)
    assert result.value == pytest.approx(0.98)
    # 200 bad events where 0.1% of 10,000 = 10 were allowed: the budget is 19 times overspent.
    assert result.budget_remaining == pytest.approx(1 - 200 / 10)
    assert result.windows["5m"] == {"good": 980, "total": 1000}
    assert result.windows["1h"] == {"good": 9800, "total": 10_000}
    # 2% bad against 0.1% allowed: a burn rate of 20 over the hour and its last 5 minutes.
    assert result.burn_rates["1h"] == pytest.approx(20.0)
    assert result.burn_rates["5m"] == pytest.approx(20.0)
    assert result.firing == ["page 14.4x 1h/5m", "page 6x 6h/30m", "ticket 1x 3d/6h"]
    assert result.severities == ["page", "ticket"] and result.pages
    assert stored(logged, "burning") == 0  # status stores nothing


def test_both_windows_must_burn(logged: Project) -> None:
    declare(logged, "recovered", availability())
    (result,) = slo.status("recovered", project=logged, now=NOW)
    assert result.burn_rates["1h"] == pytest.approx(20.0)  # the hour burned hard...
    assert result.burn_rates["5m"] == 0.0  # ...but it stopped: no page
    assert result.burn_rates["30m"] == 0.0
    assert result.firing == ["ticket 1x 3d/6h"]
    assert not result.pages


def test_alert_sent_once_then_resolved(logged: Project, receiver: Receiver) -> None:
    logged.settings.alert_webhook_url = receiver.url
    declare(logged, "burning", availability())
    try:
        first = slo.evaluate("burning", project=logged, now=NOW)
        for minutes in (1, 2):  # the burn goes on: the same incidents, nothing sent again
            again = slo.evaluate("burning", project=logged, now=NOW + timedelta(minutes=minutes))
            assert again[0].severities == ["page", "ticket"]
        assert first[0].pages
        assert sorted((b["status"], b["severity"]) for b in receiver.received) == [
            ("firing", "page"),
            ("firing", "ticket"),
        ]
        page = next(b for b in receiver.received if b["severity"] == "page")
        assert page["key"] == "slo:burning:availability:page"
        assert page["labels"]["kind"] == "slo"
        assert page["evidence"]["burn_rates"]["1h"] == pytest.approx(20.0)
        assert "20.0x over 1h" in page["summary"]
        assert {i.severity for i in alerting.open_alerts("burning", project=logged)} == {
            "page",
            "ticket",
        }

        healed = slo.evaluate("burning", project=logged, now=LATER)
        assert healed[0].firing == [] and healed[0].burn_rates["1h"] == 0.0
        statuses = [(b["status"], b["severity"]) for b in receiver.received]
        assert sorted(statuses[2:]) == [("resolved", "page"), ("resolved", "ticket")]
        assert alerting.open_alerts("burning", project=logged) == []
        slo.evaluate("burning", project=logged, now=LATER + timedelta(minutes=1))
        assert len(receiver.received) == 4  # resolved once

        # Every evaluation was stored, with the burn rates the exporter reads.
        history = slo.history("burning", "availability", project=logged)
        assert [h.at for h in history] == [
            NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=2), LATER,
            LATER + timedelta(minutes=1),
        ]  # fmt: skip
        assert history[0].burn_rates["5m"] == pytest.approx(20.0)
        assert history[0].firing == first[0].firing
        assert history[0].budget_remaining == pytest.approx(-19.0)
        assert history[3].detail["windows"]["1h"] == {"good": 10_000, "total": 10_000}
        since = slo.history("burning", "availability", since=LATER, project=logged)
        assert len(since) == 2
    finally:
        logged.settings.alert_webhook_url = None


def test_latency_counts_answers_within_the_threshold_without_shadows(logged: Project) -> None:
    declare(
        logged,
        "slow",
        {"name": "fast", "sli": "latency", "threshold_ms": 100, "objective": 0.95, "window": "1d"},
    )
    (result,) = slo.status("slow", project=logged, now=NOW)
    assert (result.good, result.total) == (900, 1000)
    assert result.burn_rates["1h"] == pytest.approx(0.1 / 0.05)
    assert result.budget_remaining == pytest.approx(1 - 100 / 50)
    assert result.firing == ["ticket 1x 3d/6h"]


def test_quality_on_delayed_labels_with_coverage(logged: Project) -> None:
    declare(
        logged,
        "labelled",
        {"name": "accuracy", "sli": "quality", "objective": 0.9, "window": "7d",
         "alerts": [{"long": "1h", "short": "30m", "burn_rate": 2, "severity": "page"}]},
    )  # fmt: skip
    (result,) = slo.evaluate("labelled", project=logged, now=NOW, notify=True)
    assert (result.good, result.total) == (45, 60)
    assert result.value == pytest.approx(0.75)
    assert result.burn_rates["1h"] == pytest.approx(0.25 / 0.1)
    assert result.extra["coverage"]["1h"] == pytest.approx(0.6)
    # The 60 labelled requests are the newest 60 (30 s apart), all within the last 30 min.
    assert result.extra["coverage"]["30m"] == pytest.approx(60 / 60)
    assert result.firing == ["page 2x 1h/30m"]
    (incident,) = alerting.open_alerts("labelled", project=logged)
    assert incident.kind == "quality" and incident.key == "slo:labelled:accuracy:page"


def test_quality_of_a_regressor_needs_a_tolerance(logged: Project) -> None:
    entry = {"name": "error", "sli": "quality", "objective": 0.7, "window": "1d"}
    declare(logged, "price", {**entry, "tolerance": 1.0})
    (result,) = slo.status("price", project=logged, now=NOW)
    assert (result.good, result.total) == (15, 20)
    assert result.extra["task"] == "regressor"
    declare(logged, "price", entry)
    with pytest.raises(ConfigError, match=r"slos\.price\.error\.tolerance: price is a regressor"):
        slo.evaluate("price", project=logged, now=NOW)
    assert stored(logged, "price") == 0


def test_freshness_of_the_model_and_of_its_training_data(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import shipyard.data as data
    from shipyard.registry.versions import register

    project = Project.init(tmp_path / "fresh")
    frame = pd.DataFrame({"age": [20, 30, 40, 50, 60, 70], "churned": [0, 0, 0, 1, 1, 1]})
    dataset = data.add(frame, "people", project=project)
    fitted = LogisticRegression().fit(frame[["age"]], frame["churned"])
    v1 = register(fitted, "fresh", datasets=[dataset], project=project)
    other = LogisticRegression(C=0.5).fit(frame[["age"]], frame["churned"])
    v2 = register(other, "fresh", project=project)  # no lineage: its data's age is unknown
    born = v1.created_at
    write_log(
        project,
        [
            *[record(f"a{k}", born + timedelta(minutes=10), model="fresh") for k in range(10)],
            *[record(f"b{k}", born + timedelta(hours=2), model="fresh") for k in range(10)],
            *[
                record(f"c{k}", born + timedelta(hours=2, minutes=30), model="fresh",
                       version=v2.version)
                for k in range(10)
            ],
        ],
    )  # fmt: skip
    declare(
        project,
        "fresh",
        {"name": "model-age", "sli": "freshness", "objective": 0.9, "max_model_age": "3h"},
        {"name": "data-age", "sli": "freshness", "objective": 0.9, "max_model_age": "3h",
         "max_data_age": "90m"},
        {"name": "young", "sli": "freshness", "objective": 0.9, "max_model_age": "1h"},
    )  # fmt: skip
    by_name = {
        r.slo: r for r in slo.status("fresh", project=project, now=born + timedelta(hours=3))
    }
    assert (by_name["model-age"].good, by_name["model-age"].total) == (30, 30)
    # v1's data was 2 h old at the second batch (over 90 min); v2's data age is unknown.
    assert (by_name["data-age"].good, by_name["data-age"].total) == (10, 30)
    assert (by_name["young"].good, by_name["young"].total) == (10, 30)
    project.close()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (availability(objective=1.5), r"objective: expected a share strictly between 0 and 1"),
        (availability(objective=99.9), r"for 99\.9% write 0\.999"),
        (availability(objective=0), r"objective: expected a share strictly between 0 and 1"),
        (availability(window="28 days"), r"window must be a positive duration.*'28 days'"),
        (availability(window="0h"), r"window must be a positive duration"),
        ({"name": "x", "sli": "uptime", "objective": 0.9}, r"sli: expected one of availab"),
        ({"name": "x", "sli": "latency", "objective": 0.9}, r"x\.threshold_ms: a latency SLI"),
        (availability(threshold_ms=100), r"only a latency SLI takes it"),
        (availability(objectiv=0.9), r"unknown key\(s\) objectiv"),
        ({"name": "x", "sli": "freshness", "objective": 0.9}, r"needs max_model_age"),
        (
            availability(alerts=[{"long": "5m", "short": "1h", "burn_rate": 2, "severity": "p"}]),
            r"alerts\[0\]: the short window \(1h\) must be shorter than the long one \(5m\)",
        ),
        (availability(alerts=[{"long": "1h", "short": "5m"}]), r"missing: burn_rate, severity"),
    ],
)
def test_bad_declarations_are_refused_and_nothing_stored(
    logged: Project, receiver: Receiver, entry: dict[str, Any], message: str
) -> None:
    logged.settings.alert_webhook_url = receiver.url
    # A good SLO beside the bad one: nothing of either is evaluated, stored or sent.
    logged.settings.slos = {"burning": [availability()], "recovered": [entry]}
    with pytest.raises(ConfigError, match=message):
        slo.evaluate(project=logged, now=NOW)
    logged.settings.alert_webhook_url = None
    assert stored(logged, "recovered") == 0 and receiver.received == []
    with logged.metadata.read() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(AlertRecord)
                .where(AlertRecord.model == "recovered")
            )
            == 0
        )


def test_unknown_model_and_bad_arguments(logged: Project) -> None:
    declare(logged, "burning", availability())
    with pytest.raises(NotFound, match=r"no SLO is declared for model 'nope'.*burning"):
        slo.status("nope", project=logged)
    with pytest.raises(InvalidInput, match="aware UTC datetime"):
        slo.status("burning", project=logged, now=datetime(2024, 5, 1))
    with pytest.raises(InvalidInput, match=r"positive duration.*'5 minutes'"):
        slo.parse_duration("5 minutes")
    assert slo.parse_duration("30s") == timedelta(seconds=30)
    assert slo.parse_duration("28d") == timedelta(days=28)


def test_evaluations_and_incidents_on_each_backend(project: Project) -> None:
    write_log(
        project,
        [
            record(f"r{k}", NOW - timedelta(seconds=1 + k), status=500 if k % 10 == 0 else 200)
            for k in range(200)
        ],
    )
    declare(project, "churn", availability())
    (result,) = slo.evaluate("churn", project=project, now=NOW)
    assert result.burn_rates["5m"] == pytest.approx(100.0) and result.pages
    (evaluation,) = slo.history("churn", "availability", project=project)
    assert evaluation.events == 200 and evaluation.burn_rates["1h"] == pytest.approx(100.0)
    assert evaluation.detail["windows"]["28d"] == {"good": 180, "total": 200}
    assert {i.severity for i in alerting.open_alerts("churn", project=project)} == {
        "page",
        "ticket",
    }
