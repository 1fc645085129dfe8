"""The server's Prometheus metrics, in a registry of its own (one per app, so tests and
several apps in one process never share counters)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model", "version", "arm", "protocol", "code"]
        self.requests = Counter(
            "shipyard_requests",
            "Requests answered, by model and status code",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "shipyard_request_latency_seconds",
            "Time from request to response",
            ["model", "version", "arm", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "shipyard_request_errors",
            "Refused requests, by class (request, signature, input); before a model is known",
            ["error"],
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
            "Response cache lookups",
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
        self.release_weight = Gauge(
            "shipyard_release_weight_percent",
            "Share of routing keys each version answers under the live split",
            ["model", "version"],
            registry=self.registry,
        )
        self.rollback_seconds = Gauge(
            "shipyard_rollback_seconds",
            "From the decision to roll back (a failed analysis) to this worker routing every "
            "request to the champion",
            ["model"],
            registry=self.registry,
        )
        self.log_queue = Gauge(
            "shipyard_prediction_log_queue",
            "Prediction log records not yet written",
            registry=self.registry,
        )

    def render(self, sink: Any) -> bytes:
        depth = getattr(sink, "queue_depth", None)
        if depth is not None:
            self.log_queue.set(depth() if callable(depth) else depth)
        return generate_latest(self.registry)
