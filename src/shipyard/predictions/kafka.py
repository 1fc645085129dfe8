"""The prediction log at scale: records to a Kafka topic, and landed from it to Parquet.

`KafkaLog` hands each record to librdkafka's in-memory queue (`produce` never waits for the
network) with `acks=all` and idempotence on, so a record the broker acknowledged is on every
in-sync replica exactly once. A background thread serves delivery reports. The key is the
request id, the value the record as JSON (the same fields as the Parquet columns).

`land` consumes the topic into the same Parquet layout as `ParquetLog` writes, and commits the
consumer group's offsets only after the files are written: a crash between the two writes those
records again on the next run (at-least-once), never skips them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.predictions.parquet import (
    PartitionedFolder,
    encode,
    group_by_partition,
    writer_name,
)
from shipyard.predictions.sink import LogStats, PredictionLogError, check_int, check_number

if TYPE_CHECKING:
    from confluent_kafka import Message

    from shipyard.serving.record import PredictionRecord

log = logging.getLogger("shipyard.predictions")

SCHEME = "kafka://"
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
_BROKER = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
KAFKA_URL_FORMS = "kafka://HOST:PORT/TOPIC (or kafka://HOST:PORT,HOST:PORT/TOPIC)"
JOIN_TIMEOUT_S = 60.0


def parse_kafka_url(url: str, *, what: str = "Kafka URL") -> tuple[str, str]:
    """`kafka://host:port[,host:port...]/topic` -> (bootstrap servers, topic)."""
    if not isinstance(url, str) or not url.startswith(SCHEME):
        raise InvalidInput(f"{what} {url!r} is not a Kafka URL; expected {KAFKA_URL_FORMS}")
    bootstrap, _, topic = url.removeprefix(SCHEME).partition("/")
    if not all(_BROKER.match(broker) for broker in bootstrap.split(",")):
        raise InvalidInput(
            f"{what} {url!r} needs the brokers as HOST:PORT before the topic; "
            f"expected {KAFKA_URL_FORMS}"
        )
    if not _TOPIC.match(topic):
        raise InvalidInput(
            f"{what} {url!r} has no valid topic (1-249 letters, digits, '.', '_', '-') after "
            f"the brokers; expected {KAFKA_URL_FORMS}"
        )
    return bootstrap, topic


def record_to_json(record: PredictionRecord) -> bytes:
    return json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False).encode()


def record_from_json(value: bytes | str) -> PredictionRecord:
    """A record from a message value; ValueError naming what is wrong when it is not one."""
    from shipyard.serving.record import PredictionRecord  # serving's package imports pandas

    document = json.loads(value)
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, got {type(document).__name__}")
    known = set(PredictionRecord.__slots__)
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    try:
        return PredictionRecord(**document)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


class KafkaLog:
    """Prediction records to a Kafka topic; `append` returns once librdkafka has queued it."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        linger_ms: float = 5.0,
        max_pending: int = 100_000,
        block_seconds: float = 5.0,
        config: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        check_int("max_pending", max_pending, 1)
        check_number("block_seconds", block_seconds, minimum=0.0)
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_pending = max_pending
        self.block_seconds = float(block_seconds)
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": max_pending,
            "client.id": f"shipyard-prediction-log-{writer_name()}",
            **(config or {}),
        }
        try:
            self._producer = Producer(settings)
        except Exception as exc:  # KafkaException: a bad setting
            raise InvalidInput(f"cannot create a Kafka producer for {bootstrap}: {exc}") from None
        self._lock = threading.Lock()
        self._appended = 0
        self._written = 0
        self._dropped = 0
        self._invalid = 0
        self._blocked = 0
        self._errors = 0
        self._last_error: str | None = None
        self._closed = False
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name=f"shipyard-prediction-log-kafka-{topic}", daemon=True
        )
        self._poller.start()
        import atexit

        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"KafkaLog({self.bootstrap!r}, {self.topic!r})"

    def __enter__(self) -> KafkaLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, record: PredictionRecord) -> None:
        if self._closed:
            raise PredictionLogError(
                f"the prediction log on kafka://{self.bootstrap}/{self.topic} is closed"
            )
        try:
            value = record_to_json(record)
            key = record.request_id.encode()
        except (TypeError, ValueError, AttributeError) as exc:
            with self._lock:
                self._invalid += 1
            log.error("prediction log: record cannot be encoded (%s); skipped", exc)
            return
        deadline: float | None = None
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, on_delivery=self._delivered
                )
            except BufferError:  # max_pending records not yet acknowledged
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.block_seconds
                    with self._lock:
                        self._blocked += 1
                if now >= deadline:
                    with self._lock:
                        self._dropped += 1
                    log.error(
                        "prediction log kafka://%s/%s: %d records unacknowledged for %.1f s; "
                        "record dropped",
                        self.bootstrap, self.topic, len(self._producer), self.block_seconds,
                    )  # fmt: skip
                    return
                time.sleep(0.005)
                continue
            with self._lock:
                self._appended += 1
            return

    def _delivered(self, error: Any, message: Message) -> None:
        with self._lock:
            if error is None:
                self._written += 1
            else:  # retried by librdkafka until message.timeout.ms: this record is lost
                self._errors += 1
                self._dropped += 1
                self._last_error = str(error)
        if error is not None:
            log.error("prediction log kafka://%s/%s: delivery failed: %s", self.bootstrap,
                      self.topic, error)  # fmt: skip

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    @property
    def queue_depth(self) -> int:
        """Records queued or in flight, not yet acknowledged by the broker."""
        return len(self._producer)

    @property
    def stats(self) -> LogStats:
        depth = len(self._producer)
        with self._lock:
            return LogStats(
                appended=self._appended,
                written=self._written,
                dropped=self._dropped,
                invalid=self._invalid,
                blocked=self._blocked,
                errors=self._errors,
                files=0,
                queue_depth=depth,
                last_error=self._last_error,
            )

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every record appended so far is acknowledged by the broker."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PredictionLogError(
                f"prediction log kafka://{self.bootstrap}/{self.topic}: {remaining} records "
                f"not acknowledged within {timeout} s (last error: {self._last_error})"
            )

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (waiting up to `timeout`), then stop; idempotent."""
        import atexit

        atexit.unregister(self._close_at_exit)
        self._closed = True
        self._stop.set()
        self._poller.join()
        self.flush(timeout)

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except PredictionLogError as exc:
            log.error("%s", exc)


# -- landing the topic to Parquet ------------------------------------------------------------


@dataclass
class LandReport:
    """What one `land` call wrote."""

    source: str
    folder: str
    records: int = 0
    files: int = 0
    invalid: int = 0  # messages that are not prediction records (logged, offsets committed)
    commits: int = 0
    problems: list[str] = field(default_factory=list)  # the first few invalid messages


def land(
    source: str,
    folder: str | Path,
    *,
    group: str = "shipyard-land",
    flush_rows: int = 1000,
    flush_seconds: float = 1.0,
    idle_seconds: float | None = 10.0,
    max_records: int | None = None,
    storage_options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> LandReport:
    """Consume `kafka://host:port/topic` into partitioned Parquet files under `folder`.

    Files are written every `flush_rows` records or `flush_seconds`, and the group's offsets
    are committed after each write. Stops after `idle_seconds` without a message (None: runs
    until interrupted) or once `max_records` messages were read.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException

    bootstrap, topic = parse_kafka_url(source, what="--from")
    _check_number("flush_rows", flush_rows, integer=True, minimum=1)
    _check_number("flush_seconds", flush_seconds, minimum=0, above=True)
    if idle_seconds is not None:
        _check_number("idle_seconds", idle_seconds, minimum=0)
    if max_records is not None:
        _check_number("max_records", max_records, integer=True, minimum=1)
    target = PartitionedFolder(folder, storage_options)
    name = writer_name(f"land-{topic}")
    report = LandReport(source, target.url)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **(config or {}),
        }
    )
    assigned: list[float] = []
    consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.append(time.monotonic()))
    started = time.monotonic()
    last_message = started
    batch: list[PredictionRecord] = []
    uncommitted = 0  # messages read since the last commit
    first_at = 0.0
    sequence = 0
    try:
        while True:
            want = flush_rows
            if max_records is not None:
                want = min(want, max_records - report.records - report.invalid - len(batch))
            messages = consumer.consume(num_messages=max(want, 1), timeout=min(flush_seconds, 0.2))
            now = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise PredictionLogError(f"consuming {source}: {error}")
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consuming %s: %s", source, error)
                    continue
                if not batch:
                    first_at = now
                uncommitted += 1
                try:
                    batch.append(record_from_json(message.value() or b""))
                except ValueError as exc:
                    where = f"partition {message.partition()} offset {message.offset()}"
                    _invalid(report, source, f"{where}: {exc}")
            if messages:
                last_message = now
            if not assigned:
                last_message = now
                if now - started > JOIN_TIMEOUT_S:
                    raise PredictionLogError(
                        f"no partition of {topic!r} was assigned to group {group!r} by "
                        f"{bootstrap} within {JOIN_TIMEOUT_S:.0f} s; is the broker reachable?"
                    )
            read = report.records + report.invalid + len(batch)
            finished = max_records is not None and read >= max_records
            idle = idle_seconds is not None and now - last_message >= idle_seconds
            due = batch and (len(batch) >= flush_rows or now - first_at >= flush_seconds)
            if due or ((finished or idle) and uncommitted):
                for (model, hour), records in group_by_partition(batch).items():
                    table, bad = encode(records)
                    for record, problem in bad:
                        _invalid(report, source, f"request {record.request_id!r}: {problem}")
                    if table is not None:
                        sequence += 1
                        file = f"part-{name}-{sequence:06d}.parquet"
                        target.write(model, hour, table, file)
                        report.files += 1
                        report.records += table.num_rows
                if progress is not None:
                    progress(len(batch))
                batch = []
                consumer.commit(asynchronous=False)
                report.commits += 1
                uncommitted = 0
            if finished or idle:
                return report
    except KafkaException as exc:
        raise PredictionLogError(f"consuming {source}: {exc}") from None
    except OSError as exc:
        raise PredictionLogError(
            f"writing to {target.url}: {exc}; the consumer group's offsets were not committed, "
            "so the next run lands these records again"
        ) from None
    finally:
        consumer.close()


def _invalid(report: LandReport, source: str, problem: str) -> None:
    report.invalid += 1
    log.error("consuming %s: not a prediction record: %s", source, problem)
    if len(report.problems) < 10:
        report.problems.append(problem)


def _check_number(
    name: str, value: Any, *, integer: bool = False, minimum: float = 0, above: bool = False
) -> None:
    kinds = int if integer else int | float
    wrong = isinstance(value, bool) or not isinstance(value, kinds)
    if wrong or value < minimum or (above and value == minimum):
        sign = ">" if above else ">="
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{name} must be {kind} {sign} {minimum}; got {value!r}")
