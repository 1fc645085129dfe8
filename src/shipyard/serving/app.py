"""The model server as a raw ASGI app: routing, body limits, request ids, errors, the log.

Raw ASGI rather than a framework because the per-request path is the product here: each
request costs a dict lookup to route, one JSON parse, one signature check (shared by a
micro-batch), the model, one JSON dump, and an O(1) append to the prediction log's queue.

Endpoints (every model served is reachable under its name):

    GET  /v2/health/live | /v2/health/ready          liveness; readiness once models are warm
    GET  /v2                                          server metadata (Open Inference Protocol)
    GET  /v2/models/{name}[/versions/{v}][/ready]     model metadata / readiness
    POST /v2/models/{name}[/versions/{v}]/infer       Open Inference Protocol v2
    POST /v2/models/{name}[/versions/{v}]/explain     per-feature contributions (SHAP)
    GET  /v2/models/{name}/importance                 global feature importance
    POST /invocations | /models/{name}/invocations    MLflow scoring payloads
    POST /predict | /predict/{name}                   plain JSON records
    POST /preview/...                                 any prediction route, answered by a
                                                      blue/green rollout's green version
    GET  /metrics                                     Prometheus text format
    GET  /openapi.json                                the OpenAPI document of all of the above
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.serving import protocols
from shipyard.serving.balance import LoadBoard
from shipyard.serving.batching import MicroBatcher
from shipyard.serving.cache import ResponseCache
from shipyard.serving.metrics import UNKNOWN, Collector, ServingMetrics
from shipyard.serving.predictor import HookFailed
from shipyard.serving.protocols import RequestError
from shipyard.serving.record import DEFAULT_ARM, DiscardSink, PredictionRecord, PredictionSink
from shipyard.serving.request_ids import new_request_id
from shipyard.serving.routing import PREVIEW_PREFIX, Route, Router, wants_preview

if TYPE_CHECKING:
    from shipyard.serving.predictor import Prediction, Predictor

log = logging.getLogger("shipyard.serving")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_V2_MODEL = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>infer|ready|explain|importance))?$"
)
_NAMED = re.compile(r"^/(?:predict/(?P<p>[^/]+)|models/(?P<m>[^/]+)/invocations)$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    request_id: str
    started: float
    preview: bool = False

    @functools.cached_property
    def logged_inputs(self) -> str:
        """The body as the prediction log keeps it; made once, shared by the answer's record
        and its shadow copy's."""
        return protocols.logged_request(self.body, self.headers)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # run once the response is sent (a shadow copy)


Extension = Callable[[Request], Response]
GAUGE_REFRESH_S = 1.0  # across workers, each worker's gauges are refreshed this often
MAX_SHADOWS_IN_FLIGHT = 256  # mirrored requests waiting for the candidate; beyond: dropped
SHADOW_BATCH_S = 0.02  # shadow copies wait this long to be predicted together


def json_response(status: int, data: Any) -> Response:
    return Response(status, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))


class ServedModel:
    """One model behind the server: its predictor, batcher and cache."""

    def __init__(self, predictor: Predictor, metrics: ServingMetrics) -> None:
        self.predictor = predictor
        self.name = predictor.name
        self.version = predictor.version.version
        self.labels = (self.name, str(self.version))
        options = predictor.options
        batch_rows = metrics.batch_rows.labels(*self.labels)
        self.batcher = MicroBatcher(
            predictor,
            max_batch_size=options.max_batch_size,
            max_wait_ms=options.max_batch_wait_ms,
            observe=batch_rows.observe,
        )
        self.cache = (
            ResponseCache(size=options.cache_size, ttl_s=options.cache_ttl_s)
            if options.cache_size > 0
            else None
        )
        self.batchable = predictor.signature is None or predictor.signature.kind == "table"
        self._metrics = metrics
        self._answered: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._explainer: Any = None

    def answered(self, protocol: str, latency_s: float, arm: str = DEFAULT_ARM) -> None:
        """Count a 200 and its latency; the labelled series are looked up once per protocol
        and arm, not on every request (a `labels()` call costs microseconds)."""
        series = self._answered.get((protocol, arm))
        if series is None:
            labels = (*self.labels, arm, protocol)
            series = self._answered[(protocol, arm)] = (
                self._metrics.requests.labels(*labels, "200"),
                self._metrics.latency.labels(*labels),
            )
        series[0].inc()
        series[1].observe(latency_s)

    def explainer(self) -> Any:
        """SHAP's explainer for this version, built on first use and kept (tens of ms)."""
        if self._explainer is None:
            from shipyard.serving.explain import Explainer

            self._explainer = Explainer(self.predictor.loaded)
        return self._explainer


class ServingApp:
    """The ASGI app. `loader` builds the predictors; it runs in a thread at startup so that
    liveness answers while models load, and readiness only once they are loaded and warm."""

    def __init__(
        self,
        loader: Callable[[], list[Predictor]],
        *,
        sink: PredictionSink | None = None,
        sink_factory: Callable[[], PredictionSink] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        board: LoadBoard | None = None,
        router: Router | None = None,
        extensions: Mapping[tuple[str, str], Extension] | None = None,
        extension_docs: Mapping[str, Any] | None = None,
        collectors: Sequence[Collector] = (),
    ) -> None:
        """`collectors`: more metrics for `/metrics`, from the layers above (drift, SLOs),
        collected at scrape time."""
        self.loader = loader
        self.board = board
        self.router = router
        self.extension_docs = dict(extension_docs or {})
        self.shadows_in_flight = 0
        self._background: set[asyncio.Task[None]] = set()
        self._shadow_queue: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._shadow_timer: asyncio.TimerHandle | None = None
        self.sink: PredictionSink = sink or DiscardSink()
        self.sink_factory = sink_factory
        self.max_body_bytes = max_body_bytes
        self.metrics = ServingMetrics(collectors)
        self._gauges: asyncio.Task[None] | None = None
        self.models: dict[str, ServedModel] = {}
        self.ready = False
        self.load_error: str | None = None
        self._loading: asyncio.Task[None] | None = None
        self._exact: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
            ("GET", "/v2/health/live"): self._live,
            ("GET", "/v2/health/ready"): self._ready,
            ("GET", "/v2"): self._server_metadata,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/openapi.json"): self._openapi,
            ("POST", "/invocations"): self._invocations,
            ("POST", "/predict"): self._predict,
        }
        # Endpoints of the layers above (feedback): blocking work, run in a thread.
        for key, handler in (extensions or {}).items():
            self._exact[key] = self._extension(handler)

    @classmethod
    def of(cls, predictors: list[Predictor], **options: Any) -> ServingApp:
        """An app over predictors already loaded (tests, embedding)."""
        return cls(lambda: predictors, **options)

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        """Load and warm every model (blocking); readiness turns on when this returns."""
        predictors = self.loader()
        models = {}
        for predictor in predictors:
            predictor.warm_up()
            models[predictor.name] = ServedModel(predictor, self.metrics)
        if self.sink_factory is not None:
            self.sink = self.sink_factory()
        self.models = models
        if self.router is not None:
            # Loads what the live rollouts need, then returns: ready means routable.
            self.router.start(self.prepare, models, self.metrics)
        self.ready = True
        if self.board is not None:
            self.board.mark_ready()

    def prepare(self, predictor: Predictor) -> ServedModel:
        """Warm a version loaded for a release and wrap it like the default ones (blocking).

        A candidate that fails its warm-up is still served to its share: failing on live
        traffic is what the rollout's analysis measures and rolls back on."""
        try:
            predictor.warm_up()
        except Exception as exc:
            log.warning("%s failed its warm-up (%s: %s)", predictor.ref, type(exc).__name__, exc)
        return ServedModel(predictor, self.metrics)

    async def _startup(self) -> None:
        async def load_in_thread() -> None:
            try:
                await asyncio.to_thread(self.load)
            except Exception as exc:  # readiness stays off and says why
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("loading the models failed: %s", self.load_error)

        self._loading = asyncio.create_task(load_in_thread())
        if self.metrics.multiprocess:
            self._gauges = asyncio.create_task(self._refresh_gauges())

    async def _refresh_gauges(self) -> None:
        """Across workers a scrape reads every worker's gauges from their files, but only the
        answering worker refreshes its own then: the others refresh theirs on a timer."""
        while True:
            self.metrics.observe(self.sink)
            await asyncio.sleep(GAUGE_REFRESH_S)

    async def _shutdown(self) -> None:
        if self._gauges is not None:
            self._gauges.cancel()
        if self._loading is not None and not self._loading.done():
            await self._loading
        if self._shadow_queue:
            self._release_shadows()
        if self._background:  # shadow copies still running: their records belong in the log
            await asyncio.wait(self._background, timeout=5.0)
        if self.router is not None:
            self.router.close()
        await asyncio.to_thread(self.sink.close)

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope["headers"]
        }
        request_id = headers.get(REQUEST_ID_HEADER, "")
        if not _REQUEST_ID.match(request_id):
            request_id = new_request_id()  # UUIDv7 layout: its lookup goes to its hour's files
        board = self.board
        close = False
        if board is not None:
            board.enter()
        path = scope["path"]
        preview = False
        if path.startswith(PREVIEW_PREFIX + "/"):  # blue/green: the green version answers
            path, preview = path[len(PREVIEW_PREFIX) :], True
        try:
            body = await self._body(headers, receive)
            request = Request(scope["method"], path, headers, body, request_id, started)
            request.preview = preview or wants_preview(headers)
            response = await self._route(request)
        except Exception as exc:
            response = self._error(exc, scope.get("path", ""))
        finally:
            if board is not None:
                close = board.should_close()  # counted while this request is still in flight
                board.leave()
        response.headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
        if board is not None:
            response.headers.append((b"x-shipyard-worker", board.label))
            if close:
                response.headers.append((b"connection", b"close"))  # reconnect: maybe elsewhere
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        if response.after is not None:
            response.after()

    async def _body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise RequestError(
                f"the body is {declared} bytes; the limit is {self.max_body_bytes}",
                field="body",
                expected=f"at most {self.max_body_bytes} bytes",
                received=int(declared),
                status=413,
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(
                    f"the body is over the limit of {self.max_body_bytes} bytes",
                    field="body",
                    expected=f"at most {self.max_body_bytes} bytes",
                    received=f"more than {self.max_body_bytes} bytes",
                    status=413,
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _route(self, request: Request) -> Response:
        handler = self._exact.get((request.method, request.path))
        if handler is not None:
            return await handler(request)
        match = _V2_MODEL.match(request.path)
        if match is not None:
            return await self._v2_model(request, match)
        named = _NAMED.match(request.path)
        if named is not None and request.method == "POST":
            if named.group("p") is not None:
                return await self._predict(request, named.group("p"))
            return await self._invocations(request, named.group("m"))
        if any(path == request.path for _, path in self._exact) or match or named:
            allowed = sorted(method for method, path in self._exact if path == request.path)
            return json_response(
                405,
                {
                    "error": f"{request.method} is not allowed on {request.path}",
                    "allowed": allowed or ["POST"],
                },
            )
        return json_response(404, {"error": f"no endpoint {request.path}; see /openapi.json"})

    # -- errors ----------------------------------------------------------------------------

    def _error(self, exc: Exception, path: str) -> Response:
        response, kind = self._error_response(exc, path)
        self._count_error(exc, kind, response.status)
        return response

    def _error_response(self, exc: Exception, path: str) -> tuple[Response, str]:
        """The answer to a failed request, and the error's class for the metrics."""
        from shipyard.registry.signature import SignatureError
        from shipyard.serving.explain import ExplanationUnavailable

        if isinstance(exc, RequestError):
            return json_response(exc.status, exc.to_json()), "request"
        if isinstance(exc, SignatureError):
            return json_response(422, {"error": exc.message, "problems": exc.problems}), "signature"
        if isinstance(exc, NotFound):
            return json_response(404, {"error": exc.message}), "not_found"
        if isinstance(exc, ExplanationUnavailable):  # this model cannot be explained: 409
            return json_response(409, {"error": exc.message}), "unexplainable"
        if isinstance(exc, HookFailed):
            log.error("%s", exc.message)
            return json_response(500, {"error": exc.message}), "hook"
        if isinstance(exc, InvalidInput):
            return json_response(422, {"error": exc.message}), "input"
        if isinstance(exc, ShipyardError):
            return json_response(500, {"error": exc.message}), "model"
        log.exception("unexpected error answering %s", path)
        message = f"internal error ({type(exc).__name__}); see the server log"
        return json_response(500, {"error": message}), "internal"

    def _count_error(self, exc: Exception, kind: str, status: int) -> None:
        """Errors by class; a prediction request that failed once its model was known also
        counts, with its status code, among that model's requests (error ratios by arm)."""
        labels = getattr(exc, _METRIC_LABELS, None)
        if labels is None:
            self.metrics.errors.labels(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, kind).inc()
            return
        self.metrics.errors.labels(*labels, kind).inc()
        self.metrics.requests.labels(*labels, str(status)).inc()

    # -- health and metadata ---------------------------------------------------------------

    async def _live(self, request: Request) -> Response:
        return json_response(200, {"live": True})

    async def _ready(self, request: Request) -> Response:
        # With several workers, the server is ready when all of them are: a load balancer
        # that saw one ready worker would otherwise send requests to one still loading.
        if self.ready and (self.board is None or self.board.all_ready()):
            return json_response(200, {"ready": True})
        body: dict[str, Any] = {"ready": False}
        if self.ready:
            body["waiting_for"] = "other workers still loading their models"
        if self.load_error:
            body["error"] = self.load_error
        return json_response(503, body)

    async def _server_metadata(self, request: Request) -> Response:
        from shipyard import __version__

        return json_response(
            200,
            {
                "name": "shipyard",
                "version": __version__,
                "extensions": ["binary_tensor_data", "explain"],
            },
        )

    async def _metrics(self, request: Request) -> Response:
        # In a thread: merging the workers' files and the collectors of the layers above
        # (which may read the metadata store) must not hold up requests on the event loop.
        text = await asyncio.to_thread(self.metrics.render, self.sink)
        return Response(200, text, b"text/plain; version=0.0.4; charset=utf-8")

    async def _openapi(self, request: Request) -> Response:
        from shipyard.serving.openapi import openapi_document

        predictors = [m.predictor for m in self.models.values()]
        return json_response(200, openapi_document(predictors, self.extension_docs))

    def _model(self, name: str | None, version: str | None = None) -> ServedModel:
        if not self.ready:
            raise RequestError(
                "the models are still loading; retry when /v2/health/ready answers 200",
                status=503,
            )
        if name is None:
            if len(self.models) != 1:
                raise RequestError(
                    f"this server serves {len(self.models)} models ({', '.join(self.models)}); "
                    "name one in the path",
                    field="path",
                    expected="/predict/{name} or /models/{name}/invocations",
                    status=404,
                )
            served = next(iter(self.models.values()))
        else:
            found = self.models.get(name)
            if found is None:
                raise RequestError(
                    f"model {name!r} is not served here; served: {', '.join(sorted(self.models))}",
                    field="model",
                    expected=", ".join(sorted(self.models)),
                    received=name,
                    status=404,
                )
            served = found
        if version is not None and version != str(served.version):
            routed = self._routed_version(served.name, version)
            if routed is not None:
                return routed
            raise RequestError(
                f"model {served.name!r} version {version!r} is not served here; this server "
                f"serves version {served.version}",
                field="version",
                expected=str(served.version),
                received=version,
                status=404,
            )
        return served

    def _routed_version(self, name: str, version: str) -> ServedModel | None:
        """Another version of the model that a live release has loaded (a candidate)."""
        if self.router is None or not version.isdigit():
            return None
        return self.router.version(name, int(version))

    async def _v2_model(self, request: Request, match: re.Match[str]) -> Response:
        action = match.group("action")
        served = self._model(match.group("name"), match.group("version"))
        if action is None and request.method == "GET":
            return json_response(200, _model_metadata(served))
        if action == "ready" and request.method == "GET":
            return json_response(200, {"name": served.name, "ready": True})
        if action == "infer" and request.method == "POST":
            # A request that names its version gets that version, whatever the release says.
            routed = match.group("version") is None
            return await self._answer(request, served, "v2", routed=routed)
        if action == "explain" and request.method == "POST":
            return await self._explain(request, served)
        if action == "importance" and request.method == "GET":
            return await self._importance(served)
        return json_response(405, {"error": f"{request.method} is not allowed on {request.path}"})

    # -- predictions -----------------------------------------------------------------------

    async def _predict(self, request: Request, name: str | None = None) -> Response:
        return await self._answer(request, self._model(name), "predict")

    async def _invocations(self, request: Request, name: str | None = None) -> Response:
        return await self._answer(request, self._model(name), "mlflow")

    async def _answer(
        self, request: Request, served: ServedModel, protocol: str, *, routed: bool = True
    ) -> Response:
        try:
            decoded = protocols.decode(protocol, request.body, served.predictor, request.headers)
            route = self._route_of(served, request, decoded) if routed else None
        except Exception as exc:  # counted by `_error` under this model, before any arm
            _label_failure(exc, served, UNKNOWN, protocol)
            raise
        arm = DEFAULT_ARM
        hooks_off: frozenset[str] = frozenset()
        if route is not None:
            served, arm, hooks_off = route.served, route.arm, route.hooks_off
        try:
            prediction = await self._prediction(served, decoded, hooks_off)
        except Exception as exc:
            self._record_failure(request, served, protocol, arm, exc)
            _label_failure(exc, served, arm, protocol)
            raise
        predictor = served.predictor
        body, _ = protocols.encode(protocol, decoded, prediction, predictor, request.request_id)
        logged = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        response = Response(200, logged)
        if protocol == "v2" and decoded.binary_outputs:
            response = _binary_v2(body, decoded, prediction)
        self._record(request, served, protocol, logged, prediction, arm, route)
        if route is not None and route.shadow is not None:
            response.after = self._mirror(request, route, protocol, decoded)
        return response

    def _route_of(
        self, served: ServedModel, request: Request, decoded: protocols.Decoded
    ) -> Route | None:
        route = (
            self.router.route(served, request.headers, decoded.data, request.preview)
            if self.router is not None
            else None
        )
        if route is None and request.preview:
            raise RequestError(
                f"model {served.name!r} has no blue/green rollout live: no preview version",
                field="path",
                expected="a prediction route without /preview",
                status=404,
            )
        return route

    def _mirror(
        self, request: Request, route: Route, protocol: str, decoded: protocols.Decoded
    ) -> Callable[[], None] | None:
        """The shadow copy, started once the user has the answer. Its cost and its failures
        stay off the user's path: it runs as its own task, is dropped (and counted) when too
        many are waiting, and an error is only logged with the shadow arm."""
        if self.shadows_in_flight >= MAX_SHADOWS_IN_FLIGHT:
            self.metrics.shadow_dropped.inc()
            return None
        shadow = route.shadow
        assert shadow is not None

        async def run() -> None:
            started = time.perf_counter()
            try:
                prediction = await self._prediction(shadow, decoded, frozenset())
                body, _ = protocols.encode(
                    protocol, decoded, prediction, shadow.predictor, request.request_id
                )
                outputs = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
                status = 200
            except Exception as exc:  # the user never sees it; the analysis does
                prediction = None
                outputs = orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
                status = 500
            finally:
                self.shadows_in_flight -= 1
            latency = time.perf_counter() - started
            self._append(request, shadow, protocol, outputs, route.shadow_arm, latency, status,
                         prediction.filters_fired if prediction is not None else [])  # fmt: skip

        def start() -> None:
            self.shadows_in_flight += 1
            self._shadow_queue.append(run)
            if self._shadow_timer is None:
                loop = asyncio.get_running_loop()
                self._shadow_timer = loop.call_later(SHADOW_BATCH_S, self._release_shadows)

        return start

    def _release_shadows(self) -> None:
        """Start the queued shadow copies together: started in one loop turn, they reach the
        candidate's micro-batcher together and cost one model call, not one each, so at
        100% mirroring the candidate adds a fraction of a request's cost to the loop."""
        self._shadow_timer = None
        queued, self._shadow_queue = self._shadow_queue, []
        loop = asyncio.get_running_loop()
        for run in queued:
            task = loop.create_task(run())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _prediction(
        self,
        served: ServedModel,
        decoded: protocols.Decoded,
        hooks_off: frozenset[str] = frozenset(),
    ) -> Prediction:
        cache = served.cache
        key = b""
        if cache is not None:
            key = ResponseCache.key(served.version, decoded.data, decoded.outputs)
            hit = cache.get(key)
            self.metrics.cache.labels(*served.labels, "hit" if hit else "miss").inc()
            if hit is not None:
                return hit
        if served.batchable and not decoded.wants_probabilities and not hooks_off:
            prediction = await served.batcher.predict(decoded.data, decoded.rows)
        else:  # alone: a flag switched a post-processor off for this request only
            prediction = served.predictor.predict(
                decoded.data, probabilities=decoded.wants_probabilities, hooks_off=hooks_off
            )
            served.batcher.observe(decoded.rows)
        if cache is not None:
            cache.put(key, prediction)
        return prediction

    def _record(
        self,
        request: Request,
        served: ServedModel,
        protocol: str,
        outputs: bytes,
        prediction: Prediction,
        arm: str = DEFAULT_ARM,
        route: Route | None = None,
    ) -> None:
        latency = time.perf_counter() - request.started
        served.answered(protocol, latency, arm)
        fired = prediction.filters_fired
        for rule in fired:
            self.metrics.filtered.labels(served.name, rule).inc(
                sum(1 for item in prediction.withheld if item == rule)
            )
        if route is not None and route.fired:
            fired = [*fired, *(f"flag:{rule}" for rule in route.fired)]
        self._append(request, served, protocol, outputs, arm, latency, 200, fired)

    def _record_failure(
        self, request: Request, served: ServedModel, protocol: str, arm: str, exc: Exception
    ) -> None:
        """A server-side failure is logged too (status 500): a rollout's error rate reads it.
        Bad input (4xx) is the client's, not the version's, and is not."""
        from shipyard.registry.signature import SignatureError

        if isinstance(exc, RequestError | SignatureError | InvalidInput | NotFound):
            return
        latency = time.perf_counter() - request.started
        error = orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
        self._append(request, served, protocol, error, arm, latency, 500, [])

    def _append(
        self,
        request: Request,
        served: ServedModel,
        protocol: str,
        outputs: bytes,
        arm: str,
        latency: float,
        status: int,
        fired: list[str],
    ) -> None:
        self.sink.append(
            PredictionRecord(
                request_id=request.request_id,
                time=time.time() - latency,
                model=served.name,
                version=served.version,
                protocol=protocol,
                inputs=request.logged_inputs,
                outputs=outputs.decode(),
                latency_ms=latency * 1000.0,
                arm=arm,
                filters=fired,
                hooks=served.predictor.options.hooks,
                status=status,
            )
        )

    def _extension(self, handler: Extension) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await asyncio.to_thread(handler, request)

        return endpoint

    # -- explanations ----------------------------------------------------------------------

    async def _explain(self, request: Request, served: ServedModel) -> Response:
        decoded = protocols.decode("v2", request.body, served.predictor, request.headers)
        model_input, _ = served.predictor.check(decoded.data)
        output_class = decoded.parameters.get("output_class")
        explainer = await asyncio.to_thread(served.explainer)
        explanation = await asyncio.to_thread(
            explainer.explain_checked, model_input, output_class=output_class
        )
        return json_response(
            200,
            {
                "model_name": served.name,
                "model_version": str(served.version),
                "id": decoded.request_id or request.request_id,
                **explanation.to_json(),
            },
        )

    async def _importance(self, served: ServedModel) -> Response:
        explainer = await asyncio.to_thread(served.explainer)
        importance = await asyncio.to_thread(explainer.global_importance)
        return json_response(
            200,
            {
                "model_name": served.name,
                "model_version": str(served.version),
                **importance.to_json(),
            },
        )


_METRIC_LABELS = "_shipyard_metric_labels"


def _label_failure(exc: Exception, served: ServedModel, arm: str, protocol: str) -> None:
    """Tag a failed prediction's exception with its metric labels: `_error` counts it by
    class under them, on the error path only (nothing is added to a successful request)."""
    setattr(exc, _METRIC_LABELS, (*served.labels, arm, protocol))


def _model_metadata(served: ServedModel) -> dict[str, Any]:
    predictor = served.predictor
    signature = predictor.signature
    inputs: list[dict[str, Any]] = []
    if signature is not None:
        for spec in signature.inputs:
            inputs.append(
                {
                    "name": spec.name,
                    "datatype": _v2_type(spec),
                    "shape": [-1, *spec.shape[1:]] if spec.shape else [-1],
                }
            )
    return {
        "name": served.name,
        "versions": [str(served.version)],
        "platform": f"shipyard-{predictor.version.flavor}",
        "inputs": inputs,
        "outputs": [
            {
                "name": name,
                "datatype": "FP64" if name == "predict_proba" else "BYTES",
                "shape": [-1],
            }
            for name in protocols.available_outputs(predictor)
        ],
    }


def _v2_type(spec: Any) -> str:
    kind = spec.type.value
    if spec.dtype and spec.dtype != "category":
        import numpy as np

        return protocols.v2_datatype(np.dtype(spec.dtype))
    return {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}.get(kind, "BYTES")


def _binary_v2(
    body: dict[str, Any], decoded: protocols.Decoded, prediction: Prediction
) -> Response:
    header, binary = protocols.binary_outputs(body, decoded)
    return Response(
        200,
        header + binary,
        b"application/octet-stream",
        [(protocols.BINARY_HEADER.encode(), str(len(header)).encode())],
    )
