"""The server's Prometheus metrics.

One process, one app (or several apps in one process, as the tests run them): each app has a
registry of its own, so apps never share counters, and `/metrics` renders that registry.

Several workers (`shipyard serve --workers N`): prometheus-client's multiprocess mode. The
launcher sets `PROMETHEUS_MULTIPROC_DIR` to a fresh folder before the workers start, so every
worker's counters, histograms and gauges live in memory-mapped files there; a scrape, whichever
worker answers it, merges every worker's files (`MultiProcessCollector`) and so reports the
totals. Counters and histograms add up (a dead worker's counts are kept: totals never go
back); each gauge says how its workers' values combine (`multiprocess_mode`).

Collectors of the layers above (the monitoring exporter's drift and SLO gauges, read from the
metadata store) are passed in and added once per scrape, never summed over workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = ""  # a label not known when the request failed (no model, or not routed yet)


class Collector(Protocol):
    """What prometheus-client calls at scrape time; `describe` lets a registry learn the
    names without collecting (a collector that reads a database should have it)."""

    def collect(self) -> Iterable[Metric]: ...


def multiprocess_dir() -> str | None:
    """The folder of the workers' metric files when this process runs in multiprocess mode.

    The mode is fixed when prometheus-client is first imported (from the environment then),
    so the variable alone is not enough: it must have been set before that import."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get(MULTIPROC_ENV) or None


class _SplitGauge(Gauge):
    """A labelled gauge whose `clear()` also works across workers.

    In multiprocess mode a series lives on in the worker's file after `clear()` (and
    prometheus-client only warns), so the old value would be exported forever: set each
    series to 0 first, which is what a cleared split means (no share of the traffic)."""

    def clear(self) -> None:
        if multiprocess_dir() is None:
            super().clear()
            return
        with self._lock:
            children: list[Any] = list(self._metrics.values())
            self._metrics = {}
        for child in children:
            child.set(0)


class ServingMetrics:
    def __init__(self, collectors: Sequence[Collector] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir()
        labels = ["model", "version", "arm", "protocol", "code"]
        self.requests = Counter(
            "shipyard_requests",
            "Prediction requests answered, by model, version, routing arm, protocol and "
            "status code (errors included once a model is known)",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "shipyard_request_latency_seconds",
            "Time from request to response of answered (200) prediction requests",
            ["model", "version", "arm", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "shipyard_request_errors",
            "Failed requests by class (request, signature, input, not_found, unexplainable, "
            "hook, model, internal); model, version, arm and protocol are empty when the "
            "request failed before they were known",
            ["model", "version", "arm", "protocol", "error"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "shipyard_batch_rows",
            "Rows predicted per model call (micro-batch size)",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "shipyard_cache",
            "Response cache lookups, by result (hit or miss)",
            ["model", "version", "result"],
            registry=self.registry,
        )
        self.filtered = Counter(
            "shipyard_filtered_outputs",
            "Outputs withheld by a filter",
            ["model", "rule"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "shipyard_shadow_dropped",
            "Mirrored (shadow) requests dropped because too many were waiting",
            registry=self.registry,
        )
        # Every worker routes by the same split: the latest value set is the split.
        self.release_weight = _SplitGauge(
            "shipyard_release_weight_percent",
            "Share of routing keys each version answers under the live split",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        # Each worker follows a rollback on its own: the slowest live one is the answer.
        self.rollback_seconds = Gauge(
            "shipyard_rollback_seconds",
            "From the decision to roll back (a failed analysis) to the slowest worker routing "
            "every request to the champion",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Each worker has its own log writer: the server's backlog is their sum.
        self.log_queue = Gauge(
            "shipyard_prediction_log_queue",
            "Prediction log records accepted and not yet written, summed over live workers",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.exposed = self._exposed_registry(collectors)

    @property
    def multiprocess(self) -> bool:
        return self.multiprocess_dir is not None

    def _exposed_registry(self, collectors: Sequence[Collector]) -> CollectorRegistry:
        """What a scrape renders: this app's own registry, or, across workers, every worker's
        files merged; the collectors of the layers above are added once either way."""
        if self.multiprocess_dir is None:
            exposed = self.registry
        else:
            exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(exposed, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in collectors:
            exposed.register(collector)
        return exposed

    def observe(self, sink: Any) -> None:
        """Gauges read from the server's parts (the log writer's backlog)."""
        depth = getattr(sink, "queue_depth", None)
        if depth is not None:
            self.log_queue.set(depth() if callable(depth) else depth)

    def render(self, sink: Any) -> bytes:
        self.observe(sink)
        return generate_latest(self.exposed)
