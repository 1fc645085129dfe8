"""Adaptive micro-batching: concurrent requests for one model answered by one model call.

Requests queue per model. A batch is cut when it holds `max_batch_size` rows, or when
`max_batch_wait_ms` has passed since its first request; with a wait of 0 it is cut at the end
of the event loop's current turn, so it holds exactly the requests that arrived together: an
idle server answers at once, a busy one batches by itself.

The batch is checked against the signature once, as one set of columns. When that check
fails, each request is checked alone, so a bad request gets its own error and never spoils
its neighbours'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.serving.predictor import Prediction, Predictor


@dataclass
class _Waiting:
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[Prediction]


class MicroBatcher:
    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.observe = observe or (lambda rows: None)
        self._waiting: list[_Waiting] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None

    async def predict(self, columns: dict[str, list[Any]], rows: int) -> Prediction:
        """The prediction for one request's rows, made together with whoever else is waiting."""
        if rows >= self.max_batch_size:  # already a full batch: no reason to wait
            prediction = self._predict_alone(columns)
            self.observe(rows)
            return prediction
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        if self._rows + rows > self.max_batch_size:
            self._cut()
        self._waiting.append(_Waiting(columns, rows, future))
        self._rows += rows
        if self._rows >= self.max_batch_size:
            self._cut()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.max_wait_s, self._cut)
                if self.max_wait_s > 0
                else loop.call_soon(self._cut)
            )
        return await future

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._rows = self._waiting, [], 0
        if waiting:
            self._answer(waiting)

    def _answer(self, waiting: list[_Waiting]) -> None:
        rows = sum(item.rows for item in waiting)
        self.observe(rows)
        if len(waiting) == 1:
            self._settle(waiting[0], lambda: self._predict_alone(waiting[0].columns))
            return
        try:
            prediction = self._predict_alone(_merge([item.columns for item in waiting]))
        except InvalidInput:  # someone's input is bad: find out whose, one by one
            for item in waiting:
                self._settle(item, lambda item=item: self._predict_alone(item.columns))  # type: ignore[misc]
            return
        except Exception as exc:
            for item in waiting:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in waiting:
            if not item.future.done():
                item.future.set_result(prediction.slice(start, start + item.rows))
            start += item.rows

    def _predict_alone(self, columns: dict[str, list[Any]]) -> Prediction:
        return self.predictor.predict(columns)

    @staticmethod
    def _settle(item: _Waiting, compute: Callable[[], Prediction]) -> None:
        if item.future.done():  # the client went away
            return
        try:
            item.future.set_result(compute())
        except Exception as exc:
            item.future.set_exception(exc)


def _merge(requests: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """One dict of columns from several; a column missing from a request is filled with None
    so the signature check names it (and the one-by-one pass then blames the right request)."""
    names: dict[str, None] = {}
    for columns in requests:
        names.update(dict.fromkeys(columns))
    merged: dict[str, list[Any]] = {name: [] for name in names}
    for columns in requests:
        rows = len(next(iter(columns.values()))) if columns else 0
        for name in names:
            values = columns.get(name)
            merged[name].extend(values if values is not None else [None] * rows)
    return merged
