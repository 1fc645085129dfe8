"""The local launch: `shipyard serve` as worker processes on this host.

Each worker process builds its own app from the configuration in `SHIPYARD_SERVE_CONFIG`,
loads and warms the models, and writes its own prediction-log files.

Several workers each listen on a socket of their own, bound to the same port with
SO_REUSEPORT, rather than sharing one socket as uvicorn's own supervisor does. With a shared
socket, the first worker to wake accepts every pending connection at once (asyncio accepts in
bursts), so a few keep-alive clients that connect together all land on one worker and one
core. With a socket each, the kernel spreads new connections across the workers by their
address hash. The supervisor forwards SIGTERM/SIGINT, waits for the workers' graceful
shutdown, and restarts a worker that dies.

Metrics across workers: the supervisor gives the workers a fresh folder for prometheus-client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set before a worker imports prometheus-client),
so any worker's `/metrics` reports the totals of all of them. A worker that dies is marked dead
there (its live gauges go; its counts stay), and the folder is removed at shutdown.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shipyard.errors import InvalidInput
from shipyard.serving.app import DEFAULT_MAX_BODY_BYTES, ServingApp

CONFIG_ENV = "SHIPYARD_SERVE_CONFIG"
GRACEFUL_TIMEOUT_S = 30
CRASH_LOOP_S = 5.0  # a worker dying sooner than this after its start is not restarted
SWITCH_INTERVAL_S = 0.001  # see _run_worker


@dataclass
class ServeConfig:
    refs: list[str]
    home: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log: bool = True
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Apps mounted beside the models, as import strings `module:factory` (the layers above,
    # e.g. the dashboard, which this layer cannot import): factory(home) -> ASGI app, and the
    # module's MOUNTED_PREFIXES say which paths it answers.
    mounts: list[str] = field(default_factory=list)

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

    def load_version(name: str, version: int, default: Predictor) -> Predictor:
        """Another version of a served model, for a release: the same serving options."""
        return Predictor.load(f"{name}@{version}", project=project, options=default.options)

    from shipyard.monitoring.exporter import MonitoringExporter
    from shipyard.release.router import ReleaseRouter
    from shipyard.serving.balance import BOARD_ENV, LoadBoard

    return ServingApp(
        load,
        sink_factory=open_sink if config.log else None,
        max_body_bytes=config.max_body_bytes,
        board=LoadBoard.from_env(os.environ.get(BOARD_ENV)),
        router=ReleaseRouter(project, load_version=load_version),
        extensions=release_endpoints(project),
        extension_docs=release_docs(),
        collectors=[MonitoringExporter(project)],  # drift and SLO gauges on /metrics
    )


def release_docs() -> dict[str, Any]:
    """The OpenAPI entry of `POST /feedback`."""
    from shipyard.serving.openapi import post_operation

    item = {
        "type": "object",
        "required": ["request_id"],
        "properties": {
            "request_id": {"type": "string", "maxLength": 64},
            "label": {},
            "reward": {"type": "number"},
        },
        "additionalProperties": False,
    }
    body = {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}
    answer = {"type": "object", "properties": {"accepted": {"type": "integer"}}}
    return {
        "/feedback": post_operation(
            "Delayed outcomes (a label and/or a reward) for logged predictions, by request id",
            body,
            answer,
        )
    }


def release_endpoints(project: Any) -> dict[tuple[str, str], Any]:
    """`POST /feedback`: delayed labels and rewards, joined to the log by request id."""
    from shipyard.serving.app import Request, Response, json_response

    def feedback(request: Request) -> Response:
        from shipyard.predictions.feedback import add
        from shipyard.serving.protocols import RequestError

        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(
                f"the body is not JSON: {exc}",
                field="body",
                expected='{"request_id": ..., "label": ...} or a list of them',
                status=400,
            ) from None
        items = payload if isinstance(payload, list) else [payload]
        count = add(items, project=project, source=request.headers.get("user-agent", "http"))
        return json_response(200, {"accepted": count})

    return {("POST", "/feedback"): feedback}


def create_app() -> Any:
    """uvicorn's factory in each worker process."""
    config = ServeConfig.from_env()
    return mount(build_app(config), config.mounts, config.home)


def mount(app: ServingApp, mounts: list[str], home: str | None) -> Any:
    """`app` with the apps named in `mounts` answering their own path prefixes."""
    import importlib

    routes: list[tuple[str, Any]] = []
    for target in mounts:
        module_name, _, factory = target.partition(":")
        module = importlib.import_module(module_name)
        mounted = getattr(module, factory)(home)
        routes += [(prefix, mounted) for prefix in module.MOUNTED_PREFIXES]
    return PrefixDispatch(app, routes) if routes else app


class PrefixDispatch:
    """Sends HTTP requests under a mounted prefix to its app; the rest (and the lifespan) to
    the model server."""

    def __init__(self, app: ServingApp, routes: list[tuple[str, Any]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            for prefix, mounted in self.routes:
                if path == prefix or path.startswith(prefix + "/"):
                    await mounted(scope, receive, send)
                    return
        await self.app(scope, receive, send)


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
    mounts: list[str] | None = None,
) -> None:
    """Serve `refs` until SIGINT/SIGTERM; in-flight requests finish and the log is flushed.

    `mounts`: import strings of apps served beside the models (see `ServeConfig.mounts`)."""
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1; got {workers}")
    if not 0 < port < 65536:
        raise InvalidInput(f"port must be between 1 and 65535; got {port}")
    folder = str(Path(home).resolve()) if home is not None else None
    check_refs(refs, folder)
    config = ServeConfig(
        refs=list(refs),
        home=folder,
        max_body_bytes=max_body_bytes,
        log=log,
        mounts=list(mounts or []),
    )
    if workers == 1:  # each worker puts the configuration where create_app() finds it
        _run_worker(config.to_env(), host, port, graceful_timeout_s, reuse_port=False)
    else:
        _supervise(config.to_env(), host, port, workers, graceful_timeout_s)


def _uvicorn_server(graceful_timeout_s: int) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            "shipyard.deploy.local:create_app",
            factory=True,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=graceful_timeout_s,
        )
    )


def _listening_socket(
    host: str, port: int, *, reuse_port: bool, listen: bool = True
) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(2048)
    return sock


def _run_worker(
    config_env: str,
    host: str,
    port: int,
    graceful_timeout_s: int,
    board: str | None = None,
    *,
    reuse_port: bool = True,
) -> None:
    """One worker: its own socket on the shared port, uvicorn serving the app on it."""
    from shipyard.serving.balance import BOARD_ENV

    os.environ[CONFIG_ENV] = config_env
    # The prediction log's writer thread holds the GIL while it builds Arrow columns; the event
    # loop waiting for it is a request's tail latency. Python's default 5 ms switch interval
    # lets one such stretch delay every request in flight by up to 5 ms; 1 ms bounds it.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if board is not None:
        os.environ[BOARD_ENV] = board
    sock = _listening_socket(host, port, reuse_port=reuse_port)
    _uvicorn_server(graceful_timeout_s).run(sockets=[sock])


def _supervise(
    config_env: str, host: str, port: int, workers: int, graceful_timeout_s: int
) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    from shipyard.serving.balance import LoadBoard
    from shipyard.serving.metrics import MULTIPROC_ENV

    # The supervisor binds (without listening) first: a taken port fails here, at once, and
    # the port stays reserved for the workers' group while any of them restarts.
    reserved = _listening_socket(host, port, reuse_port=True, listen=False)
    board = LoadBoard.create(workers)
    # Spawned workers inherit this environment: each imports prometheus-client with it set.
    metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
    previous_env = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")

    def worker(index: int) -> Any:
        args = (config_env, host, port, graceful_timeout_s, f"{board.name}:{index}:{workers}")
        return context.Process(target=_run_worker, args=args)

    processes = [worker(index) for index in range(workers)]
    started = [0.0] * workers
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index, process in enumerate(processes):
            process.start()
            started[index] = time.monotonic()
        while not stopping:
            time.sleep(0.2)
            for index, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started[index] < CRASH_LOOP_S:
                    raise InvalidInput(
                        f"a server worker exited with code {process.exitcode} right after "
                        "starting; see the messages above"
                    )
                LoadBoard.reset(board, index, workers)  # its requests died with it
                # Its queue went with it; its counts stay in the totals.
                mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
                processes[index] = worker(index)
                processes[index].start()  # died after serving a while: replace it
                started[index] = time.monotonic()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + graceful_timeout_s + 5
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        reserved.close()
        board.close()
        board.unlink()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if previous_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous_env
        for sig, handler in previous.items():
            signal.signal(sig, handler)
