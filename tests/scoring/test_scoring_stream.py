"""Stream scoring against a real Kafka-protocol broker (Tansu), with consumers killed mid-stream.

Every test checks the same end state: each input record is answered exactly once, across the
output and error topics, with the answer the server would give, however the consumers were
stopped on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import pytest
from scoring_helpers import (
    FEATURES,
    Read,
    cli_env,
    committed,
    customers,
    produce,
    read_topic,
)

from shipyard.project import Project
from shipyard.scoring import stream
from shipyard.serving.options import ModelOptions
from shipyard.serving.predictor import Predictor
from shipyard.serving.record import PredictionRecord

RECORDS = 2000
WAIT_S = 90  # the longest any wait may take: a broken stream fails the test, never hangs it
BAD = {  # input index -> (value, the reason its error record must give)
    150: (b"{not json", "not JSON"),
    700: (json.dumps({"id": "x", "age": 30, "visits": 2, "spend": 5.0, "plan": "gold"}).encode(),
          "'gold'"),
    1300: (json.dumps({"id": "y", "age": 30, "spend": 5.0, "plan": "pro"}).encode(), "'visits'"),
    1900: (b"[1, 2, 3]", "expected an object"),
}  # fmt: skip


def inputs(project: Project) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """The records to produce (key k0..k1999) and, by key, the expected answer: a prediction
    record (`prediction`, maybe `filtered`) or the text the error must contain."""
    frame = customers(RECORDS, 7)
    rows = frame[["id", *FEATURES]].to_dict("records")
    records = []
    for index, row in enumerate(rows):
        value = BAD[index][0] if index in BAD else json.dumps(row).encode()
        records.append((f"k{index}", value))
    options = ModelOptions.build(filters=["score_hooks:refer_old"])
    predictor = Predictor.load("churn@champion", options=options, project=project)
    answers = predictor.predict(frame[FEATURES]).records()
    expected: dict[str, Any] = {}
    for index, answer in enumerate(answers):
        expected[f"k{index}"] = BAD[index][1] if index in BAD else (rows[index]["id"], answer)
    return records, expected


def check_exactly_once(found: list[Read], expected: dict[str, Any], source: str) -> None:
    """Every input answered once (by key and by source coordinate), each answer right."""
    keys = Tally(read.value["key"] for read in found)
    assert {k: n for k, n in keys.items() if n != 1} == {}, "answered more than once"
    assert set(keys) == set(expected), f"missing: {sorted(set(expected) - set(keys))[:10]}"
    coordinates = [read.value["source"] for read in found]
    assert len(set(coordinates)) == len(coordinates)
    for read in found:
        value, want = read.value, expected[read.value["key"]]
        assert read.key == value["source"] and value["source"].startswith(f"{source}/")
        assert (value["model"], value["version"]) == ("churn", 1)
        if isinstance(want, str):
            assert want in value["error"], value
            assert "prediction" not in value
        else:
            ident, answer = want
            assert value.get("id") == ident
            assert {k: v for k, v in value.items() if k in ("prediction", "filtered")} == answer


class Collect:
    """A prediction log that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []

    def append(self, record: PredictionRecord) -> None:
        self.records.append(record)

    def close(self, timeout: float = 10.0) -> None:
        pass


KILLED_IN_COMMIT_WINDOW = """
import json, os, signal, sys
from shipyard.scoring import stream

class KillWhenLogging:
    # Records reach the prediction log after the broker acknowledged the batch's outputs and
    # before the offsets are committed: dying here leaves written but uncommitted records.
    def __init__(self, after):
        self.after, self.seen = after, 0
    def append(self, record):
        self.seen += 1
        if self.seen == self.after:
            os.kill(os.getpid(), signal.SIGKILL)
    def close(self, timeout=10.0):
        pass

source, sink, errors, group, config = sys.argv[1:6]
stream("churn@champion", source, sink, errors=errors, group=group, config=json.loads(config),
       batch_size=100, id_field="id", prediction_log=KillWhenLogging(after=250))
"""


class TermWhenLogging(Collect):
    """A log that sends this process SIGTERM in the middle of a batch (after its outputs are
    written, before its offsets are committed), once it has seen `after` records."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def append(self, record: PredictionRecord) -> None:
        super().append(record)
        if len(self.records) == self.after:
            os.kill(os.getpid(), signal.SIGTERM)


def test_killed_then_stopped_then_drained_answers_each_record_once(
    kafka_broker: Any, folder: Path, project: Project
) -> None:
    broker = kafka_broker.bootstrap
    source, sink, errors = kafka_broker.topic(), kafka_broker.topic(), kafka_broker.topic()
    group = "g-" + source
    urls = {name: f"kafka://{broker}/{name}" for name in (source, sink, errors)}
    records, expected = inputs(project)
    produce(broker, source, records)
    config = kafka_broker.client_config()

    def written() -> list[Read]:
        return read_topic(broker, sink) + read_topic(broker, errors)

    def committed_total() -> int:
        return sum(committed(broker, group, source).values())

    # 1. A consumer in another process is killed (SIGKILL) in its third batch, between writing
    #    the batch's outputs and committing their offsets.
    script = folder / "killed.py"
    script.write_text(KILLED_IN_COMMIT_WINDOW)
    first = subprocess.run(
        [sys.executable, str(script), urls[source], urls[sink], urls[errors], group,
         json.dumps(config)],
        cwd=folder, env=cli_env(), capture_output=True, text=True, timeout=WAIT_S,
    )  # fmt: skip
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    after_kill, committed_at_kill = written(), committed_total()
    assert len(after_kill) > committed_at_kill >= 150  # written, not committed: the hard case

    # 2. Restarted; stopped by SIGTERM in the middle of a batch: it writes and commits that
    #    batch, then stops. What the killed consumer wrote is found and not written again.
    log = TermWhenLogging(after=500)
    stats = stream(
        "churn@champion", urls[source], urls[sink], errors=urls[errors], group=group,
        config=config, batch_size=200, id_field="id", prediction_log=log, project=project,
    )  # fmt: skip
    assert stats.stopped_by == "signal" and stats.commit_failures == 0
    assert stats.skipped == len(after_kill) - committed_at_kill
    after_stop = written()
    assert committed_total() == len(after_stop) < RECORDS  # nothing written is left uncommitted
    assert len(log.records) == len(after_stop) - len(after_kill) == stats.scored + stats.errors

    # 3. Restarted again until the topic is drained: each record answered exactly once.
    log = Collect()
    stats = stream(
        "churn@champion", urls[source], urls[sink], errors=urls[errors], group=group,
        config=config, batch_size=500, id_field="id", idle_timeout=2, prediction_log=log,
        project=project,
    )  # fmt: skip
    assert stats.stopped_by == "idle" and stats.skipped == 0
    assert stats.consumed == RECORDS - len(after_stop)
    outputs, dead = read_topic(broker, sink), read_topic(broker, errors)
    check_exactly_once(outputs + dead, expected, source)
    assert len(dead) == len(BAD) and all("error" in read.value for read in dead)
    assert not any("error" in read.value for read in outputs)
    assert committed_total() == RECORDS
    # The prediction log got each record this run wrote, once, as protocol "stream".
    assert {r.request_id for r in log.records} == {
        read.value["source"] for read in outputs + dead
    } - {read.value["source"] for read in after_stop}
    assert {r.protocol for r in log.records} == {"stream"}
    withheld = [r for r in log.records if r.filters]
    assert withheld and all(r.filters == ["refer_old"] for r in withheld)
    assert all(json.loads(r.inputs).keys() == set(FEATURES) for r in log.records if r.status == 200)


def test_bad_records_go_to_the_output_without_an_error_topic(
    kafka_broker: Any, project: Project
) -> None:
    broker = kafka_broker.bootstrap
    source, sink = kafka_broker.topic(), kafka_broker.topic()
    records, expected = inputs(project)
    chosen = [records[i] for i in (0, 1, 2, 150, 700, 1300, 1900, 3, 4, 5)] + records[6:36]
    produce(broker, source, chosen)
    stats = stream(
        "churn@champion", f"kafka://{broker}/{source}", f"kafka://{broker}/{sink}",
        config=kafka_broker.client_config(), id_field="id", batch_size=16, max_records=40,
        project=project,
    )  # fmt: skip
    assert stats.stopped_by == "max_records" and stats.consumed == 40
    assert stats.group == f"shipyard-stream-churn-{sink}"
    found = read_topic(broker, sink)
    assert len(found) == 40 and stats.errors == 4 and stats.scored == 36
    assert sum(committed(broker, stats.group, source).values()) == 40
    for read in found:
        want = expected[read.value["key"]]
        if isinstance(want, str):
            assert want in read.value["error"] and read.value["input"]
        else:
            assert read.value["prediction"] == want[1]["prediction"]


def test_recovery_reads_back_through_an_interleaved_output_partition(
    kafka_broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from shipyard.scoring import kafka as plumbing

    broker = kafka_broker.bootstrap
    output = kafka_broker.topic()
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(output, num_partitions=1)])[output].result(timeout=30)
    # Source partitions 0..2 all map to the one output partition; partition 2 wrote early only.
    keys = [("src", 2, 0), ("src", 2, 1)] + [("other", 0, 99)] * 3
    keys += [("src", p, offset) for offset in range(10) for p in (0, 1)] + [("src", 0, 10)]
    produce(broker, output, [(plumbing.source_key(*key), b"{}") for key in keys])
    monkeypatch.setattr(plumbing, "SCAN_WINDOW", 4)  # many windows, read backwards
    found = plumbing.written_offsets(
        kafka_broker.client_config(), plumbing.Topic(broker, output), "src", [0, 1, 2, 3], 1
    )
    assert found == {0: 10, 1: 9, 2: 1, 3: -1}
