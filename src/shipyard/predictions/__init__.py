"""The prediction log: every answer recorded off the request path, queried, and replayed.

- `ParquetLog` (embedded default) and `KafkaLog` (at scale) take `PredictionRecord`s from the
  server; `open_log(settings)` picks one from `prediction_log_url`.
- `land` consumes a Kafka log into the same Parquet layout.
- `query(sql)` runs DuckDB over the `predictions` view; `find(request_id)` fetches one request.
- `replay(request_id)` re-runs a logged request on the exact model version and says whether the
  answer is identical, and why not when it is not.

Names resolve on first use, so `import shipyard.predictions` costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.predictions.kafka import KafkaLog, LandReport, land
    from shipyard.predictions.log import open_log
    from shipyard.predictions.query import find, query
    from shipyard.predictions.replay import ReplayReport, replay
    from shipyard.predictions.sink import LogStats, PredictionLogError
    from shipyard.predictions.writer import ParquetLog

_EXPORTS = {
    "KafkaLog": "shipyard.predictions.kafka",
    "LandReport": "shipyard.predictions.kafka",
    "land": "shipyard.predictions.kafka",
    "open_log": "shipyard.predictions.log",
    "find": "shipyard.predictions.query",
    "query": "shipyard.predictions.query",
    "ReplayReport": "shipyard.predictions.replay",
    "replay": "shipyard.predictions.replay",
    "LogStats": "shipyard.predictions.sink",
    "PredictionLogError": "shipyard.predictions.sink",
    "ParquetLog": "shipyard.predictions.writer",
}
__all__ = [
    "KafkaLog",
    "LandReport",
    "LogStats",
    "ParquetLog",
    "PredictionLogError",
    "ReplayReport",
    "find",
    "land",
    "open_log",
    "query",
    "replay",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.predictions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
