"""What every prediction log writer shares: its counters and the error it raises.

Counters are plain integers read without a lock; `queue_depth` is what the metrics endpoint
exports as a gauge, `dropped` must stay 0 (see docs/predictions.md, "Backpressure").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shipyard.errors import InvalidInput, ShipyardError


class PredictionLogError(ShipyardError):
    """The prediction log could not take or write records (closed, storage failing)."""


@dataclass(frozen=True)
class LogStats:
    """A snapshot of a writer's counters since it was opened."""

    appended: int  # records accepted by `append`
    written: int  # records in finished files (Parquet) or acknowledged by the broker (Kafka)
    dropped: int  # records refused after waiting `block_seconds` for room (storage too slow)
    invalid: int  # records that could not be encoded (a field of the wrong type); logged
    blocked: int  # `append` calls that had to wait for room
    errors: int  # failed writes (retried; the records stay queued)
    files: int  # files written (Parquet) or 0 (Kafka)
    queue_depth: int  # records accepted and not yet written: what a SIGKILL now would lose
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_int(name: str, value: Any, minimum: int) -> None:
    """A writer option that must be an integer of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{name} must be an integer >= {minimum}; got {value!r}")


def check_number(name: str, value: Any, *, minimum: float, inclusive: bool = True) -> None:
    """A writer option that must be a number above (or at) `minimum`."""
    sign = ">=" if inclusive else ">"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or value < minimum or (not inclusive and value == minimum):
        raise InvalidInput(f"{name} must be a number {sign} {minimum:g}; got {value!r}")
