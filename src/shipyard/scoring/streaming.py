"""Stream scoring: a Kafka consumer group that scores JSON records as they arrive.

    kafka://b/in --(consumer group)--> Predictor.predict --(idempotent producer)--> kafka://b/out
                                              |                                  \\-> kafka://b/errors
                                              \\-> prediction log (protocol "stream")

Each input record is one JSON object: one row for the model, optionally with an id field
(`id_field`) that is echoed in the output and not given to the model. Each output record is
JSON: the source coordinate (`source`, "topic/partition/offset", also the record's key), the
input's key, the id, the model and version, and the model's outputs (`prediction`, and
`filtered` with the rule's name when an output filter withheld the row). A record that cannot be
scored (not JSON, not an object, refused by the signature, a hook or the model) becomes an error
record with the reason and the input text, on the error topic when there is one, else on the
output topic; it never stops the consumer and is never dropped.

No record lost or scored twice, across restarts. The broker this is tested against (Tansu)
accepts Kafka transactions but shows the records of aborted transactions to read_committed
consumers, so transactions cannot keep a killed consumer's half-written batch out of the
output there. Instead:

- offsets are committed synchronously, and only once every output and error record of the
  batch has been acknowledged by the broker (acks=all, idempotent producer): a record whose
  offset is committed is in the output; nothing is lost;
- a restarted consumer (or whichever consumer the group gives the partition to next) resumes at
  the committed offset, and before it writes anything for a partition it reads the output and
  error topics back to find the highest source offset already there (see
  `shipyard.scoring.kafka`); records up to it were written by the consumer that stopped and are
  skipped, not scored and written again: nothing is written twice.

This holds as long as only this job's group writes the output (and error) topic's records for
its source topic, and a consumer that lost its partitions stops writing (a killed process does;
one that stalls past the session timeout and then wakes up is the one case it does not cover,
as with any consumer that is not fenced by a transaction).

SIGTERM and SIGINT stop the consumer after the batch in hand is written and committed.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.scoring.kafka import (
    PARTITION_EOF,
    StreamError,
    Topic,
    confluent,
    consumer_settings,
    parse_topic,
    partition_count,
    producer_settings,
    source_key,
    written_offsets,
)

if TYPE_CHECKING:
    from shipyard.project import Project
    from shipyard.serving.predictor import Predictor
    from shipyard.serving.record import PredictionSink

log = logging.getLogger("shipyard.scoring")

DEFAULT_BATCH_SIZE = 500
POLL_S = 0.5  # the longest a stop request or an idle timeout waits to be noticed
JOIN_WAIT_S = 60.0  # with an idle timeout: how long to wait for partitions, on top of it
FLUSH_TIMEOUT_S = 120.0
MAX_INPUT_TEXT = 10_000  # characters of a bad record's text kept in its error record
RESERVED = ("source", "key", "id", "model", "version")


@dataclass
class StreamStats:
    """What a stream run did, updated after every batch (`on_batch` sees it live)."""

    model: str = ""  # NAME@N being served
    group: str = ""
    consumed: int = 0  # records read and accounted for (scored, errors or skipped)
    scored: int = 0  # output records written with a prediction
    errors: int = 0  # error records written (bad JSON, refused by the signature, ...)
    skipped: int = 0  # found already written by a consumer that stopped: not written again
    withheld: int = 0  # scored records withheld by an output filter
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0  # a rebalance took the partition first; its next owner skips
    seconds: float = 0.0
    stopped_by: str = ""  # "max_records", "idle", "signal" or "stop"
    partitions: list[int] = field(default_factory=list)  # source partitions held at the end


def stream(
    ref: str,
    source: str,
    sink: str,
    *,
    group: str | None = None,
    project: Project | None = None,
    max_records: int | None = None,
    idle_timeout: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors: str | None = None,
    id_field: str | None = None,
    config: Mapping[str, Any] | None = None,
    prediction_log: PredictionSink | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[StreamStats], None] | None = None,
) -> StreamStats:
    """Score the JSON records of topic `source` with model `ref` into topic `sink` (both
    `kafka://host:port/topic`) as a member of consumer group `group` (default
    `shipyard-stream-MODEL-SINKTOPIC`), until `max_records` records, `idle_timeout` seconds
    without a record, SIGTERM/SIGINT (in the main thread) or `stop.set()`.

    `errors`: a dead-letter topic for bad records (default: error records go to `sink`).
    `config`: librdkafka settings for every client (e.g. `session.timeout.ms`, security).
    `prediction_log`: a PredictionSink that gets a PredictionRecord (protocol "stream") for each
    record written.
    """
    from shipyard.project import current
    from shipyard.serving.predictor import Predictor

    _check_limits(max_records, idle_timeout, batch_size)
    source_topic = parse_topic(source, what="the source (--from)")
    sink_topic = parse_topic(sink, what="the output (--to)")
    error_topic = None if errors is None else parse_topic(errors, what="the error topic (--errors)")
    for target in (sink_topic, error_topic):
        if target is not None and target.name == source_topic.name:
            raise InvalidInput(
                f"the output topic {target.url} is the source topic: the stream would score its "
                "own output; write to another topic"
            )
    if error_topic is not None and error_topic.name == sink_topic.name:
        error_topic = None  # the same topic either way
    project = project or current()
    predictor = Predictor.load(ref, project=project)
    group = group or f"shipyard-stream-{predictor.name}-{sink_topic.name}"
    streamer = _Streamer(
        predictor, source_topic, sink_topic, error_topic, group, dict(config or {}),
        id_field, prediction_log,
    )  # fmt: skip
    return streamer.run(max_records, idle_timeout, batch_size, stop or threading.Event(), on_batch)


def _check_limits(max_records: Any, idle_timeout: Any, batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if max_records is not None and (
        isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1
    ):
        raise InvalidInput(f"max_records must be an integer >= 1; got {max_records!r}")
    if idle_timeout is not None and (
        isinstance(idle_timeout, bool)
        or not isinstance(idle_timeout, int | float)
        or idle_timeout <= 0
    ):
        raise InvalidInput(f"idle_timeout must be a number of seconds > 0; got {idle_timeout!r}")


@dataclass
class _Outcome:
    """One input record, decided: its output (or error) record, and whether to write it."""

    message: Any
    row: dict[str, Any] | None
    record: dict[str, Any]
    error: str | None
    topic: Topic
    partitions: int
    skip: bool = False


class _Streamer:
    def __init__(
        self,
        predictor: Predictor,
        source: Topic,
        sink: Topic,
        errors: Topic | None,
        group: str,
        config: dict[str, Any],
        id_field: str | None,
        prediction_log: PredictionSink | None,
    ) -> None:
        self.kafka = confluent()
        self.predictor = predictor
        self.source, self.sink, self.errors = source, sink, errors
        self.group = group
        self.config = config
        self.id_field = id_field
        self.log = prediction_log
        self.stats = StreamStats(model=predictor.ref, group=group)
        self.owned: set[int] = set()
        self.unrecovered: set[int] = set()
        self.written: dict[tuple[str, int], int] = {}  # (topic, source partition) -> offset
        self.producers: dict[str, Any] = {}
        self.delivery_errors: list[str] = []
        self.idle_since = time.monotonic()
        self.signalled = False
        self.sink_partitions = 0
        self.error_partitions = 0
        self.warned: set[int] = set()

    # -- clients ----------------------------------------------------------------------------

    def producer(self, topic: Topic) -> Any:
        if topic.bootstrap not in self.producers:
            self.producers[topic.bootstrap] = self.kafka.Producer(
                producer_settings(self.config, topic.bootstrap)
            )
        return self.producers[topic.bootstrap]

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for item in partitions:
            self.owned.add(item.partition)
            self.unrecovered.add(item.partition)
        self.idle_since = time.monotonic()

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for item in partitions:
            self.owned.discard(item.partition)
            self.unrecovered.discard(item.partition)
            for topic in (self.sink, self.errors):
                if topic is not None:
                    self.written.pop((topic.name, item.partition), None)

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self,
        max_records: int | None,
        idle_timeout: float | None,
        batch_size: int,
        stop: threading.Event,
        on_batch: Callable[[StreamStats], None] | None,
    ) -> StreamStats:
        started = time.monotonic()
        self.sink_partitions = partition_count(self.producer(self.sink), self.sink.name)
        self.error_partitions = (
            partition_count(self.producer(self.errors), self.errors.name)
            if self.errors is not None
            else 0
        )
        consumer = self.kafka.Consumer(
            consumer_settings(self.config, self.source.bootstrap, self.group)
        )
        previous = self._catch_signals(stop)
        try:
            consumer.subscribe(
                [self.source.name],
                on_assign=self.on_assign,
                on_revoke=self.on_revoke,
                on_lost=self.on_revoke,
            )
            self.idle_since = time.monotonic()
            while True:
                if stop.is_set():
                    self.stats.stopped_by = "signal" if self.signalled else "stop"
                    break
                if max_records is not None and self.stats.consumed >= max_records:
                    self.stats.stopped_by = "max_records"
                    break
                wanted = batch_size
                if max_records is not None:
                    wanted = min(batch_size, max_records - self.stats.consumed)
                messages = self._usable(consumer.consume(num_messages=wanted, timeout=POLL_S))
                if not messages:
                    if idle_timeout is not None and self._idle(idle_timeout):
                        self.stats.stopped_by = "idle"
                        break
                    continue
                self._batch(consumer, messages)
                self.idle_since = time.monotonic()
                self.stats.seconds = time.monotonic() - started
                if on_batch is not None:
                    on_batch(self.stats)
        finally:
            self._restore_signals(previous)
            self.stats.partitions = sorted(self.owned)
            consumer.close()
            for producer in self.producers.values():
                # Every batch was flushed before its commit: this only waits on a failed one's.
                producer.flush(5.0)
            self.stats.seconds = time.monotonic() - started
        return self.stats

    def _idle(self, idle_timeout: float) -> bool:
        """No record for `idle_timeout` seconds while holding partitions (joining the group, or
        waiting for a stopped member's session to expire, gets JOIN_WAIT_S more)."""
        limit = idle_timeout if self.owned else idle_timeout + JOIN_WAIT_S
        return time.monotonic() - self.idle_since > limit

    def _usable(self, messages: list[Any]) -> list[Any]:
        usable = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == PARTITION_EOF:
                    continue
                if error.fatal():
                    raise StreamError(f"the consumer of {self.source.url} failed: {error}")
                if error.code() not in self.warned:  # e.g. no such topic (yet): retried
                    self.warned.add(error.code())
                    log.warning("consuming %s: %s (retrying)", self.source.url, error)
                continue
            if message.partition() in self.owned:  # not one revoked while it was fetched
                usable.append(message)
        return usable

    # -- one batch ----------------------------------------------------------------------------

    def _batch(self, consumer: Any, messages: list[Any]) -> None:
        received = time.time()
        started = time.perf_counter()
        self._recover({message.partition() for message in messages} & self.unrecovered)
        outcomes = self._score(messages)
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._produce(outcomes)
        self._log(outcomes, received, latency_ms)
        self._commit(consumer, messages)
        self.stats.batches += 1
        self.stats.consumed += len(messages)

    def _recover(self, partitions: set[int]) -> None:
        """What a stopped consumer already wrote for these newly assigned partitions."""
        if not partitions:
            return
        for topic, count in (
            (self.sink, self.sink_partitions),
            (self.errors, self.error_partitions),
        ):
            if topic is None:
                continue
            found = written_offsets(self.config, topic, self.source.name, partitions, count)
            for partition, offset in found.items():
                self.written[(topic.name, partition)] = offset
        self.unrecovered -= partitions

    def _score(self, messages: list[Any]) -> list[_Outcome]:
        rows: list[dict[str, Any]] = []
        parsed: list[tuple[Any, dict[str, Any] | None, Any, str | None]] = []
        for message in messages:
            row, ident, problem = self._row(message)
            parsed.append((message, row, ident, problem))
            if row is not None:
                rows.append(row)
        answers = iter(score_rows(self.predictor, rows))
        outcomes = []
        for message, row, ident, problem in parsed:
            answer = next(answers) if row is not None else str(problem)
            outcomes.append(self._outcome(message, row, ident, answer))
        return outcomes

    def _row(self, message: Any) -> tuple[dict[str, Any] | None, Any, str | None]:
        value = message.value()
        if value is None:
            return None, None, "the record has no value (a tombstone); expected a JSON object"
        try:
            document = json.loads(value)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, None, f"the record is not JSON: {exc}"
        if not isinstance(document, dict):
            return (
                None,
                None,
                (
                    f"the record is JSON {type(document).__name__}; expected an object of "
                    "column values"
                ),
            )
        ident = None
        if self.id_field is not None:
            ident = document.pop(self.id_field, None)
        return document, ident, None

    def _outcome(
        self, message: Any, row: dict[str, Any] | None, ident: Any, answer: dict[str, Any] | str
    ) -> _Outcome:
        partition, offset = message.partition(), message.offset()
        record: dict[str, Any] = {
            "source": source_key(message.topic(), partition, offset),
            "key": _text(message.key()),
        }
        if self.id_field is not None:
            record["id"] = ident
        record["model"] = self.predictor.name
        record["version"] = self.predictor.version.version
        if isinstance(answer, str):
            record["error"] = answer
            record["input"] = (_text(message.value()) or "")[:MAX_INPUT_TEXT]
            topic, count = (
                (self.errors, self.error_partitions)
                if self.errors is not None
                else (self.sink, self.sink_partitions)
            )
            error: str | None = answer
        else:
            for name, value in answer.items():
                record.setdefault(name, value)
            topic, count, error = self.sink, self.sink_partitions, None
        done = self.written.get((topic.name, partition), -1)
        return _Outcome(message, row, record, error, topic, count, skip=offset <= done)

    def _produce(self, outcomes: list[_Outcome]) -> None:
        self.delivery_errors = []
        for outcome in outcomes:
            if outcome.skip:
                self.stats.skipped += 1
                continue
            self._send(outcome)
            if outcome.error is not None:
                self.stats.errors += 1
            else:
                self.stats.scored += 1
                if outcome.record.get("filtered") is not None:
                    self.stats.withheld += 1
        for bootstrap, producer in self.producers.items():
            left = producer.flush(FLUSH_TIMEOUT_S)
            if left:
                raise StreamError(
                    f"{left} output records were not acknowledged by {bootstrap} within "
                    f"{FLUSH_TIMEOUT_S:.0f} s; offsets were not committed, so a restart scores "
                    "them again"
                )
        if self.delivery_errors:
            raise StreamError(
                f"the broker refused output records ({self.delivery_errors[0]}); offsets were "
                "not committed, so a restart scores them again"
            )

    def _send(self, outcome: _Outcome) -> None:
        producer = self.producer(outcome.topic)
        message = outcome.message
        value = json.dumps(outcome.record, separators=(",", ":"), default=str).encode()
        key = str(outcome.record["source"]).encode()
        while True:
            try:
                producer.produce(
                    outcome.topic.name,
                    value=value,
                    key=key,
                    partition=message.partition() % outcome.partitions,
                    on_delivery=self._delivered,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.delivery_errors.append(f"{message.topic()}: {error}")

    def _log(self, outcomes: list[_Outcome], received: float, latency_ms: float) -> None:
        if self.log is None:
            return
        from shipyard.serving.record import PredictionRecord

        predictor = self.predictor
        for outcome in outcomes:
            if outcome.skip:
                continue
            record = outcome.record
            filtered = record.get("filtered")
            inputs = (
                json.dumps(outcome.row, separators=(",", ":"), default=str)
                if outcome.row is not None
                else str(record.get("input", ""))
            )
            self.log.append(
                PredictionRecord(
                    request_id=str(record["source"]),
                    time=received,
                    model=predictor.name,
                    version=predictor.version.version,
                    protocol="stream",
                    inputs=inputs,
                    outputs=json.dumps(record, separators=(",", ":"), default=str),
                    latency_ms=latency_ms,
                    filters=[str(filtered)] if filtered is not None else [],
                    hooks=dict(predictor.options.hooks),
                    status=200 if outcome.error is None else 400,
                )
            )

    def _commit(self, consumer: Any, messages: list[Any]) -> None:
        ends: dict[int, int] = {}
        for message in messages:
            ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
        offsets = [
            self.kafka.TopicPartition(self.source.name, partition, end)
            for partition, end in sorted(ends.items())
        ]
        try:
            committed = consumer.commit(offsets=offsets, asynchronous=False)
        except self.kafka.KafkaException:
            # The group moved these partitions on (a rebalance) before the commit: their next
            # owner resumes at the previous commit and finds these outputs already written.
            self.stats.commit_failures += 1
            return
        if any(item.error is not None for item in committed or []):
            self.stats.commit_failures += 1
            return
        self.stats.commits += 1

    # -- signals ----------------------------------------------------------------------------

    def _catch_signals(self, stop: threading.Event) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            self.signalled = True
            stop.set()

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def score_rows(predictor: Predictor, rows: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    """Each row's outputs (`Prediction.records()`), or the reason it could not be scored.

    The rows are predicted together; when that fails, the batch is halved until the rows that
    fail are found alone, so one bad row costs about log2(batch) extra calls and the good rows
    around it are still scored.
    """
    if not rows:
        return []
    try:
        prediction = predictor.predict(_columns(rows))
        records: list[dict[str, Any] | str] = list(prediction.records())
        if len(records) != len(rows):
            raise InvalidInput(
                f"model {predictor.ref} returned {len(records)} predictions for {len(rows)} rows"
            )
        return records
    except Exception as exc:
        if len(rows) == 1:
            return [_reason(exc)]
        middle = len(rows) // 2
        return score_rows(predictor, rows[:middle]) + score_rows(predictor, rows[middle:])


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as columns, as the server's JSON protocol hands them to the model (a key absent
    from a row is a missing value there)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    return f"the model failed: {type(exc).__name__}: {exc}"


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", errors="replace")


__all__ = ["DEFAULT_BATCH_SIZE", "StreamError", "StreamStats", "score_rows", "stream"]
