"""What the server tells the prediction log about each request, and what a log must accept.

A record is one request (which may carry many rows). The inputs and outputs are kept as the
JSON text that was received and returned, so a replay parses them exactly as the server did.
Writers (Parquet files, a Kafka topic) live in `shipyard.predictions`; the server only needs
something with `append` and `close`, so it never waits on storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_ARM = "default"  # until a release routes traffic between versions


@dataclass(slots=True)
class PredictionRecord:
    request_id: str
    time: float  # seconds since the epoch, UTC, when the request arrived
    model: str
    version: int
    protocol: str  # "v2", "mlflow", "predict", "batch", "stream"
    inputs: str  # JSON: the request's inputs as received
    outputs: str  # JSON: the response's outputs as returned
    latency_ms: float
    arm: str = DEFAULT_ARM
    filters: list[str] = field(default_factory=list)  # output filters that fired, by rule name
    hooks: dict[str, str] = field(default_factory=dict)  # hook name -> sha256 of its source
    status: int = 200

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class PredictionSink(Protocol):
    """Where records go; `append` must return at once (a background writer does the I/O)."""

    def append(self, record: PredictionRecord) -> None: ...

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop; called on graceful shutdown."""
        ...


class DiscardSink:
    """For callers that keep no log (tests of the pure prediction path, benchmarks' floor)."""

    def append(self, record: PredictionRecord) -> None:
        pass

    def close(self, timeout: float = 10.0) -> None:
        pass
