"""Request ids that carry the time they were made: the UUIDv7 layout (RFC 9562, section 5.7).

    tttttttt tttt 7rrr Vrrr rrrrrrrrrrrr     (32 hex digits, as `uuid.UUID.hex` writes them)
    t: 48-bit Unix time in milliseconds, big-endian; 7: the version; V: the variant (10xx);
    r: 74 random bits (from the OS's CSPRNG, as uuid4's)

The server makes one for every request that does not bring its own `X-Request-Id`. Because the
id starts with its time, a lookup by request id can go straight to the prediction log's
partition of that hour instead of reading every file (`shipyard.predictions.query.find`).
The text stays a 32-digit lowercase hex UUID, parseable by `uuid.UUID` (Python 3.11 has no
`uuid.uuid7`; 3.14's writes the same layout). Ids sort by the millisecond they were made in;
within one millisecond their order is random (no counter: no state shared between workers).

An id a client sent is kept as it is; it may or may not be in this layout, so `made_at` only
gives a hint where to look first, never a reason to stop looking.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

_VERSION = 7
_VARIANT = 0b10
_RANDOM_A_BITS = 12
_RANDOM_B_BITS = 62
_HEX = re.compile(r"^[0-9a-fA-F]{32}$")


def new_request_id(now_ms: int | None = None) -> str:
    """A fresh id in the UUIDv7 layout, as 32 lowercase hex digits; `now_ms` (Unix
    milliseconds) defaults to the clock."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"a UUIDv7 time is 0 to 2**48 - 1 Unix milliseconds; got {millis}")
    random = int.from_bytes(os.urandom(10))  # 80 bits, 74 of them used
    random_a = random >> (80 - _RANDOM_A_BITS)
    random_b = random & ((1 << _RANDOM_B_BITS) - 1)
    value = (
        millis << 80
        | _VERSION << 76
        | random_a << 64
        | _VARIANT << 62
        | random_b
    )  # fmt: skip
    return f"{value:032x}"


def made_at(request_id: str) -> datetime | None:
    """When an id in the UUIDv7 layout was made (to the millisecond, UTC); None for any other
    text (a client's own id, a uuid4, ...). With or without the dashes of the canonical form."""
    text = request_id
    if len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23)):
        text = text.replace("-", "")
    if not _HEX.match(text):
        return None
    value = int(text, 16)
    if (value >> 76) & 0xF != _VERSION or (value >> 62) & 0b11 != _VARIANT:
        return None
    return datetime.fromtimestamp((value >> 80) / 1000, UTC)


__all__ = ["made_at", "new_request_id"]
