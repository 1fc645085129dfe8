"""What a SIGKILLed worker loses: never more than the documented window (docs/predictions.md).

A real subprocess appends records and stores, after each `append` returns, how many it has
appended in a memory-mapped counter that outlives it. The test kills it with SIGKILL, reads
every finished file back and compares. The documented bound:

    lost <= min(max_pending, records appended in the last max(S, W) + W seconds)

with S = flush_seconds and W the longest a write takes.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from predictions_helpers import part_files, wait_until

from shipyard.predictions.parquet import PartitionedFolder

HERE = Path(__file__).parent
# W, generously: one write of a few thousand small records takes milliseconds; a loaded CI
# machine can stall a thread for a while. Only used for the time bound.
WRITE_SLACK_S = 1.0


def _start(
    folder: Path,
    counter: Path,
    flush_rows: int,
    flush_seconds: float,
    max_pending: int,
    rate: float,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "appender.py"), str(folder), str(counter),
         str(flush_rows), str(flush_seconds), str(max_pending), str(rate)],
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _appended(counter: Path) -> int:
    if not counter.exists() or counter.stat().st_size < 8:
        return 0
    return int(struct.unpack("<q", counter.read_bytes()[:8])[0])


def _kill(process: subprocess.Popen[bytes]) -> float:
    killed_at = time.time()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return killed_at


def _read_back(folder: Path) -> dict[int, float]:
    """Request id -> time of every record in a finished file; each file reads whole."""
    found: dict[int, float] = {}
    for path in part_files(folder):
        table = pq.read_table(path, columns=["request_id", "time"])
        times = table.column("time").cast("int64").to_pylist()
        for request_id, micros in zip(table.column("request_id").to_pylist(), times, strict=True):
            assert int(request_id) not in found, f"record {request_id} written twice"
            found[int(request_id)] = micros / 1e6
    return found


def test_a_killed_worker_loses_at_most_max_pending_records(tmp_path: Path) -> None:
    """The count bound: appends as fast as possible (the writer's backpressure paces them)."""
    folder, counter = tmp_path / "log", tmp_path / "counter"
    max_pending = 600
    process = _start(folder, counter, flush_rows=150, flush_seconds=30, max_pending=max_pending,
                     rate=0)  # fmt: skip
    try:
        wait_until(lambda: _appended(counter) >= 20_000, timeout=120, every=0.01)
    finally:
        _kill(process)
    appended = _appended(counter)
    found = _read_back(folder)

    # `append` of record `appended` may have returned without the counter being stored yet.
    assert set(found) <= set(range(appended + 1))
    lost = len(set(range(appended)) - set(found))
    assert lost <= max_pending, f"lost {lost} of {appended}; the bound is {max_pending}"
    assert len(found) >= appended - max_pending
    # A file cut short by the kill (a hidden .tmp) is invisible to readers.
    assert PartitionedFolder(folder).read().num_rows == len(found)


def test_a_killed_worker_loses_at_most_the_last_flush_seconds_of_records(tmp_path: Path) -> None:
    """The time bound: at a steady rate, with only the time trigger (flush_rows out of reach),
    every record appended more than S + 2W before the kill is on disk."""
    folder, counter = tmp_path / "log", tmp_path / "counter"
    flush_seconds, rate = 0.3, 1000.0
    process = _start(folder, counter, flush_rows=1_000_000, flush_seconds=flush_seconds,
                     max_pending=1_000_000, rate=rate)  # fmt: skip
    try:
        wait_until(lambda: _appended(counter) >= 2500, timeout=120, every=0.01)
    finally:
        killed_at = _kill(process)
    appended = _appended(counter)
    found = _read_back(folder)

    assert set(found) <= set(range(appended + 1))
    missing = sorted(set(range(appended)) - set(found))
    assert found, "nothing was written in 2.5 s with flush_seconds=0.3"
    # Missing records are the newest: everything before the first missing one is there.
    if missing:
        assert all(i in found for i in range(missing[0]))
    window = flush_seconds + 2 * WRITE_SLACK_S
    # Records are appended at `rate`: those in the window number about rate * window.
    assert len(missing) <= rate * window + 100, (len(missing), appended)
    if missing and missing[0] > 0:
        # The first record lost came after the last one kept: it was appended after this.
        last_kept = found[missing[0] - 1]
        assert last_kept >= killed_at - window, (
            f"records appended {killed_at - last_kept:.2f} s before the kill were lost; "
            f"the bound is {window:.2f} s"
        )
