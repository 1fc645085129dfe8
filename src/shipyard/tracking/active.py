"""The run that module-level logging calls go to: `shipyard.tracking.log_metric(...)`.

Kept apart from `runs` so that code logging from inside a pipeline step (which logs to its step's
context, collected by the driver) imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

from shipyard.errors import InvalidInput


class RunLogger(Protocol):
    """What receives logging calls: a `Run`, or a pipeline step's context."""

    def log_metric(self, key: str, value: float, step: int | None = None) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_param(self, key: str, value: Any) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tag(self, key: str, value: Any) -> None: ...


_active: ContextVar[RunLogger | None] = ContextVar("shipyard_active_run", default=None)


def current_logger() -> RunLogger | None:
    return _active.get()


def activate(logger: RunLogger | None) -> Token[RunLogger | None]:
    return _active.set(logger)


def deactivate(token: Token[RunLogger | None]) -> None:
    try:
        _active.reset(token)
    except ValueError:  # reset from another context than the one that set it
        _active.set(None)


def _require_active() -> RunLogger:
    logger = _active.get()
    if logger is None:
        raise InvalidInput(
            "no active run: wrap the code in `with shipyard.tracking.start_run():` or run it as "
            "a pipeline step"
        )
    return logger


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log to the active run (the one started by `start_run`, or the running pipeline step)."""
    _require_active().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _require_active().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)
