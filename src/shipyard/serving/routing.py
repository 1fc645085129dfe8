"""Which version answers a request: the seam between the server and a release.

The server knows nothing of rollouts. It asks its `Router` (the release layer's, injected
by `shipyard serve`) for a `Route` per request: the served version that answers, the arm to
log it under, optionally a version that gets a mirrored copy off the response path (shadow),
and the post-processors a feature flag switched off. Without a router, or when it returns
None, the model's default version answers under the arm "default".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shipyard.serving.app import ServedModel

PREVIEW_HEADER = "x-shipyard-preview"
PREVIEW_PREFIX = "/preview"


@dataclass(frozen=True, slots=True)
class Route:
    served: ServedModel
    arm: str
    shadow: ServedModel | None = None  # gets a copy after the answer is sent
    shadow_arm: str = "shadow"
    fired: tuple[str, ...] = ()  # feature flag rules that decided this route
    hooks_off: frozenset[str] = frozenset()  # post-processors switched off for this request


class Router(Protocol):
    def start(self, prepare: Any, defaults: Mapping[str, ServedModel], metrics: Any) -> None:
        """Follow the release state from now on. `defaults`: the served models by name;
        `prepare(predictor)` warms another version of one and returns its `ServedModel`
        (blocking: the router loads versions in its own thread and exposes a new state only
        once everything it needs is prepared). `metrics`: the app's `ServingMetrics`."""
        ...

    def route(
        self, served: ServedModel, headers: Mapping[str, str], data: Any, preview: bool
    ) -> Route | None:
        """The route of one request for `served` (the model's default version)."""
        ...

    def version(self, name: str, version: int) -> ServedModel | None:
        """A loaded version of model `name`, for requests that name a version."""
        ...

    def close(self) -> None: ...


def first_value(data: Any, field: str) -> Any:
    """The value of input `field` in the first row of a decoded payload, or None: the routing
    key and flag attributes of a request (a multi-row request is routed as a whole)."""
    if isinstance(data, Mapping):
        column = data.get(field)
        if isinstance(column, list | tuple):
            return column[0] if column else None
        if column is not None and hasattr(column, "__getitem__") and hasattr(column, "__len__"):
            return column[0] if len(column) else None
        return column
    return None


def wants_preview(headers: Mapping[str, str]) -> bool:
    value = headers.get(PREVIEW_HEADER)
    return value is not None and value.lower() in ("1", "true", "yes")
