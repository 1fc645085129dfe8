"""Scoring: a registered model over a dataset version (batch) or a Kafka topic (stream).

Both go through `shipyard.serving.Predictor.predict`, the path the server answers with
(pre-processing, the signature check, the model, post-processing, output filters), so a batch
score, a streamed score and a served answer for the same row are the same answer.

>>> result = shipyard.scoring.score("churn@champion", "customers@3", out="scores.parquet")
>>> result.dataset.ref                                   # "customers-scored@1", with lineage
>>> stats = shipyard.scoring.stream("churn@champion", "kafka://b:9092/in", "kafka://b:9092/out")

Names resolve on first use: `import shipyard.scoring` loads neither pandas nor Kafka.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.scoring.batch import ScoreResult, score
    from shipyard.scoring.streaming import StreamStats, stream

_EXPORTS = {
    "ScoreResult": "shipyard.scoring.batch",
    "score": "shipyard.scoring.batch",
    "StreamStats": "shipyard.scoring.streaming",
    "stream": "shipyard.scoring.streaming",
}
__all__ = ["ScoreResult", "StreamStats", "score", "stream"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
