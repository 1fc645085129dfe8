"""`ParquetLog`: the embedded prediction log, written off the request path by one thread.

`append` puts the record in an in-memory queue and returns (no I/O, O(1)); a daemon thread
takes everything queued when `flush_rows` records are waiting or the oldest has waited
`flush_seconds`, and writes one Parquet file per (model, hour) in the batch (see `parquet`).
`close` (also run at interpreter exit) writes what is queued and stops the thread.

The window a SIGKILL can lose is bounded twice over (docs/predictions.md derives both):

- by count: `append` never lets more than `max_pending` records be accepted and unwritten at
  once, so a killed worker loses at most `max_pending` records, whatever the rate;
- by time: a record is in a finished file at most `max(S, W) + W` seconds after `append`
  returned (S = flush_seconds, W = the longest a write takes), so a killed worker loses at most
  the records appended in that last window.

Backpressure: when `max_pending` records are waiting (storage slower than traffic), `append`
blocks until the writer makes room, for at most `block_seconds`; only then is the record
dropped, counted in `stats.dropped` and logged. With a working disk `dropped` stays 0.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.predictions.parquet import (
    PartitionedFolder,
    encode,
    group_by_partition,
    writer_name,
)
from shipyard.predictions.sink import LogStats, PredictionLogError, check_int, check_number

if TYPE_CHECKING:
    from shipyard.serving.record import PredictionRecord

log = logging.getLogger("shipyard.predictions")

MAX_PENDING_FLUSHES = 4  # default max_pending: this many flush_rows batches
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 5.0
WARN_EVERY_S = 10.0


class ParquetLog:
    """Prediction records to partitioned Parquet files by a background thread."""

    def __init__(
        self,
        folder: str | Path,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_pending: int | None = None,
        block_seconds: float = 5.0,
        worker: str | None = None,
        storage_options: dict[str, Any] | None = None,
        fsync: bool = False,
    ) -> None:
        check_int("flush_rows", flush_rows, 1)
        check_number("flush_seconds", flush_seconds, minimum=0.0, inclusive=False)
        if max_pending is None:
            max_pending = MAX_PENDING_FLUSHES * flush_rows
        check_int("max_pending", max_pending, flush_rows)
        check_number("block_seconds", block_seconds, minimum=0.0)
        self.folder = PartitionedFolder(folder, storage_options, fsync=fsync)
        self.flush_rows = flush_rows
        self.flush_seconds = float(flush_seconds)
        self.max_pending = max_pending
        self.block_seconds = float(block_seconds)
        self._name = writer_name(worker)
        self._sequence = 0

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here for records
        self._room = threading.Condition(self._lock)  # appenders wait here for room
        self._done_cond = threading.Condition(self._lock)  # flush() waits here
        self._queue: deque[PredictionRecord] = deque()
        self._oldest = 0.0  # time.monotonic() when the oldest queued record arrived
        self._pending = 0  # accepted and not yet written: queued + the batch being written
        self._flush_requested = False
        self._closing = False
        self._deadline = float("inf")  # when close() stops retrying a failing write
        self._stopped = False
        self._abandoned = 0  # records close() gave up on (storage failing past its timeout)
        self._last_warning = 0.0

        self._appended = 0
        self._written = 0
        self._dropped = 0
        self._invalid = 0
        self._blocked = 0
        self._errors = 0
        self._files = 0
        self._last_error: str | None = None

        self._thread = threading.Thread(
            target=self._run, name=f"shipyard-prediction-log-{self._name}", daemon=True
        )
        self._thread.start()
        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"ParquetLog({self.folder.url!r})"

    def __enter__(self) -> ParquetLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request path -------------------------------------------------------------------

    def append(self, record: PredictionRecord) -> None:
        """Queue one record; returns at once unless `max_pending` records are still unwritten."""
        with self._lock:
            if self._stopped:
                raise PredictionLogError(
                    f"the prediction log at {self.folder.url} is closed; "
                    "open a new one to keep logging"
                )
            if self._pending >= self.max_pending and not self._wait_for_room():
                return
            self._queue.append(record)
            self._pending += 1
            self._appended += 1
            if len(self._queue) == 1:
                self._oldest = time.monotonic()
                self._work.notify()
            elif len(self._queue) == self.flush_rows:
                self._work.notify()

    def _wait_for_room(self) -> bool:
        """Called with the lock held: wait up to block_seconds; False when the record is dropped."""
        self._blocked += 1
        deadline = time.monotonic() + self.block_seconds
        while self._pending >= self.max_pending and not self._stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._dropped += 1
                now = time.monotonic()
                if now - self._last_warning > WARN_EVERY_S:
                    self._last_warning = now
                    log.error(
                        "prediction log %s: %d records waiting for storage for over %.1f s; "
                        "dropped %d so far (last write error: %s)",
                        self.folder.url, self._pending, self.block_seconds, self._dropped,
                        self._last_error,
                    )  # fmt: skip
                return False
            self._room.wait(remaining)
        if self._stopped:
            raise PredictionLogError(f"the prediction log at {self.folder.url} is closed")
        return True

    # -- counters ---------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Records accepted and not yet in a finished file."""
        return self._pending

    @property
    def stats(self) -> LogStats:
        with self._lock:
            return LogStats(
                appended=self._appended,
                written=self._written,
                dropped=self._dropped,
                invalid=self._invalid,
                blocked=self._blocked,
                errors=self._errors,
                files=self._files,
                queue_depth=self._pending,
                last_error=self._last_error,
            )

    # -- flushing and closing ----------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every record appended before this call is in a finished file."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._appended
            if self._processed() >= target:
                return
            self._flush_requested = True
            self._work.notify()
            while self._processed() < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped:
                    raise PredictionLogError(
                        f"prediction log {self.folder.url}: {target - self._processed()} records "
                        f"not written within {timeout} s (last write error: {self._last_error})"
                    )
                self._done_cond.wait(remaining)

    def _processed(self) -> int:
        return self._written + self._invalid + self._abandoned

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer; idempotent.

        Raises PredictionLogError naming how many records were not written when storage kept
        failing (or the writer stayed blocked in a write) for `timeout` seconds.
        """
        atexit.unregister(self._close_at_exit)
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
            self._work.notify_all()
            self._room.notify_all()
        self._thread.join(timeout + 1.0)
        with self._lock:
            unwritten = self._pending + self._abandoned
            if self._thread.is_alive() or unwritten:
                raise PredictionLogError(
                    f"prediction log {self.folder.url}: {unwritten} records could not be written "
                    f"within {timeout} s (last write error: {self._last_error})"
                )

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except PredictionLogError as exc:
            log.error("%s", exc)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write_batch(batch)
        except BaseException:  # a bug: say so, and refuse records instead of hoarding them
            log.exception("prediction log %s: the writer thread failed", self.folder.url)
            raise
        finally:
            with self._lock:
                self._stopped = True
                self._room.notify_all()
                self._done_cond.notify_all()

    def _next_batch(self) -> list[PredictionRecord] | None:
        """Wait until a flush is due; everything queued then, or None once closed and empty."""
        with self._lock:
            while True:
                if self._queue:
                    waited = time.monotonic() - self._oldest
                    if (
                        len(self._queue) >= self.flush_rows
                        or waited >= self.flush_seconds
                        or self._flush_requested
                        or self._closing
                    ):
                        break
                    self._work.wait(self.flush_seconds - waited)
                elif self._closing:
                    self._stopped = True  # under the same lock: no append slips in after this
                    return None
                else:
                    self._flush_requested = False
                    self._work.wait()
            batch = list(self._queue)
            self._queue.clear()
            self._flush_requested = False
            return batch

    def _write_batch(self, batch: list[PredictionRecord]) -> None:
        groups = list(group_by_partition(batch).items())
        retry = RETRY_FIRST_S
        while groups:
            (model, hour), records = groups[0]
            try:
                table, bad = encode(records)
                if table is not None:
                    self._sequence += 1
                    name = f"part-{self._name}-{self._sequence:06d}.parquet"
                    self.folder.write(model, hour, table, name)
            except Exception as exc:
                if not self._failed(exc, records, groups, retry):
                    return
                retry = min(retry * 2, RETRY_MAX_S)
                continue
            groups.pop(0)
            with self._lock:
                self._written += len(records) - len(bad)
                self._invalid += len(bad)
                self._files += table is not None
                self._pending -= len(records)
                self._room.notify_all()
                self._done_cond.notify_all()
            for record, problem in bad:
                log.error(
                    "prediction log %s: record %r cannot be written (%s); skipped",
                    self.folder.url, getattr(record, "request_id", "?"), problem,
                )  # fmt: skip

    def _failed(
        self,
        exc: Exception,
        records: list[PredictionRecord],
        groups: list[Any],
        retry: float,
    ) -> bool:
        """Count a failed write and wait before the retry; False when close() gave up on it."""
        message = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._errors += 1
            self._last_error = message
            if self._closing and time.monotonic() >= self._deadline:
                lost = sum(len(group) for _, group in groups)
                self._abandoned += lost
                self._pending -= lost
                self._done_cond.notify_all()
                log.error(
                    "prediction log %s: gave up on %d records at close: %s",
                    self.folder.url, lost, message,
                )  # fmt: skip
                return False
        log.warning(
            "prediction log %s: writing %d records failed (%s); retrying in %.2f s",
            self.folder.url, len(records), message, retry,
        )  # fmt: skip
        with self._lock:
            wait = min(retry, max(self._deadline - time.monotonic(), 0.0))
            self._work.wait(wait)
        return True
