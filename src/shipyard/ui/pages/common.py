"""What every page shares: pagination, text formatting, and input checks that fail with 422."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.monitoring.report import format_number, format_percent, format_time

PAGE_SIZE = 50
MAX_PAGE = 100_000


def when(value: Any) -> str:
    """A time as people read it (UTC as stored); 'n/a' when missing."""
    return format_time(value)


def number(value: Any) -> str:
    return format_number(value)


def percent(value: Any) -> str:
    return format_percent(value)


def exact_percent(value: Any) -> str:
    """A declared share (an SLO's objective) with the fewest digits that show it exactly:
    0.99 -> 99%, 0.999 -> 99.9%, 0.9995 -> 99.95%. Computed on the decimal text of the float,
    so 0.9995 is not shown as 99.94999999999999%."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(number):
        return "n/a"
    shown = (Decimal(repr(number)) * 100).normalize()
    return f"{shown:f}%"


def pretty_json(text: Any) -> str:
    """Logged JSON text indented for reading; anything unparsable as it is."""
    if text is None:
        return ""
    if isinstance(text, str):
        try:
            return json.dumps(json.loads(text), indent=2, sort_keys=True, default=str)
        except ValueError:
            return text
    return json.dumps(text, indent=2, sort_keys=True, default=str)


@dataclass(frozen=True)
class Pager:
    """One page of a longer list: which, how big, and whether there is more."""

    page: int
    size: int
    has_next: bool

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def page_number(value: Any) -> int:
    """A 1-based page number from the query string; InvalidInput (422) otherwise."""
    if value is None or value == "":
        return 1
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidInput(f"page must be a whole number from 1 to {MAX_PAGE}; got {text[:40]!r}")
    return int(text)


def slice_page(items: list[Any], page: int, size: int = PAGE_SIZE) -> tuple[list[Any], Pager]:
    """One page of a list already in memory (short lists: models, rollouts)."""
    start = (page - 1) * size
    return items[start : start + size], Pager(page, size, len(items) > start + size)


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO time (or a datetime-local field's value) as an aware UTC datetime; naive = UTC."""
    if value is None or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{what} must be a time like 2024-05-01T13:00 (ISO 8601, UTC); got {value[:40]!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def text_filter(value: str | None, what: str, limit: int = 200) -> str | None:
    """A free-text filter value (kept as a bound parameter, never spliced into SQL)."""
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise InvalidInput(f"{what} is at most {limit} characters; got {len(value)}")
    return value.strip()


def whole_number(value: str | None, what: str) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip().removeprefix("v")
    if not text.isdigit() or len(text) > 12:
        raise InvalidInput(f"{what} must be a whole number; got {value[:40]!r}")
    return int(text)
