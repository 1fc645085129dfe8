"""Settings: one typed object, read from `.shipyard/shipyard.toml` and `SHIPYARD_*` variables.

Precedence, highest first: arguments passed in Python, environment variables, the project's
`shipyard.toml`, then the defaults below. Only the edges (CLI, `Project.open`) read the
environment; everything else takes a `Settings` or explicit arguments.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shipyard.errors import ConfigError
from shipyard.home import PROJECT_DIRNAME, SETTINGS_FILENAME, current_home

_toml_file: ContextVar[Path | None] = ContextVar("_toml_file", default=None)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an anonymous container uid
        return f"uid-{os.getuid()}"


class Settings(BaseSettings):
    """Everything shipyard can be told; every field can be set as `SHIPYARD_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="forbid")

    home: Path = Field(
        default=Path(PROJECT_DIRNAME),
        description="The project folder: settings file, SQLite database, local artifacts.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata store; a SQLite file in `home` when unset, "
        "or e.g. postgresql://user@host:5432/shipyard.",
    )
    database_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for a locked SQLite database or a PostgreSQL connection.",
    )
    artifact_url: str | None = Field(
        default=None,
        description="Where blobs live: a local folder (default `home/artifacts`) or s3://bucket/prefix.",
    )
    artifact_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for the artifact store (e.g. key, secret, "
        "client_kwargs.endpoint_url for an S3-compatible server).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (MinIO, SeaweedFS, ...); AWS when unset.",
    )
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Promotion policies by alias, `[policies.champion]` in shipyard.toml: the "
        "gates a version must pass before it may take that alias (see docs/gates.md).",
    )
    prediction_log_url: str | None = Field(
        default=None,
        description="Where the prediction log goes: a folder of Parquet files partitioned by "
        "model and hour (default `home/predictions`), or kafka://host:port/topic.",
    )
    prediction_log_flush_rows: int = Field(
        default=1000,
        gt=0,
        description="The prediction log is written every this many records (or flush_seconds).",
    )
    prediction_log_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        description="The prediction log is written at least this often; with flush_rows it bounds "
        "what a killed worker can lose (see docs/predictions.md).",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="Where alerts are POSTed as JSON (a rollout rolled back, ...); they are "
        "always written to the log as well.",
    )
    serving: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-model serving options, `[serving.NAME]` in shipyard.toml: micro-batching, "
        "response cache, pre/post-processing hooks and output filters (see docs/serving.md).",
    )
    drift: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-model drift monitoring, `[drift.NAME]` in shipyard.toml: the reference "
        "dataset version, the window, methods and thresholds per column, the multiple-test "
        "correction and persistence (see docs/drift.md).",
    )
    slos: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="Per-model service-level objectives, `[[slos.NAME]]` in shipyard.toml: the "
        "SLI, objective, window and burn-rate alerts (see docs/slos.md).",
    )
    training: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-model continuous training, `[training.NAME]` in shipyard.toml: the "
        "pipeline, its parameters, the triggers and the rollout that follows (see "
        "docs/continuous-training.md).",
    )
    open_reads: bool = Field(
        default=False,
        description="Whether the control API and the dashboard answer reads without a token; "
        "state changes always need one (see docs/access.md).",
    )
    user: str = Field(
        default_factory=_default_user, description="Who is recorded as the author of changes."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _toml_file.get()
        if toml_file is not None and toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home.resolve() / 'shipyard.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        return self.artifact_url or str(self.home.resolve() / "artifacts")

    @property
    def resolved_artifact_options(self) -> dict[str, Any]:
        options = dict(self.artifact_options)
        if self.s3_endpoint_url and self.resolved_artifact_url.startswith("s3://"):
            client_kwargs = dict(options.get("client_kwargs", {}))
            client_kwargs.setdefault("endpoint_url", self.s3_endpoint_url)
            options["client_kwargs"] = client_kwargs
        return options

    @property
    def resolved_prediction_log_url(self) -> str:
        return self.prediction_log_url or str(self.home.resolve() / "predictions")

    @property
    def settings_file(self) -> Path:
        return self.home / SETTINGS_FILENAME

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


@contextmanager
def _reading_toml(path: Path) -> Iterator[None]:
    token = _toml_file.set(path)
    try:
        yield
    finally:
        _toml_file.reset(token)


def load_settings(home: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings of the project at `home`, `$SHIPYARD_HOME` or the nearest `.shipyard/`."""
    home = current_home() if home is None else Path(home)
    settings_file = home / SETTINGS_FILENAME
    try:
        with _reading_toml(settings_file):
            return Settings(home=home, **overrides)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, settings_file)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(
            f"cannot read settings file {settings_file}: {exc}; fix or remove it"
        ) from None


def _describe_validation_error(exc: ValidationError, settings_file: Path) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(Settings.model_fields))
            problems.append(f"unknown setting '{field}' (known settings: {known})")
        else:
            problems.append(
                f"setting '{field}' (SHIPYARD_{field.upper()}): {error['msg']}, "
                f"got {error.get('input')!r}"
            )
    return f"invalid settings (from {settings_file} or SHIPYARD_* variables): " + "; ".join(
        problems
    )
