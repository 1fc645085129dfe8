"""Server-made request ids: the UUIDv7 layout, whose first 48 bits say when it was made."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shipyard.serving.request_ids import made_at, new_request_id

MAY_FIRST = 1_714_568_400_123  # 2024-05-01T13:00:00.123Z, in milliseconds


def test_an_id_is_a_version_7_uuid_that_carries_its_millisecond() -> None:
    made = new_request_id(MAY_FIRST)
    parsed = uuid.UUID(made)
    assert made == parsed.hex and len(made) == 32  # the text the server always sent
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert made_at(made) == datetime(2024, 5, 1, 13, 0, 0, 123000, tzinfo=UTC)
    assert made_at(str(parsed)) == made_at(made)  # the canonical form with dashes too
    assert made[:12] == f"{MAY_FIRST:012x}"


def test_ids_differ_and_sort_by_the_millisecond_they_were_made() -> None:
    same_moment = {new_request_id(MAY_FIRST) for _ in range(1000)}
    assert len(same_moment) == 1000  # 74 random bits each
    in_order = [new_request_id(MAY_FIRST + step) for step in (1, 1000, 3_600_000)]
    assert sorted(in_order) == in_order and min(in_order) > max(same_moment)
    now = made_at(new_request_id())
    assert now is not None and abs((datetime.now(UTC) - now).total_seconds()) < 60


@pytest.mark.parametrize(
    "other",
    [
        "68d213748a9145c698c7232574000697",  # a uuid4, as the server made before (fixed: the
        # parameter is part of the test id, which must be the same in every test worker)
        "req-7",
        "abc-123",
        "0" * 32,
        "g" * 32,
        "0x" + "7" * 30,
        "018f343d-8c80-7b62-8e01-f5f0a5a6731",  # one digit short
        "018f343d8c807b62-8e01-f5f0a5a67312a",  # dashes in the wrong places
        "",
    ],
)
def test_other_ids_have_no_time(other: str) -> None:
    assert made_at(other) is None


def test_a_time_out_of_the_layout_is_refused() -> None:
    for millis in (-1, 1 << 48):
        with pytest.raises(ValueError, match="a UUIDv7 time is 0 to 2\\*\\*48 - 1"):
            new_request_id(millis)
