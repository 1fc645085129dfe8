"""The response cache: answers kept per model version and canonical input, bounded, with a TTL.

The key is the model version plus the request's inputs in canonical form (sorted keys, the
values as decoded), so `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` share an entry. What is kept
is the prediction, not the response: request ids and echoed fields are fresh on every hit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from shipyard.serving.predictor import Prediction


class ResponseCache:
    def __init__(self, *, size: int, ttl_s: float, clock: Any = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, tuple[float, Prediction]] = OrderedDict()

    @staticmethod
    def key(version: int, data: Any, extra: Any = None) -> bytes:
        canonical = orjson.dumps(
            [version, data, extra], option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
        )
        return canonical

    def get(self, key: bytes) -> Prediction | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self.clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, prediction: Prediction) -> None:
        self._entries[key] = (self.clock() + self.ttl_s, prediction)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
