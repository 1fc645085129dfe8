"""Kafka plumbing for stream scoring: topic URLs, client settings, and the restart recovery.

Recovery answers one question for each source partition a consumer is given: which records of
it are already in the output (and error) topic, written by a consumer that was killed after
writing them but before committing their offsets? Each output record's key is its source
coordinate, `topic/partition/offset`, and the records of one source partition go, in offset
order, to one output partition (`partition % output partitions`) from one idempotent producer at
a time, so what reached the output is a prefix of what was sent: the highest source offset found
there is enough. It is found by reading the output partition backwards, a window at a time,
from its end, which is found by reading forward to the partition's end (some brokers, Tansu
among them, report a high watermark from ListOffsets that lags the log; a fetch's end does not).
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ConfigError, InvalidInput, ShipyardError

SCHEME = "kafka://"
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
_BROKER = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
URL_FORMS = "kafka://HOST:PORT/TOPIC (or kafka://HOST:PORT,HOST:PORT/TOPIC)"
SCAN_WINDOW = 1000  # output records read per step of the backward recovery scan
SCAN_TIMEOUT_S = 30.0  # for one window; a broker that does not answer stops the stream
PARTITION_EOF = -191  # librdkafka's KafkaError._PARTITION_EOF

# Settings that only a consumer understands: left out of producers' settings, where librdkafka
# would warn about each of them.
CONSUMER_ONLY = (
    "group.id",
    "group.instance.id",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "isolation.level",
    "partition.assignment.strategy",
    "group.protocol",
    "enable.partition.eof",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "check.crcs",
)
PRODUCER_ONLY = (
    "acks",
    "enable.idempotence",
    "linger.ms",
    "batch.size",
    "batch.num.messages",
    "compression.type",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "transactional.id",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "max.in.flight.requests.per.connection",
)


class StreamError(ShipyardError):
    """The broker refused or lost something stream scoring needs; offsets were not committed."""


@dataclass(frozen=True)
class Topic:
    """A topic on a cluster, from `kafka://host:port[,host:port]/topic`."""

    bootstrap: str
    name: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bootstrap}/{self.name}"


def parse_topic(url: str, *, what: str = "Kafka URL") -> Topic:
    if not isinstance(url, str) or not url.startswith(SCHEME):
        raise InvalidInput(f"{what} {url!r} is not a Kafka URL; expected {URL_FORMS}")
    bootstrap, slash, topic = url.removeprefix(SCHEME).partition("/")
    brokers = bootstrap.split(",")
    if not slash or not bootstrap or not all(_BROKER.match(b) for b in brokers):
        raise InvalidInput(
            f"{what} {url!r} needs the brokers as HOST:PORT before the topic; expected {URL_FORMS}"
        )
    if not _TOPIC.match(topic):
        raise InvalidInput(
            f"{what} {url!r} has no valid topic (1-249 letters, digits, '.', '_', '-') after "
            f"the brokers; expected {URL_FORMS}"
        )
    return Topic(bootstrap, topic)


def confluent() -> Any:
    """The confluent_kafka module (untyped: used as Any), or a clear error without it."""
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError:
        raise ConfigError(
            "stream scoring needs confluent-kafka: pip install 'shipyard[kafka]'"
        ) from None


def producer_settings(extra: Mapping[str, Any], bootstrap: str) -> dict[str, Any]:
    settings = {k: v for k, v in extra.items() if k not in CONSUMER_ONLY}
    settings.update(
        {
            "bootstrap.servers": bootstrap,
            # No duplicates from the producer's own retries, and per-partition order: what
            # reaches a partition is a prefix of what was sent, which recovery relies on.
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    settings.setdefault("linger.ms", 5)
    return settings


def consumer_settings(extra: Mapping[str, Any], bootstrap: str, group: str) -> dict[str, Any]:
    settings = {k: v for k, v in extra.items() if k not in PRODUCER_ONLY}
    settings.setdefault("auto.offset.reset", "earliest")
    settings.update(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,  # offsets move only once the outputs are written
            "enable.auto.offset.store": False,
            # A transactional source's open transactions stay out until committed.
            "isolation.level": "read_committed",
        }
    )
    return settings


def partition_count(client: Any, topic: str, timeout: float = 15.0) -> int:
    """Partitions of `topic` (asking creates it, where the broker creates topics on first use)."""
    kafka = confluent()
    try:
        metadata = client.list_topics(topic, timeout=timeout)
    except kafka.KafkaException as exc:
        raise StreamError(f"cannot read the metadata of topic {topic!r}: {exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        reason = found.error if found is not None else "unknown topic"
        raise StreamError(
            f"topic {topic!r} is not available ({reason}); create it (this broker does not "
            "create topics on first use)"
        )
    return len(found.partitions)


def source_key(topic: str, partition: int, offset: int) -> str:
    """The output key of the record at (topic, partition, offset): the same on every retry."""
    return f"{topic}/{partition}/{offset}"


def parse_source_key(key: bytes | None) -> tuple[str, int, int] | None:
    if not key:
        return None
    try:
        topic, partition, offset = key.decode().rsplit("/", 2)
        return topic, int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


def written_offsets(
    extra: Mapping[str, Any],
    target: Topic,
    source_topic: str,
    partitions: Iterable[int],
    output_partitions: int,
) -> dict[int, int]:
    """For each source partition, the highest source offset already in `target` (-1: none).

    Reads each output partition backwards, a window at a time, until it has found a record of
    every source partition that maps to it, or reached the partition's start.
    """
    kafka = confluent()
    wanted: dict[int, set[int]] = {}
    for partition in partitions:
        wanted.setdefault(partition % output_partitions, set()).add(partition)
    found = {partition: -1 for partition in partitions}
    settings = {k: v for k, v in extra.items() if k not in PRODUCER_ONLY}
    settings.update(
        {
            "bootstrap.servers": target.bootstrap,
            # assign() only: this consumer never joins the group nor commits.
            "group.id": f"shipyard-recovery-{target.name}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": 50,
        }
    )
    scanner = kafka.Consumer(settings)
    try:
        for output_partition, sources in wanted.items():
            found.update(
                _scan(kafka, scanner, target.name, output_partition, source_topic, sources)
            )
    finally:
        scanner.close()
    return found


def _scan(
    kafka: Any, scanner: Any, topic: str, partition: int, source_topic: str, sources: set[int]
) -> dict[int, int]:
    try:
        low, high = scanner.get_watermark_offsets(
            kafka.TopicPartition(topic, partition), timeout=SCAN_TIMEOUT_S
        )
    except kafka.KafkaException as exc:
        raise StreamError(f"cannot read the offsets of {topic}[{partition}]: {exc}") from None
    found: dict[int, int] = {}
    if high <= low:
        return found
    # The first window runs to the partition's end, wherever a fetch says it is; each next
    # one ends where the previous one started.
    start, stop = max(low, high - SCAN_WINDOW), None
    while True:
        _read(kafka, scanner, topic, partition, start, stop, source_topic, sources, found)
        if set(found) >= sources or start <= low:
            return found
        start, stop = max(low, start - SCAN_WINDOW), start


def _read(
    kafka: Any,
    scanner: Any,
    topic: str,
    partition: int,
    start: int,
    stop: int | None,
    source_topic: str,
    sources: set[int],
    found: dict[int, int],
) -> None:
    """Read [start, stop) (to the end when `stop` is None), noting the highest offset seen per
    source partition in `sources` that has none noted yet."""
    scanner.assign([kafka.TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    position = start
    newest: dict[int, int] = {}
    try:
        while stop is None or position < stop:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"reading {topic}[{partition}] from offset {start} to find what a stopped "
                    f"consumer had written took over {SCAN_TIMEOUT_S:.0f} s; is the broker up?"
                )
            message = scanner.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == PARTITION_EOF:
                    break
                if error.fatal():
                    raise StreamError(f"cannot read {topic}[{partition}]: {error}")
                continue
            position = message.offset() + 1
            coordinate = parse_source_key(message.key())
            if coordinate is None or coordinate[0] != source_topic:
                continue
            source_partition, offset = coordinate[1], coordinate[2]
            if source_partition in sources and source_partition not in found:
                newest[source_partition] = max(newest.get(source_partition, -1), offset)
    finally:
        scanner.unassign()
    found.update(newest)  # a later (older) window never overrides what a newer one found
