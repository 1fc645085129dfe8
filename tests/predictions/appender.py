"""A worker that appends prediction records to a ParquetLog until it is killed.

    python appender.py FOLDER COUNTER FLUSH_ROWS FLUSH_SECONDS MAX_PENDING RATE [LIMIT]

Record i has request_id str(i) and `time` = when it was appended. After each `append` returns,
the number of appended records is stored in the 8-byte file COUNTER (memory-mapped: what the
process stored survives its SIGKILL), so the test knows exactly what the log had accepted.
RATE is records per second (0: as fast as possible). With LIMIT, stops after LIMIT records and
exits without calling close(): the atexit hook must write them.
"""

from __future__ import annotations

import mmap
import struct
import sys
import time
from pathlib import Path

from shipyard.predictions.writer import ParquetLog
from shipyard.serving.record import PredictionRecord


def main() -> None:
    folder, counter_path = sys.argv[1], Path(sys.argv[2])
    flush_rows, flush_seconds = int(sys.argv[3]), float(sys.argv[4])
    max_pending, rate = int(sys.argv[5]), float(sys.argv[6])
    limit = int(sys.argv[7]) if len(sys.argv) > 7 else None
    counter_path.write_bytes(b"\0" * 8)
    with counter_path.open("r+b") as handle:
        counter = mmap.mmap(handle.fileno(), 8)
    log = ParquetLog(
        folder, flush_rows=flush_rows, flush_seconds=flush_seconds, max_pending=max_pending
    )
    started = time.monotonic()
    i = 0
    while limit is None or i < limit:
        if rate > 0:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        log.append(
            PredictionRecord(
                request_id=str(i),
                time=time.time(),
                model="churn",
                version=1,
                protocol="predict",
                inputs='{"age": 40}',
                outputs='{"predictions": [0]}',
                latency_ms=0.5,
            )
        )
        i += 1
        counter[:8] = struct.pack("<q", i)


if __name__ == "__main__":
    main()
