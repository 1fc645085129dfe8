"""Opening the project's prediction log from its settings.

`prediction_log_url` (SHIPYARD_PREDICTION_LOG_URL) picks the writer:

- a folder (the default `.shipyard/predictions`, or `file:///...`, or `s3://bucket/prefix`):
  `ParquetLog`, flushed every `prediction_log_flush_rows` records or
  `prediction_log_flush_seconds` seconds;
- `kafka://host:port/topic`: `KafkaLog`; `shipyard predictions land` then writes the topic to
  the Parquet folder that queries and replays read (`.shipyard/predictions`).

On S3 the log uses the artifact store's credentials (`artifact_options`) and `s3_endpoint_url`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.predictions.kafka import SCHEME as KAFKA_SCHEME
from shipyard.predictions.kafka import KafkaLog, parse_kafka_url
from shipyard.predictions.writer import ParquetLog

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.serving.record import PredictionSink

SETTING = "setting prediction_log_url (SHIPYARD_PREDICTION_LOG_URL)"
FORMS = "a folder (path, file:///path or s3://bucket/prefix) or kafka://HOST:PORT/TOPIC"
KAFKA_LINGER_MS = 5.0


def is_kafka(url: str) -> bool:
    return url.startswith(KAFKA_SCHEME)


def check_folder_url(url: str, *, what: str = SETTING) -> str:
    """`url` when it names a folder fsspec can write to; InvalidInput naming the forms if not."""
    if not url.strip():
        raise InvalidInput(f"{what} is empty; expected {FORMS}")
    if "://" not in url:
        return url
    protocol = url.split("://", 1)[0]
    from fsspec.registry import known_implementations, registry

    if protocol != "file" and protocol not in known_implementations and protocol not in registry:
        raise InvalidInput(f"{what} {url!r} has an unknown scheme {protocol!r}; expected {FORMS}")
    return url


def log_folder(settings: Settings) -> str:
    """The Parquet folder that queries and replays read: the log itself, or where a Kafka log
    is landed (`home/predictions`)."""
    url = settings.resolved_prediction_log_url
    if is_kafka(url):
        return str(settings.home.resolve() / "predictions")
    return check_folder_url(url)


def storage_options(settings: Settings, url: str) -> dict[str, Any]:
    """fsspec options for the log folder: the artifact store's, with `s3_endpoint_url`."""
    if "://" not in url or url.startswith("file://"):
        return {}
    options = dict(settings.artifact_options)
    if settings.s3_endpoint_url and url.startswith("s3://"):
        client_kwargs = dict(options.get("client_kwargs", {}))
        client_kwargs.setdefault("endpoint_url", settings.s3_endpoint_url)
        options["client_kwargs"] = client_kwargs
    return options


def open_log(settings: Settings, *, worker: str | None = None) -> PredictionSink:
    """The prediction log the settings name, its background writer started.

    `worker` names this process's files (e.g. "w3"); host and pid when None. Call it in each
    serving process (after a fork, not before: the writer is a thread).
    """
    url = settings.resolved_prediction_log_url
    if is_kafka(url):
        bootstrap, topic = parse_kafka_url(url, what=SETTING)
        linger = min(KAFKA_LINGER_MS, settings.prediction_log_flush_seconds * 1000)
        return KafkaLog(bootstrap, topic, linger_ms=linger)
    folder = check_folder_url(url)
    return ParquetLog(
        folder,
        flush_rows=settings.prediction_log_flush_rows,
        flush_seconds=settings.prediction_log_flush_seconds,
        worker=worker,
        storage_options=storage_options(settings, folder),
    )
