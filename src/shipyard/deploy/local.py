"""The local launch: `shipyard serve` as uvicorn worker processes on this host.

Each worker process builds its own app from the configuration in `SHIPYARD_SERVE_CONFIG`
(uvicorn starts workers by import string), loads and warms the models, and writes its own
prediction-log files; they share the listening socket.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.serving.app import DEFAULT_MAX_BODY_BYTES, ServingApp

CONFIG_ENV = "SHIPYARD_SERVE_CONFIG"
GRACEFUL_TIMEOUT_S = 30


@dataclass
class ServeConfig:
    refs: list[str]
    home: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log: bool = True
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(CONFIG_ENV)
        if raw is None:
            raise InvalidInput(f"{CONFIG_ENV} is not set; start the server with `shipyard serve`")
        return cls(**json.loads(raw))


def build_app(config: ServeConfig) -> ServingApp:
    """The app for `config`: models loaded at startup, the project's prediction log."""
    from shipyard.project import Project
    from shipyard.serving.options import ModelOptions
    from shipyard.serving.predictor import Predictor

    project = Project.open(config.home) if config.home else Project.open()

    def load() -> list[Any]:
        predictors = []
        for ref in config.refs:
            name = ref.partition("@")[0]
            settings = {**project.settings.serving.get(name, {}), **config.options.get(name, {})}
            options = ModelOptions.from_settings(name, settings)
            predictors.append(Predictor.load(ref, project=project, options=options))
        return predictors

    def open_sink() -> Any:
        from shipyard.predictions import open_log

        return open_log(project.settings)

    return ServingApp(
        load,
        sink_factory=open_sink if config.log else None,
        max_body_bytes=config.max_body_bytes,
    )


def create_app() -> ServingApp:
    """uvicorn's factory in each worker process."""
    return build_app(ServeConfig.from_env())


def check_refs(refs: list[str], home: str | None) -> list[str]:
    """Every ref resolves to a version and names a different model: fail before binding a port."""
    from shipyard.project import Project
    from shipyard.registry.versions import get

    if not refs:
        raise InvalidInput("name at least one model to serve: NAME, NAME@VERSION or NAME@ALIAS")
    project = Project.open(home) if home else Project.open()
    names: dict[str, str] = {}
    resolved = []
    for ref in refs:
        version = get(ref, project=project)
        if version.name in names:
            raise InvalidInput(
                f"{ref} and {names[version.name]} are the same model; serve one version of each "
                "model (a release routes between versions)"
            )
        names[version.name] = ref
        resolved.append(version.ref)
    return resolved


def serve(
    refs: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    home: str | Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log: bool = True,
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S,
) -> None:
    """Serve `refs` until SIGINT/SIGTERM; in-flight requests finish and the log is flushed."""
    import uvicorn

    if workers < 1:
        raise InvalidInput(f"workers must be >= 1; got {workers}")
    if not 0 < port < 65536:
        raise InvalidInput(f"port must be between 1 and 65535; got {port}")
    folder = str(Path(home).resolve()) if home is not None else None
    check_refs(refs, folder)
    config = ServeConfig(refs=list(refs), home=folder, max_body_bytes=max_body_bytes, log=log)
    os.environ[CONFIG_ENV] = config.to_env()
    uvicorn.run(
        "shipyard.deploy.local:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=graceful_timeout_s,
    )
