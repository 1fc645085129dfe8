"""Helpers for the scoring tests: customer data, the model's hook, reading Kafka topics."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["age", "visits", "spend", "plan"]
SHIPYARD = Path(sys.executable).parent / "shipyard"

# The project's hook module: an output filter, on for model churn in every test project.
HOOKS = '''
def refer_old(batch):
    """Withhold the answers for customers over 75: a person looks at those."""
    return (batch.inputs["age"] > 75).to_numpy(dtype=bool)
'''
SERVING = '\n[serving.churn]\nfilters = ["score_hooks:refer_old"]\n'


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Customers with an id and a churn label that depends on age, visits and plan."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": [f"c{seed}-{k}" for k in range(rows)],
            "age": rng.integers(18, 80, rows),
            "visits": rng.integers(0, 15, rows),
            "spend": np.round(rng.uniform(0, 500, rows), 2),
            "plan": rng.choice(["basic", "pro", "team"], rows),
            "city": rng.choice(["north", "south", "east"], rows),
        }
    )
    logit = -0.5 + 0.06 * (frame["age"] - 48) - 0.35 * (frame["visits"] - 7)
    frame["churned"] = rng.random(rows) < 1 / (1 + np.exp(-(logit + (frame["plan"] == "basic"))))
    return frame


def logistic() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_pipeline(
        ColumnTransformer(
            [
                ("numbers", StandardScaler(), ["age", "visits", "spend"]),
                ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(max_iter=500),
    )


def cli_env() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return environment


# -- Kafka --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: str | None
    value: dict[str, Any]


def read_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[Read]:
    """Every record of `topic`, read to the end of each partition (no consumer group)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        ended: set[int] = set()
        found: list[Read] = []
        deadline = time.monotonic() + timeout
        while ended != set(partitions):
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout} s"
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                ended.add(message.partition())
                continue
            key = message.key()
            found.append(
                Read(
                    message.partition(),
                    message.offset(),
                    key.decode() if key is not None else None,
                    json.loads(message.value()),
                )
            )
        return found
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int = 4) -> dict[int, int]:
    """The group's committed offset per partition (0 where none), without joining the group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return {item.partition: max(item.offset, 0) for item in found}
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
