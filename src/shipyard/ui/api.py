"""The control API: HTTP over the Python API, under `/api/v1`, with its OpenAPI document.

Reads need a token of any role, or none when the project sets `open_reads = true`. Every state
change goes through `shipyard.ui.actions.perform` (role check, run as the token's owner, audit
record) and needs a token in the `Authorization: Bearer` header: the dashboard's cookie is
accepted for reads only, so a page on another site cannot make a browser change anything here.

Errors are JSON, `{"error": {"status": 404, "message": "..."}}`: 401 no valid token, 403 a role
too weak, 404 not found, 409 a conflict with the current state, 422 bad input (naming the field);
anything unexpected is a 500 with a request id to find the logged traceback, never the traceback
itself. Secrets are never logged: tokens travel only in headers, and no message repeats one.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at runtime,
# including the dependency aliases defined inside the route builders.
import dataclasses
import enum
import logging
import math
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.errors import (
    ArtifactNotFound,
    ConfigError,
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    ShipyardError,
    ValidationFailed,
)
from shipyard.project import Project
from shipyard.ui import actions, audit, tokens
from shipyard.ui.tokens import Forbidden, Token, Unauthorized

if TYPE_CHECKING:
    from shipyard.monitoring.slo import SLO, SLOEvaluation

log = logging.getLogger("shipyard.ui")

PREFIX = "/api/v1"
COOKIE = "shipyard_token"
MAX_PAGE = 500
_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)


# -- errors -----------------------------------------------------------------------------------


def _conflicts() -> tuple[type[ShipyardError], ...]:
    from shipyard.registry.aliases import GatesNotPassed
    from shipyard.release.rollouts import RolloutConflict

    return (RolloutConflict, GatesNotPassed)


def status_of(exc: ShipyardError) -> int:
    """The HTTP status a Python API error stands for."""
    explicit = getattr(exc, "status", None)
    if isinstance(explicit, int):
        return explicit
    if isinstance(exc, NotFound | ArtifactNotFound):
        return 404
    if isinstance(exc, InvalidInput | ConfigError | ValidationFailed):
        return 422
    if isinstance(exc, _conflicts()):
        return 409
    if isinstance(exc, DatabaseUnavailable | DatabaseLocked):
        return 503
    return 400


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"status": status, "message": message, **extra}}, status, headers=headers
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex[:12]
    # The path, never the headers or the query: a token only ever travels in a header.
    log.error(
        "request %s (%s %s) failed unexpectedly",
        request_id,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return error_response(
        500,
        f"internal error; the server log has the details under request id {request_id}",
        request_id=request_id,
    )


class GuardedRoute(APIRoute):
    """Turns the Python API's errors into JSON errors, and anything else into a bare 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, StarletteHTTPException):
                raise
            except ShipyardError as exc:
                return error_response(status_of(exc), exc.message)
            except Exception as exc:
                return _unexpected(request, exc)

        return guarded


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        received = error.get("input")
        shown = "" if isinstance(received, dict) else f", got {str(received)[:80]!r}"
        problems.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
    return "invalid request: " + "; ".join(problems)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, _validation_message(exc))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no API endpoint {request.method} {request.url.path}; see {PREFIX}/openapi.json"
    return error_response(exc.status_code, message)


# -- JSON -------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Python API results as JSON: `to_dict()`/`to_json()` where they exist, dataclasses by
    field (private ones left out), times in ISO 8601, NaN and infinities as null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    for method in ("to_dict", "to_json"):
        if callable(getattr(value, method, None)):
            return jsonable(getattr(value, method)())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if not field.name.startswith("_")
        }
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return str(value)


# -- authentication ---------------------------------------------------------------------------


def bearer(request: Request) -> str | None:
    """The token in the Authorization header; Unauthorized when the header is not Bearer."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    match = _BEARER.match(header)
    if match is None:
        raise Unauthorized("malformed Authorization header: expected `Authorization: Bearer shy_…`")
    return match.group(1)


class Access:
    """How a request proves who it is, for one project."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def reader(self, request: Request) -> Token | None:
        """A valid token (header or dashboard cookie), or None when reads are open and none
        was presented. A token that is presented must be valid, open reads or not."""
        presented = bearer(request) or request.cookies.get(COOKIE)
        if presented is None and self.project.settings.open_reads:
            return None
        return tokens.authenticate(presented, project=self.project)

    def admin(self, request: Request, what: str) -> Token:
        """An admin token, whatever `open_reads` says (tokens and audit are never open)."""
        presented = bearer(request) or request.cookies.get(COOKIE)
        token = tokens.authenticate(presented, project=self.project)
        tokens.authorize(token, "admin", what)
        return token

    def act(self, request: Request, action: str, target: str, **arguments: Any) -> Any:
        """Perform a state change; only the Authorization header counts (no cookie: CSRF)."""
        try:
            presented = bearer(request)
            if presented is None and request.cookies.get(COOKIE):
                raise Unauthorized(
                    f"{action} through the API needs the token in the Authorization header "
                    "(`Authorization: Bearer shy_…`); the dashboard's cookie is accepted for "
                    "reads only, and the dashboard's own forms for changes"
                )
            token = tokens.authenticate(presented, project=self.project)
        except Unauthorized as exc:
            actions.refuse(self.project, action, target, via="api", error=exc)
            raise
        return actions.perform(self.project, token, action, target, via="api", **arguments)


def _reader(request: Request) -> Token | None:
    access: Access = request.app.state.access  # the API app this request reached
    return access.reader(request)


# The token of a read (None when reads are open and none was sent).
Reader = Annotated[Token | None, Depends(_reader)]


# -- predictions ------------------------------------------------------------------------------

PREDICTION_FILTERS = ("start", "end", "model", "version", "arm", "request_id", "status")
PREDICTION_PAGE = ("limit", "offset", "after")


def search_predictions(
    project: Project,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model: str | None = None,
    version: int | None = None,
    arm: str | None = None,
    request_id: str | None = None,
    status: int | None = None,
    limit: int = 50,
    offset: int = 0,
    after: str | None = None,
) -> dict[str, Any]:
    """Logged predictions matching every filter given, newest first, one page.

    The dashboard's search (`shipyard.predictions.query.search`): every value is bound as a
    parameter of a fixed query, so nothing a client sends is ever read as SQL; the model and
    the hours prune whole folders of the log, and the newest hours are read first. `after` (a
    page's `next_after`) continues where that page ended without reading what came before it;
    `offset` skips rows (deep offsets read every row they skip).
    """
    from shipyard.predictions.query import Cursor, Filters, search
    from shipyard.registry.versions import check_model_name

    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, got {offset}")
    filters = Filters(
        model=check_model_name(model) if model is not None else None,
        version=version,
        arm=arm,
        request_id=request_id,
        status=status,
        since=_aware(start, "start"),
        until=_aware(end, "end"),
    )
    cursor = Cursor.decode(after) if after else None
    page = search(filters, after=cursor, limit=limit, offset=offset, project=project)
    more = page.next is not None
    return {
        "items": [jsonable(row) for row in page.rows],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
        "next_after": page.next.encode() if page.next else None,
    }


# -- SLOs -------------------------------------------------------------------------------------


def latest_slo_evaluations(project: Project, model: str | None = None) -> list[dict[str, Any]]:
    """Each declared SLO (of `model`) as its latest stored evaluation, in the shape of a live
    status (`SLOStatus.to_dict`) plus `source`: "stored", or "none" with empty values for an
    SLO never evaluated yet.

    The default of `GET /slos`: counting a week of the log for every SLO on each request
    takes seconds on a large log, while `shipyard slo check` (scheduled) or `shipyard monitor
    run` stores an evaluation anyway; the dashboard's overview reads the same rows.
    """
    from shipyard.monitoring import slo

    found: list[dict[str, Any]] = []
    for objective in slo.declared(model, project=project):
        latest = slo.history(objective.model, objective.name, limit=1, project=project)
        found.append(_stored_slo(objective, latest[-1] if latest else None))
    return found


def _stored_slo(objective: "SLO", last: "SLOEvaluation | None") -> dict[str, Any]:
    declared = {
        "model": objective.model,
        "slo": objective.name,
        "sli": objective.sli,
        "objective": objective.objective,
        "window": objective.window,
        "alerts": [rule.to_dict() for rule in objective.alerts],
    }
    if last is None:
        empty = {"at": None, "good": None, "total": None, "value": None}
        return {
            **declared,
            **empty,
            "budget_remaining": None,
            "burn_rates": {},
            "firing": [],
            "severities": [],
            "windows": {},
            "source": "none",
        }
    return {
        **declared,
        **last.detail,  # burn rates, firing, severities, windows, good, ... as stored
        "at": last.at,
        "total": last.events,
        "value": last.value,
        "budget_remaining": last.budget_remaining,
        "objective": last.objective,
        "source": "stored",
    }


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(
            f"{name} must carry a time zone, e.g. 2024-05-01T12:00:00Z; got {value.isoformat()}"
        )
    return value


# -- the API ----------------------------------------------------------------------------------


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, description="Items to skip (the previous next_offset).")]
Reason = Annotated[str, Body(embed=True, max_length=1000)]


def create_api(project: Project) -> FastAPI:
    """The control API for `project`, as an app to mount at `/api/v1`."""
    api = FastAPI(
        title="shipyard control API",
        version="1",
        summary="Datasets, runs, models, rollouts, flags, SLOs, drift, predictions and "
        "continuous training of a shipyard project.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the product works offline
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.router.route_class = GuardedRoute
    api.add_exception_handler(RequestValidationError, _on_validation)
    api.add_exception_handler(StarletteHTTPException, _on_http)
    access = Access(project)
    api.state.project = project
    api.state.access = access
    for router in (
        _whoami_routes(access),
        _data_routes(access),
        _run_routes(access),
        _model_routes(access),
        _rollout_routes(access),
        _flag_routes(access),
        _monitoring_routes(access),
        _prediction_routes(access),
        _ct_routes(access),
        _admin_routes(access),
    ):
        api.include_router(router)
    return api


def _router(tag: str) -> APIRouter:
    return APIRouter(tags=[tag], route_class=GuardedRoute)


def _whoami_routes(access: Access) -> APIRouter:
    router = _router("access")

    @router.get("/whoami", summary="The token presented, and what it may do")
    def whoami(token: Reader) -> Any:
        if token is None:
            return {"token": None, "role": None, "open_reads": True}
        allowed = sorted(action for action in actions.ACTIONS if actions.allowed(token, action))
        return {"token": token.to_dict(), "role": token.role, "may": allowed}

    return router


def _data_routes(access: Access) -> APIRouter:
    router = _router("datasets")
    project = access.project

    @router.get("/datasets", summary="Every dataset with its latest version")
    def datasets(_: Reader) -> Any:
        from shipyard.data import list_datasets

        return jsonable(list_datasets(project=project))

    @router.get("/datasets/{name}/versions", summary="Every version of a dataset")
    def dataset_versions(name: str, _: Reader) -> Any:
        from shipyard.data import versions

        return jsonable(versions(name, project=project))

    @router.get("/datasets/{name}/versions/{version}", summary="One version with its profile")
    def dataset_version(name: str, version: int, _: Reader) -> Any:
        from shipyard.data import get

        found = get(f"{name}@{version}", project=project)
        return {**jsonable(found), "profile": jsonable(found.profile)}

    return router


def _run_routes(access: Access) -> APIRouter:
    router = _router("runs")
    project = access.project

    @router.get("/runs", summary="Runs, newest first, filtered and paginated")
    def runs(
        _: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        pipeline: str | None = None,
        status: str | None = None,
        q: Annotated[
            str | None,
            Query(description="A run search query, e.g. `metrics.auc > 0.9` (see docs/runs.md)"),
        ] = None,
    ) -> Any:
        return jsonable(_runs_page(project, limit, offset, pipeline, status, q))

    @router.get("/runs/compare", summary="Params and metrics of runs side by side")
    def compare(_: Reader, ids: Annotated[list[str], Query(min_length=2)]) -> Any:
        from shipyard.tracking.runs import get_run

        found = [get_run(run_id, project=project) for run_id in ids]
        rows = []
        for prefix in ("params", "metrics"):
            keys = sorted({key for run in found for key in getattr(run, prefix)})
            for key in keys:
                values = [getattr(run, prefix).get(key) for run in found]
                rows.append(
                    {
                        "key": f"{prefix}.{key}",
                        "values": values,
                        "differs": len({repr(v) for v in values}) > 1,
                    }
                )
        return jsonable({"runs": [{"id": r.id, "name": r.name} for r in found], "rows": rows})

    @router.get("/runs/{run_id}", summary="One run (id or unique prefix)")
    def run(run_id: str, _: Reader) -> Any:
        from shipyard.tracking.runs import get_run

        return jsonable(get_run(run_id, project=project))

    return router


def _runs_page(
    project: Project,
    limit: int,
    offset: int,
    pipeline: str | None,
    status: str | None,
    q: str | None,
) -> dict[str, Any]:
    from sqlalchemy import select

    from shipyard.store.models import RunRecord
    from shipyard.tracking.runs import STATUSES, load_runs

    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
    query = select(RunRecord.id).order_by(RunRecord.started_at.desc(), RunRecord.id.desc())
    if pipeline is not None:
        query = query.where(RunRecord.pipeline == pipeline)
    if status is not None:
        query = query.where(RunRecord.status == status)
    if q:
        from shipyard.tracking.search import parse_query, to_where

        query = query.where(to_where(parse_query(q)))
    with project.metadata.read() as session:
        ids = list(session.scalars(query.limit(limit + 1).offset(offset)))
        found = load_runs(session, ids[:limit])
    return {
        "items": found,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(ids) > limit else None,
    }


def _model_routes(access: Access) -> APIRouter:
    router = _router("models")
    project = access.project

    @router.get("/models", summary="Every registered model")
    def models(_: Reader) -> Any:
        from shipyard.registry.versions import list_models

        return jsonable(list_models(project=project))

    @router.get("/models/{name}/versions", summary="Every version of a model")
    def model_versions(name: str, _: Reader) -> Any:
        from shipyard.registry.versions import versions

        return jsonable(versions(name, project=project))

    @router.get(
        "/models/{name}/versions/{version}",
        summary="One version: signature, metrics, lineage, and its rollouts",
    )
    def model_version(name: str, version: int, _: Reader) -> Any:
        from shipyard.registry.versions import get
        from shipyard.release.rollouts import list_rollouts
        from shipyard.tracking.lineage import lineage

        found = get(f"{name}@{version}", project=project)
        rollouts = [
            r.to_dict()
            for r in list_rollouts(project=project)
            if r.model == name and (version in r.candidates or r.champion == version)
        ]
        return {
            **jsonable(found),
            "lineage": jsonable(lineage(f"model:{name}@{version}", project=project)),
            "rollouts": jsonable(rollouts),
        }

    @router.get("/models/{name}/versions/{version}/diff", summary="What differs from another")
    def model_diff(
        name: str,
        version: int,
        _: Reader,
        against: Annotated[str, Query(description="A version number or an alias")] = "champion",
    ) -> Any:
        from shipyard.registry.diff import diff

        return jsonable(diff(f"{name}@{against}", f"{name}@{version}", project=project))

    @router.get("/models/{name}/versions/{version}/gates", summary="The latest gate report")
    def gate_report(name: str, version: int, _: Reader, policy: str = "champion") -> Any:
        from shipyard.gates.records import latest_report

        return jsonable(latest_report(f"{name}@{version}", policy, project=project))

    @router.get("/models/{name}/aliases", summary="The alias history of a model")
    def alias_history(name: str, _: Reader) -> Any:
        from shipyard.registry.aliases import history

        return jsonable(history(name, project=project))

    @router.put("/models/{name}/aliases/{alias}", summary="Point an alias at a version (admin)")
    def set_alias(
        name: str,
        alias: str,
        request: Request,
        version: Annotated[int, Body(embed=True, ge=1)],
        reason: Reason = "",
        force: Annotated[bool, Body(embed=True)] = False,
    ) -> Any:
        result = access.act(
            request, "alias.set", name, alias=alias, version=version, reason=reason, force=force
        )
        return jsonable(result)

    @router.delete("/models/{name}/aliases/{alias}", summary="Remove an alias (admin)")
    def unset_alias(name: str, alias: str, request: Request, reason: str = "") -> Any:
        return jsonable(access.act(request, "alias.unset", name, alias=alias, reason=reason))

    return router


def _rollout_routes(access: Access) -> APIRouter:
    router = _router("rollouts")
    project = access.project

    @router.get("/rollouts", summary="Rollouts, oldest first")
    def rollouts_list(_: Reader, active: bool = False) -> Any:
        from shipyard.release.rollouts import list_rollouts

        return jsonable(list_rollouts(active_only=active, project=project))

    @router.get("/rollouts/{name}", summary="One rollout with its decisions")
    def rollout(name: str, _: Reader) -> Any:
        from shipyard.release.rollouts import get, history

        return {
            **jsonable(get(name, project=project)),
            "decisions": jsonable(history(name, project=project)),
        }

    @router.post("/rollouts", status_code=201, summary="Start a rollout from its spec (operator)")
    def start(
        request: Request,
        spec: Annotated[
            dict[str, Any], Body(description="The rollout spec, as in a rollout TOML file")
        ],
    ) -> Any:
        name = spec.get("name")
        return jsonable(access.act(request, "rollout.start", str(name or ""), spec=spec))

    def simple(verb: str) -> None:
        @router.post(
            f"/rollouts/{{name}}/{verb}", summary=f"{verb.capitalize()} a rollout (operator)"
        )
        def change(name: str, request: Request, reason: Reason = "") -> Any:
            return jsonable(access.act(request, f"rollout.{verb}", name, reason=reason))

        change.__name__ = f"rollout_{verb}"

    for verb in ("pause", "resume", "abort", "approve"):
        simple(verb)

    @router.post("/rollouts/{name}/promote", summary="Promote a rollout now (operator)")
    def promote(
        name: str,
        request: Request,
        reason: Reason = "",
        version: Annotated[int | None, Body(embed=True, ge=1)] = None,
    ) -> Any:
        return jsonable(
            access.act(request, "rollout.promote", name, reason=reason, version=version)
        )

    @router.post("/rollouts/{name}/switch", summary="Blue/green switch (operator)")
    def switch(
        name: str,
        request: Request,
        reason: Reason = "",
        back: Annotated[bool, Body(embed=True)] = False,
    ) -> Any:
        return jsonable(access.act(request, "rollout.switch", name, reason=reason, back=back))

    return router


def _flag_routes(access: Access) -> APIRouter:
    router = _router("flags")
    project = access.project

    @router.get("/flags", summary="Feature flags")
    def flags(_: Reader, model: str | None = None) -> Any:
        from shipyard.release.flagstore import list_flags

        return jsonable(list_flags(model, project=project))

    @router.put("/flags/{name}", summary="Create or replace a flag (operator)")
    def set_flag(
        name: str,
        request: Request,
        model: Annotated[str, Body(embed=True)],
        definition: Annotated[dict[str, Any], Body(embed=True)],
    ) -> Any:
        return jsonable(access.act(request, "flag.set", name, model=model, definition=definition))

    @router.post("/flags/{name}/kill", summary="Kill switch: the default for everyone (operator)")
    def kill(name: str, request: Request) -> Any:
        return jsonable(access.act(request, "flag.kill", name))

    @router.post("/flags/{name}/revive", summary="Undo the kill switch (operator)")
    def revive(name: str, request: Request) -> Any:
        return jsonable(access.act(request, "flag.revive", name))

    @router.delete("/flags/{name}", summary="Delete a flag (admin)")
    def delete(name: str, request: Request) -> Any:
        access.act(request, "flag.delete", name)
        return {"deleted": name}

    return router


def _monitoring_routes(access: Access) -> APIRouter:
    router = _router("monitoring")
    project = access.project

    @router.get(
        "/slos",
        summary="Every SLO: its latest stored evaluation (value, error budget, burn rates), "
        "or computed now with live=true",
    )
    def slos(
        _: Reader,
        model: str | None = None,
        live: Annotated[
            bool,
            Query(
                description="Count the log now (slow on a large log) instead of reading the "
                "latest stored evaluation."
            ),
        ] = False,
    ) -> Any:
        from shipyard.monitoring.slo import status

        if live:
            return [
                {**jsonable(result), "source": "live"} for result in status(model, project=project)
            ]
        return jsonable(latest_slo_evaluations(project, model))

    @router.get("/slos/{model}/{slo}/history", summary="Stored evaluations of one SLO")
    def slo_history(
        model: str,
        slo: str,
        _: Reader,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> Any:
        from shipyard.monitoring.slo import history

        return jsonable(
            history(model, slo, since=_aware(since, "since"), limit=limit, project=project)
        )

    @router.get(
        "/drift",
        summary="Drift results, newest first (of one model, or the latest "
        "of each configured model)",
    )
    def drift(
        _: Reader,
        model: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        from shipyard.monitoring import drift as drift_module

        if model is not None:
            return jsonable(drift_module.history(model, limit=limit, project=project))
        latest = [
            drift_module.latest(name, project=project) for name in sorted(project.settings.drift)
        ]
        return jsonable([result for result in latest if result is not None])

    @router.get("/drift/{result_id}", summary="One drift result")
    def drift_result(result_id: int, _: Reader) -> Any:
        from shipyard.monitoring.drift import get

        return jsonable(get(result_id, project=project))

    @router.get("/alerts", summary="Alerts: open ones, or every one newest first")
    def alerts(
        _: Reader,
        model: str | None = None,
        open_only: bool = True,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> Any:
        from shipyard.monitoring import alerting

        if open_only:
            return jsonable(alerting.open_alerts(model, project=project))
        return jsonable(alerting.alerts(model, limit=limit, project=project))

    return router


def _prediction_routes(access: Access) -> APIRouter:
    router = _router("predictions")
    project = access.project

    @router.get("/predictions", summary="Logged predictions by filters, newest first")
    def predictions(
        request: Request,
        _: Reader,
        start: datetime | None = None,
        end: datetime | None = None,
        model: str | None = None,
        version: Annotated[int | None, Query(ge=1)] = None,
        arm: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
        after: Annotated[
            str | None,
            Query(max_length=2000, description="A page's next_after: the page after it."),
        ] = None,
    ) -> Any:
        unknown = sorted(set(request.query_params) - {*PREDICTION_FILTERS, *PREDICTION_PAGE})
        if unknown:
            raise InvalidInput(
                f"unknown query parameter {', '.join(unknown)}: the API takes filters, never "
                f"SQL; known: {', '.join(PREDICTION_FILTERS + PREDICTION_PAGE)}"
            )
        return search_predictions(
            project,
            start=start,
            end=end,
            model=model,
            version=version,
            arm=arm,
            request_id=request_id,
            status=status,
            limit=limit,
            offset=offset,
            after=after,
        )

    @router.get("/predictions/{request_id}", summary="Every record of one request")
    def prediction(request_id: str, _: Reader) -> Any:
        from shipyard.predictions.query import find

        return jsonable(find(request_id, project=project))

    @router.post(
        "/predictions/{request_id}/replay",
        summary="Re-run a logged request on its exact version (viewer, token needed)",
    )
    def replay(
        request_id: str,
        request: Request,
        arm: Annotated[str | None, Body(embed=True)] = None,
    ) -> Any:
        return jsonable(access.act(request, "prediction.replay", request_id, arm=arm))

    @router.post("/feedback", summary="Delayed labels by request id (operator)")
    def feedback(
        request: Request,
        items: Annotated[list[dict[str, Any]], Body(embed=True, min_length=1)],
    ) -> Any:
        return jsonable(access.act(request, "feedback.add", "labels", items=items))

    return router


def _ct_routes(access: Access) -> APIRouter:
    router = _router("continuous training")
    project = access.project

    @router.get("/ct/history", summary="Trigger firings, newest first")
    def ct_history(
        _: Reader,
        model: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> Any:
        from shipyard.training import history

        return jsonable(history(model, limit=limit, project=project))

    @router.get("/ct/triggers", summary="Every trigger: due now or not, and why")
    def ct_triggers(_: Reader, model: str | None = None) -> Any:
        from shipyard.training import trigger_states

        return jsonable(trigger_states(model=model, project=project))

    @router.post(
        "/ct/firings/{firing_id}/approve",
        summary="Roll out the version a firing left awaiting approval (operator)",
    )
    def ct_approve(
        firing_id: int,
        request: Request,
        note: Annotated[str, Body(embed=True, max_length=1000)] = "",
    ) -> Any:
        return jsonable(access.act(request, "ct.approve", str(firing_id), note=note))

    return router


def _admin_routes(access: Access) -> APIRouter:
    router = _router("admin")
    project = access.project

    @router.get("/tokens", summary="API tokens, without secrets (admin)")
    def token_list(request: Request, all: bool = False) -> Any:
        access.admin(request, "token.list")
        return jsonable(tokens.list_tokens(project=project, include_revoked=all))

    @router.post("/tokens", status_code=201, summary="Create a token; its secret is shown once")
    def token_create(
        request: Request,
        owner: Annotated[str, Body(embed=True, min_length=1, max_length=128)],
        role: Annotated[str, Body(embed=True, pattern="^(viewer|operator|admin)$")],
        expires_in: Annotated[
            str | None, Body(embed=True, description="e.g. 30d, 12h, 2w; never when null")
        ] = None,
        description: Annotated[str, Body(embed=True, max_length=1000)] = "",
    ) -> Any:
        duration = tokens.parse_duration(expires_in) if expires_in is not None else None
        secret, token = access.act(
            request,
            "token.create",
            owner,
            role=role,
            expires_in=duration,
            description=description,
        )
        return {"secret": secret, "token": token.to_dict()}

    @router.delete("/tokens/{public_id}", summary="Revoke a token (admin)")
    def token_revoke(public_id: str, request: Request) -> Any:
        return jsonable(access.act(request, "token.revoke", public_id))

    @router.get("/audit", summary="The audit trail, newest first (admin)")
    def audit_list(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
    ) -> Any:
        access.admin(request, "audit.list")
        found = audit.events(
            project=project,
            limit=limit,
            before_id=before_id,
            actor=actor,
            action=action,
            outcome=outcome,
        )
        return {
            "items": jsonable(found),
            "next_before_id": found[-1].id if len(found) == limit else None,
        }

    return router


__all__ = [
    "COOKIE",
    "PREFIX",
    "Access",
    "Forbidden",
    "Unauthorized",
    "create_api",
    "error_response",
    "jsonable",
    "latest_slo_evaluations",
    "search_predictions",
    "status_of",
]
