"""BentoML's side of the serving benchmark: the model from BentoML's model store behind its API.

Two services, started by bench_serving.py with benchmarks/.venv-bentoml's `bentoml serve`:
`bento_service:Plain` (`@bentoml.api`) and `bento_service:Batched` (`@bentoml.api(batchable=True)`,
BentoML's adaptive batching with its default max_batch_size and max_latency_ms). Both take
`{"data": [[f0, ..., f7], ...]}` on `POST /predict`, an `np.ndarray` argument (the form of
BentoML's own scikit-learn example), and answer the predictions as a JSON list. A `pd.DataFrame`
argument (records, the body closest to shipyard's) cannot be batched in BentoML 1.4.40: its
`PandasDataFrameContainer.get_batch_size` returns the frame's shape, a tuple, so the batching
dispatcher fails on every request and answers 503 after `max_latency_ms`. The array is the cheaper
input for the model anyway (no DataFrame validation in scikit-learn), so BentoML gets its fast path.

BENCH_WORKERS sets the workers; BENTOML_HOME (set by the benchmark) holds the model store with
`bench_model`.
"""

from __future__ import annotations

import os
import warnings

import bentoml
import numpy as np

WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
MODEL_TAG = "bench_model:latest"
# The model was fitted on a DataFrame; the array's columns are in its order.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@bentoml.service(workers=WORKERS)
class Plain:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(MODEL_TAG)

    @bentoml.api
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)


@bentoml.service(workers=WORKERS)
class Batched:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(MODEL_TAG)

    @bentoml.api(batchable=True)
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)
