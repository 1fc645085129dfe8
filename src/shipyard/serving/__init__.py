"""The serving layer: the ASGI app, its protocols, micro-batching, the response cache, hooks.

`Predictor` is the one prediction path (pre-processing, the signature check, the model,
post-processing, output filters) shared by the server, batch and stream scoring and replay.
"""

from __future__ import annotations

from shipyard.serving.options import ModelOptions
from shipyard.serving.predictor import Batch, Prediction, Predictor
from shipyard.serving.record import PredictionRecord, PredictionSink

__all__ = [
    "Batch",
    "ModelOptions",
    "Prediction",
    "PredictionRecord",
    "PredictionSink",
    "Predictor",
]
