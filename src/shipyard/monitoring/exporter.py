"""Drift and SLO results as Prometheus gauges, read from the metadata store at scrape time.

`MonitoringExporter` is a prometheus-client custom collector: each scrape exports the LATEST
stored drift result per model and the latest evaluation per model and SLO, whichever process
stored them (`shipyard drift run`, `shipyard slo status`, the CT loop). The tables are read
directly (latest row per model, per model and SLO), not through the modules that write them,
and the read is cached for `ttl_s` seconds so that a burst of scrapes (several Prometheus
servers, several workers) costs the database one query pair.

The server adds it to `/metrics` (`shipyard.deploy.local`); with several workers it is
collected once per scrape by the worker that answers, not summed over workers.

    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(MonitoringExporter(project))
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.store.models import DriftResultRecord, SLOEvaluationRecord

log = logging.getLogger("shipyard.monitoring.exporter")

DEFAULT_TTL_S = 5.0  # Prometheus scrapes every 15 s by default; results change per run


@dataclass(frozen=True)
class _Family:
    name: str
    help: str
    labels: tuple[str, ...]


DRIFT_STATISTIC = _Family(
    "shipyard_drift_statistic",
    "The latest drift run's statistic per column (the method's distance or p-value)",
    ("model", "feature", "role", "method"),
)
DRIFT_DETECTED = _Family(
    "shipyard_drift_detected",
    "1 when the latest drift run found the column drifted, else 0",
    ("model", "feature", "role"),
)
DRIFT_SHARE = _Family(
    "shipyard_drift_share", "Share of drifted columns in the latest drift run (0 to 1)", ("model",)
)
DATASET_DRIFT = _Family(
    "shipyard_dataset_drift",
    "1 when the latest drift run's dataset-level verdict is drift",
    ("model",),
)
DRIFT_ALERTING = _Family(
    "shipyard_drift_alerting",
    "1 when drift has persisted for the configured number of windows (the alert condition)",
    ("model",),
)
DRIFT_TIME = _Family(
    "shipyard_drift_result_timestamp_seconds",
    "When the latest drift result was stored (Unix time): its age tells a stale monitor",
    ("model",),
)
SLO_VALUE = _Family(
    "shipyard_slo_value",
    "The SLI's value at the latest evaluation (a share from 0 to 1, or the SLI's own unit)",
    ("model", "slo", "sli"),
)
SLO_OBJECTIVE = _Family("shipyard_slo_objective", "The SLO's objective", ("model", "slo"))
SLO_BUDGET = _Family(
    "shipyard_slo_error_budget_remaining",
    "Share of the window's error budget left at the latest evaluation (1 = untouched, "
    "below 0 = overspent)",
    ("model", "slo"),
)
SLO_BURN_RATE = _Family(
    "shipyard_slo_burn_rate",
    "How fast the error budget burns over each alert window (1 = exactly on budget)",
    ("model", "slo", "window"),
)
SLO_TIME = _Family(
    "shipyard_slo_evaluation_timestamp_seconds",
    "When the SLO was last evaluated (Unix time)",
    ("model", "slo"),
)
STORE_UP = _Family(
    "shipyard_monitoring_store_up",
    "1 when the last read of drift and SLO results from the metadata store succeeded, else 0 "
    "(the gauges above then keep the last values read)",
    (),
)
FAMILIES = (
    DRIFT_STATISTIC,
    DRIFT_DETECTED,
    DRIFT_SHARE,
    DATASET_DRIFT,
    DRIFT_ALERTING,
    DRIFT_TIME,
    SLO_VALUE,
    SLO_OBJECTIVE,
    SLO_BUDGET,
    SLO_BURN_RATE,
    SLO_TIME,
)


@dataclass
class _Samples:
    """Label values -> value per family; the first of two equal label sets wins (a column
    listed twice would otherwise make an invalid exposition)."""

    by_family: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)

    def add(self, family: _Family, labels: tuple[str, ...], value: Any) -> None:
        number = _number(value)
        if number is not None:
            self.by_family.setdefault(family.name, {}).setdefault(labels, number)

    def families(self, up: bool) -> list[Metric]:
        built: list[Metric] = []
        for family in FAMILIES:
            metric = GaugeMetricFamily(family.name, family.help, labels=family.labels)
            for labels, value in self.by_family.get(family.name, {}).items():
                metric.add_metric(list(labels), value)
            built.append(metric)
        store = GaugeMetricFamily(STORE_UP.name, STORE_UP.help, value=1.0 if up else 0.0)
        return [*built, store]


class MonitoringExporter:
    """The latest drift and SLO results as gauges (a prometheus-client custom collector)."""

    def __init__(
        self,
        project: Project,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl_s >= 0:
            raise InvalidInput(
                f"the exporter's ttl_s must be a number of seconds >= 0; got {ttl_s!r}"
            )
        self.project = project
        self.ttl_s = ttl_s
        self.clock = clock
        self.reads = 0  # metadata store reads so far (how well the cache works)
        self._lock = threading.Lock()
        self._samples = _Samples()
        self._read_at: float | None = None
        self._up = True

    def describe(self) -> list[Metric]:
        """The names, without reading the store (a registry asks when the collector joins)."""
        return _Samples().families(up=True)

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # concurrent scrapes wait for one read rather than each reading
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.ttl_s:
                self._refresh()
                self._read_at = now
            return self._samples.families(self._up)

    def _refresh(self) -> None:
        try:
            with self.project.metadata.read() as session:
                samples = _Samples()
                _add_drift(samples, session)
                _add_slos(samples, session)
        except Exception as exc:  # a scrape never fails for this: the gauges say so
            log.warning("reading drift and SLO results for /metrics failed: %s", exc)
            self._up = False
            return
        self.reads += 1
        self._samples, self._up = samples, True


def _latest(session: Session, record: Any, *keys: Any) -> list[Any]:
    """The newest row (highest id: the last stored) for each value of `keys`."""
    newest = select(func.max(record.id)).group_by(*keys)
    return list(session.scalars(select(record).where(record.id.in_(newest))).all())


def _add_drift(samples: _Samples, session: Session) -> None:
    for row in _latest(session, DriftResultRecord, DriftResultRecord.model):
        model = row.model
        samples.add(DRIFT_SHARE, (model,), row.drifted_share)
        samples.add(DATASET_DRIFT, (model,), float(bool(row.drifted)))
        samples.add(DRIFT_ALERTING, (model,), float(bool(row.alerting)))
        samples.add(DRIFT_TIME, (model,), _unix(row.created_at))
        result = row.result if isinstance(row.result, Mapping) else {}
        columns = result.get("columns")
        for column in columns if isinstance(columns, list) else []:
            if not isinstance(column, Mapping) or column.get("name") is None:
                continue
            feature, role = str(column["name"]), str(column.get("role") or "feature")
            method = str(column.get("method") or "")
            samples.add(DRIFT_STATISTIC, (model, feature, role, method), column.get("statistic"))
            if column.get("drifted") is not None:
                samples.add(DRIFT_DETECTED, (model, feature, role), float(bool(column["drifted"])))


def _add_slos(samples: _Samples, session: Session) -> None:
    keys = (SLOEvaluationRecord.model, SLOEvaluationRecord.slo)
    for row in _latest(session, SLOEvaluationRecord, *keys):
        model, slo = row.model, row.slo
        samples.add(SLO_VALUE, (model, slo, row.sli), row.value)
        samples.add(SLO_OBJECTIVE, (model, slo), row.objective)
        samples.add(SLO_BUDGET, (model, slo), row.budget_remaining)
        samples.add(SLO_TIME, (model, slo), _unix(row.at))
        detail = row.detail if isinstance(row.detail, Mapping) else {}
        rates = detail.get("burn_rates")
        for window, rate in rates.items() if isinstance(rates, Mapping) else ():
            samples.add(SLO_BURN_RATE, (model, slo, str(window)), rate)


def _number(value: Any) -> float | None:
    """A finite or infinite float; None, NaN and non-numbers are left out (no sample)."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _unix(at: datetime | None) -> float | None:
    if at is None:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
