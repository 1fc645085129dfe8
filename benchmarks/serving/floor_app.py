"""The floor of Python HTTP serving: a bare ASGI app under uvicorn (uvloop, httptools) + orjson.

`POST /predict` takes what shipyard's `/predict` takes, a JSON list of records
(`[{"f0": 0.1, ...}, ...]`), and answers `{"predictions": [...]}`. It does what a careful bare app
must and nothing more: parse the body with orjson, refuse a body that is not a list of records
with every feature (400), put the values in the model's column order as a float64 array, and call
`model.predict`. With BENCH_FLOOR_FRAME=1 it wraps that array in a pandas DataFrame with the
model's column names first (the input every peer's sklearn path gives the model), which costs
scikit-learn's DataFrame validation on every call.

Run by bench_serving.py with shipyard's own interpreter:
`python -m uvicorn floor_app:app --loop uvloop --http httptools --workers N` in this folder, the
pickled model's path in BENCH_MODEL.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson

MODEL: Any = pickle.loads(Path(os.environ["BENCH_MODEL"]).read_bytes())
FEATURES: list[str] = [str(name) for name in MODEL.feature_names_in_]
FRAME = os.environ.get("BENCH_FLOOR_FRAME") == "1"
if FRAME:
    import pandas as pd
else:
    # The model was fitted on a DataFrame; the array is already in its column order.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")

JSON = [(b"content-type", b"application/json")]


async def _send(send: Any, status: int, payload: bytes) -> None:
    headers = [*JSON, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] != "/predict" or scope["method"] != "POST":
        await _send(send, 404, b'{"error": "POST /predict"}')
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        records = orjson.loads(body)
        if not isinstance(records, list) or not records:
            raise ValueError("send a non-empty JSON list of records")
        matrix = np.array([[row[name] for name in FEATURES] for row in records], dtype=np.float64)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        await _send(send, 400, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    if FRAME:
        predictions = MODEL.predict(pd.DataFrame(matrix, columns=FEATURES))
    else:
        predictions = MODEL.predict(matrix)
    await _send(send, 200, orjson.dumps({"predictions": predictions.tolist()}))
