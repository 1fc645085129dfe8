"""The drift and SLO exporter and the app's /metrics, in process (no server started)."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from metrics_helpers import column, store_drift, store_slo, total, value
from prometheus_client import CollectorRegistry, generate_latest

from shipyard.errors import InvalidInput
from shipyard.monitoring.exporter import MonitoringExporter
from shipyard.project import Project
from shipyard.serving.app import ServingApp

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from serving_helpers import register_churn


@pytest.fixture
def served_project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    register_churn(project)
    yield project
    project.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def exposition(exporter: MonitoringExporter) -> str:
    registry = CollectorRegistry()
    registry.register(exporter)
    return generate_latest(registry).decode()


def test_the_latest_results_per_model_and_slo_are_exported(project: Project) -> None:
    store_drift(project, "churn", 0.1, [column("age", 0.01, False)])
    store_drift(
        project,
        "churn",
        0.5,
        [
            column("age", 0.31, True),
            column("plan", 0.05, False, method="jensenshannon"),
            column("prediction", 0.2, True, role="prediction", method="psi"),
        ],
        drifted=True,
        alerting=True,
    )
    store_drift(project, "fraud", 0.0, [column("amount", 0.02, False)])
    store_slo(project, "churn", "availability", value=0.98, budget=0.9, burn_rates={"1h": 9.0})
    store_slo(project, "churn", "availability", budget=-0.25, burn_rates={"1h": 14.4, "5m": 20.0})
    store_slo(project, "churn", "latency", sli="latency", objective=0.99, value=0.995, budget=0.5)

    text = exposition(MonitoringExporter(project))

    assert value(text, "shipyard_drift_share", model="churn") == 0.5
    assert value(text, "shipyard_drift_share", model="fraud") == 0.0
    assert value(text, "shipyard_dataset_drift", model="churn") == 1.0
    assert value(text, "shipyard_drift_alerting", model="churn") == 1.0
    assert value(text, "shipyard_dataset_drift", model="fraud") == 0.0
    age = {"model": "churn", "feature": "age", "role": "feature"}
    assert value(text, "shipyard_drift_statistic", **age, method="ks") == 0.31
    assert value(text, "shipyard_drift_detected", **age) == 1.0
    plan = {"model": "churn", "feature": "plan", "role": "feature"}
    assert value(text, "shipyard_drift_statistic", **plan, method="jensenshannon") == 0.05
    assert value(text, "shipyard_drift_detected", **plan) == 0.0
    prediction = {"model": "churn", "feature": "prediction", "role": "prediction"}
    assert value(text, "shipyard_drift_statistic", **prediction, method="psi") == 0.2
    assert total(text, "shipyard_drift_statistic", model="churn") == pytest.approx(0.56)

    availability = {"model": "churn", "slo": "availability"}
    assert value(text, "shipyard_slo_value", **availability, sli="availability") == 0.9995
    assert value(text, "shipyard_slo_objective", **availability) == 0.999
    assert value(text, "shipyard_slo_error_budget_remaining", **availability) == -0.25
    assert value(text, "shipyard_slo_burn_rate", **availability, window="1h") == 14.4
    assert value(text, "shipyard_slo_burn_rate", **availability, window="5m") == 20.0
    latency = {"model": "churn", "slo": "latency"}
    assert value(text, "shipyard_slo_value", **latency, sli="latency") == 0.995
    assert value(text, "shipyard_slo_error_budget_remaining", **latency) == 0.5
    assert value(text, "shipyard_monitoring_store_up") == 1.0
    stamp = value(text, "shipyard_drift_result_timestamp_seconds", model="churn")
    assert stamp is not None and stamp > 1.7e9


def test_unknown_values_are_left_out_rather_than_exported_as_numbers(tmp_path: Any) -> None:
    project = Project.init(tmp_path / ".shipyard")
    columns: list[Any] = [
        column("age", math.nan, None),
        column("income", None, True),
        "not a column",
        {"role": "feature"},  # no name
        column("plan", 0.4, True),
        column("plan", 0.9, False),  # listed twice: the first wins
    ]
    store_drift(project, "churn", 0.5, columns)
    store_slo(project, "churn", "quality", sli="quality", value=None, budget=None)
    text = exposition(MonitoringExporter(project))
    assert total(text, "shipyard_drift_statistic", feature="age") == 0.0
    assert (
        value(text, "shipyard_drift_detected", model="churn", feature="age", role="feature") is None
    )
    assert (
        value(text, "shipyard_drift_detected", model="churn", feature="income", role="feature")
        == 1.0
    )
    assert total(text, "shipyard_drift_statistic") == 0.4
    assert value(text, "shipyard_slo_value", model="churn", slo="quality", sli="quality") is None
    assert value(text, "shipyard_slo_objective", model="churn", slo="quality") == 0.999
    assert "shipyard_slo_error_budget_remaining{" not in text
    project.close()


def test_reads_are_cached_for_ttl_and_a_broken_store_keeps_the_last_values(
    tmp_path: Any,
) -> None:
    project = Project.init(tmp_path / ".shipyard")
    store_drift(project, "churn", 0.25, [])
    clock = Clock()
    exporter = MonitoringExporter(project, ttl_s=5.0, clock=clock)
    assert value(exposition(exporter), "shipyard_drift_share", model="churn") == 0.25
    store_drift(project, "churn", 0.75, [])
    clock.now = 4.9
    assert value(exposition(exporter), "shipyard_drift_share", model="churn") == 0.25
    assert exporter.reads == 1
    clock.now = 5.0
    assert value(exposition(exporter), "shipyard_drift_share", model="churn") == 0.75
    assert exporter.reads == 2

    with project.metadata.engine.begin() as connection:  # the table a scrape reads is gone
        connection.exec_driver_sql("DROP TABLE drift_results")
    clock.now = 10.0
    text = exposition(exporter)
    assert value(text, "shipyard_monitoring_store_up") == 0.0
    assert value(text, "shipyard_drift_share", model="churn") == 0.75
    assert exporter.reads == 2
    project.close()


@pytest.mark.parametrize("ttl", [-1.0, math.nan])
def test_a_negative_cache_time_is_refused(tmp_path: Any, ttl: float) -> None:
    project = Project.init(tmp_path / ".shipyard")
    with pytest.raises(InvalidInput, match=r"ttl_s must be a number of seconds >= 0; got"):
        MonitoringExporter(project, ttl_s=ttl)
    project.close()


async def _exchange(app: ServingApp, bodies: list[Any]) -> tuple[list[int], str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        codes = [
            (await client.post("/predict", content=body)).status_code
            for body in (b if isinstance(b, bytes) else orjson.dumps(b) for b in bodies)
        ]
        return codes, (await client.get("/metrics")).text


def test_apps_in_one_process_keep_their_own_counts_and_collectors(
    served_project: Project,
) -> None:
    from shipyard.serving import ModelOptions, Predictor

    store_slo(served_project, "churn", "availability", budget=0.625)

    def app(collectors: list[Any]) -> ServingApp:
        options = ModelOptions.build()
        predictor = Predictor.load("churn@1", project=served_project, options=options)
        built = ServingApp.of([predictor], collectors=collectors)
        built.load()
        return built

    row = {"age": 30, "income": 20000.0, "plan": "basic"}
    first = app([MonitoringExporter(served_project)])
    codes, text = asyncio.run(_exchange(first, [[row], [row], [{"age": 30}], b"not json"]))
    assert codes == [200, 200, 422, 400]
    labels = {"model": "churn", "version": "1", "protocol": "predict"}
    assert value(text, "shipyard_requests_total", **labels, arm="default", code="200") == 2.0
    assert total(text, "shipyard_requests_total") == 4.0  # the failures count with their code
    errors = "shipyard_request_errors_total"
    assert value(text, errors, **labels, arm="default", error="signature") == 1.0
    assert value(text, errors, **labels, arm="", error="request") == 1.0  # failed before routing
    budget = value(text, "shipyard_slo_error_budget_remaining", model="churn", slo="availability")
    assert budget == 0.625

    second = app([])
    codes, text = asyncio.run(_exchange(second, [[row]]))
    assert codes == [200]
    assert total(text, "shipyard_requests_total") == 1.0
    assert "shipyard_slo_" not in text
