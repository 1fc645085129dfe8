"""KafkaLog against a real Kafka-protocol broker, and landing its topic to Parquet."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from predictions_helpers import T0, record, written_ids

from shipyard.errors import InvalidInput
from shipyard.predictions.kafka import KafkaLog, land, record_from_json
from shipyard.predictions.query import query
from shipyard.serving.record import PredictionRecord


def _consume(broker: Any, topic: str, count: int, timeout: float = 60) -> list[Any]:
    consumer = Consumer(
        broker.client_config(
            **{"group.id": f"g-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    received: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message)
    finally:
        consumer.close()
    return received


def test_appended_records_come_back_from_the_topic(kafka_broker: Any) -> None:
    topic = kafka_broker.topic()
    sent = [
        record(i, filters=["f"] if i % 3 == 0 else [], hooks={"h": "0" * 64}) for i in range(40)
    ]
    with KafkaLog(kafka_broker.bootstrap, topic) as log:
        for item in sent:
            log.append(item)
        log.flush()
        stats = log.stats
        assert (stats.appended, stats.written, stats.dropped, stats.queue_depth) == (40, 40, 0, 0)

    received = _consume(kafka_broker, topic, 40)
    assert len(received) == 40
    by_id = {m.key().decode(): record_from_json(m.value()) for m in received}
    assert by_id == {item.request_id: item for item in sent}


def test_a_closed_kafka_log_refuses_records(kafka_broker: Any) -> None:
    log = KafkaLog(kafka_broker.bootstrap, kafka_broker.topic())
    log.close()
    log.close()
    with pytest.raises(Exception, match="closed"):
        log.append(record(0))


def test_land_writes_the_topic_to_parquet_and_commits_its_offsets(
    kafka_broker: Any, tmp_path: Path
) -> None:
    topic = kafka_broker.topic()
    source = f"kafka://{kafka_broker.bootstrap}/{topic}"
    folder = tmp_path / "landed"
    group = f"land-{uuid.uuid4().hex[:8]}"
    config = kafka_broker.client_config()
    with KafkaLog(kafka_broker.bootstrap, topic) as log:
        for i in range(30):
            log.append(record(i, model="churn" if i % 2 else "fraud"))
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    producer.produce(topic, key=b"junk", value=b"not a record")
    producer.flush(10)

    first = land(source, folder, group=group, flush_rows=8, idle_seconds=3, config=config)
    assert (first.records, first.invalid) == (30, 1)
    assert first.commits >= 1 and first.files >= 2
    assert "offset" in first.problems[0]
    assert sorted(written_ids(folder)) == sorted(f"r{i}" for i in range(30))
    counts = query(
        "SELECT model, count(*) AS n FROM predictions GROUP BY 1 ORDER BY 1", folder=folder
    )
    assert counts.to_pylist() == [{"model": "churn", "n": 15}, {"model": "fraud", "n": 15}]

    with KafkaLog(kafka_broker.bootstrap, topic) as log:
        for i in range(30, 35):
            log.append(record(i))
    second = land(source, folder, group=group, idle_seconds=3, config=config)
    assert (second.records, second.invalid) == (5, 0)  # the committed offsets were honoured
    assert sorted(written_ids(folder)) == sorted(f"r{i}" for i in range(35))


def test_land_stops_after_max_records(kafka_broker: Any, tmp_path: Path) -> None:
    topic = kafka_broker.topic()
    with KafkaLog(kafka_broker.bootstrap, topic) as log:
        for i in range(12):
            log.append(record(i, at=T0 + i))
    report = land(
        f"kafka://{kafka_broker.bootstrap}/{topic}",
        tmp_path,
        group=f"g-{uuid.uuid4().hex[:8]}",
        max_records=5,
        idle_seconds=None,
        config=kafka_broker.client_config(),
    )
    assert report.records == 5
    assert len(written_ids(tmp_path)) == 5


def test_land_refuses_a_bad_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--from 'kafka://broker/t' needs the brokers"):
        land("kafka://broker/t", tmp_path)
    with pytest.raises(InvalidInput, match="is not a Kafka URL"):
        land("http://broker:9092/t", tmp_path)


def test_a_message_value_must_be_a_prediction_record() -> None:
    good = record(1)
    assert record_from_json(json.dumps(good.to_dict())) == good
    for value, problem in [
        (b"[1]", "expected a JSON object"),
        (b'{"request_id": "x", "colour": 1}', "unknown fields"),
        (b'{"request_id": "x"}', "missing"),
    ]:
        with pytest.raises(ValueError, match=problem):
            record_from_json(value)
    assert isinstance(good, PredictionRecord)
