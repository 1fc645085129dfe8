"""The dashboard: server-rendered pages over the Python API, mounted at `/ui` by `create_app`.

Pages are HTML from Jinja2 templates (autoescaped: every name is user data) with charts drawn
here as inline SVG, so they show with no JavaScript library, no CDN and no font download; the
one stylesheet and the small script are served from this package (`/ui/static/...`).

Signing in: `/ui/login` takes an API token and keeps it in the `shipyard_token` cookie
(HttpOnly, SameSite=Strict, Path=/). With `open_reads = true` pages show without one, read-only.
Every state change is a POST form carrying a `csrf` field, HMAC-SHA256 keyed with the token's
secret over `csrf:<public id>`, compared in constant time; a POST whose Origin (or Referer)
names another host is refused too. The change itself runs through `actions.perform`: role
check, run as the token's owner, audit record.

Errors are pages with their status (401, 403, 404, 409, 422), never a traceback.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.errors import ShipyardError
from shipyard.project import Project
from shipyard.ui import actions, tokens
from shipyard.ui.api import status_of
from shipyard.ui.pages import common
from shipyard.ui.pages import drift as drift_pages
from shipyard.ui.pages import model_version as version_pages
from shipyard.ui.pages import overview as overview_pages
from shipyard.ui.pages import predictions as prediction_pages
from shipyard.ui.pages import rollout as rollout_pages
from shipyard.ui.pages import runs as run_pages
from shipyard.ui.pages import slos as slo_pages
from shipyard.ui.tokens import Forbidden, Token, Unauthorized

log = logging.getLogger("shipyard.ui")

PREFIX = "/ui"
COOKIE = "shipyard_token"
CSRF_FIELD = "csrf"
COOKIE_MAX_AGE = 12 * 3600  # a browser session; the token's own expiry still applies
ROLLOUT_ACTIONS = ("pause", "resume", "promote", "abort")
STATIC = {
    "style.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Only our own files: no inline script, no other origin (a CDN could not load if it tried).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Messages shown after a POST redirected back (a fixed set: nothing from the URL is echoed).
DONE = {
    "pause": "Rollout paused.",
    "resume": "Rollout resumed.",
    "promote": "Rollout promoted: the candidate is the champion now.",
    "abort": "Rollout aborted: all traffic is back on the champion.",
}
TITLES = {
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Invalid input",
    500: "Something went wrong",
    503: "Unavailable",
}


# -- who is looking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The signed-in token (None when reads are open and nobody signed in)."""

    token: Token | None
    csrf: str = ""

    @property
    def name(self) -> str:
        return self.token.owner if self.token else "anonymous"

    def may(self, action: str) -> bool:
        return actions.allowed(self.token, action)


class LoginRequired(Exception):
    """No valid token on a page that needs one: sign in (GET) or 401 (anything else)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def csrf_token(presented: str) -> str:
    """HMAC-SHA256 keyed with the token's secret over `csrf:<public id>` (hex)."""
    _, public_id, secret = presented.strip().split("_", 2)
    return hmac.new(secret.encode(), f"csrf:{public_id}".encode(), hashlib.sha256).hexdigest()


def _check_csrf(presented: str, sent: str | None) -> None:
    expected = csrf_token(presented)
    if not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden(
            "this form was refused: its CSRF field is missing or wrong (was the page open in "
            "another session, or posted from another site?); reload the page and try again. "
            "Nothing was changed."
        )


def _check_origin(request: Request) -> None:
    """A browser names the page a POST comes from; it must be this host."""
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            if urlsplit(value).netloc != host:
                raise Forbidden(
                    f"cross-site form post refused: its {header.title()} is not this dashboard's "
                    f"host {host!r}. Nothing was changed."
                )
            return


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard page only (never another site)."""
    if (
        value
        and value.startswith(PREFIX + "/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return PREFIX + "/"


# -- rendering --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PackageLoader("shipyard.ui", "templates"),
            # The drift report's macros draw the drift page's histograms and trends.
            jinja2.PrefixLoader(
                {"monitoring": jinja2.PackageLoader("shipyard.monitoring", "templates")}
            ),
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(quote=quote, urlencode=urlencode)
    return env


def _page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    project: Project,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    base = request.scope.get("root_path", "") + PREFIX
    html = (
        environment()
        .get_template(template)
        .render(
            base=base,
            viewer=viewer,
            open_reads=project.settings.open_reads,
            path=request.url.path,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _error_viewer(request: Request, project: Project | None) -> Viewer | None:
    """Who an error page's top bar shows: the viewer the route already checked, or else the
    token in the cookie, looked up quietly (a missing or dead token just shows nobody)."""
    checked = getattr(request.state, "viewer", None)
    if isinstance(checked, Viewer):
        return checked
    if project is None:
        return None
    presented = request.cookies.get(COOKIE)
    if presented:
        try:
            return Viewer(tokens.authenticate(presented, project=project), csrf_token(presented))
        except Exception:  # an error page must render whatever broke, the store included
            return None
    return Viewer(None) if project.settings.open_reads else None


def _error_page(
    request: Request, status: int, message: str, project: Project | None = None
) -> HTMLResponse:
    base = request.scope.get("root_path", "") + PREFIX
    viewer = None if status == 401 else _error_viewer(request, project)
    html = (
        environment()
        .get_template("error.html.j2")
        .render(
            base=base,
            viewer=viewer,
            open_reads=bool(project and project.settings.open_reads),
            path=request.url.path,
            status=status,
            title=TITLES.get(status, "Error"),
            message=message,
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _to_login(request: Request, reason: str) -> Response:
    if request.method != "GET":
        response: Response = _error_page(request, 401, reason)
    else:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = urlencode({"reason": reason, "next": target})
        base = request.scope.get("root_path", "") + PREFIX
        response = RedirectResponse(f"{base}/login?{query}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


class PageRoute(APIRoute):
    """Every dashboard route: errors become pages with their status, never a traceback.

    `project` (set by `router` on a subclass) lets an error page show who is signed in."""

    project: Project | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        project = self.project

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return _to_login(request, exc.reason)
            except ShipyardError as exc:
                return _error_page(request, status_of(exc), exc.message, project)
            except RequestValidationError as exc:
                return _error_page(request, 422, _validation_message(exc), project)
            except StarletteHTTPException as exc:
                return _error_page(request, exc.status_code, str(exc.detail), project)
            except Exception:
                log.exception("dashboard page %s failed", request.url.path)
                return _error_page(
                    request,
                    500,
                    "The page failed unexpectedly; the server log has the details.",
                    project,
                )

        return guarded


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


# -- the router -------------------------------------------------------------------------------


def _checked(request: Request, viewer: Viewer) -> Viewer:
    """Remember who this request's token belongs to, for an error page later in the request."""
    request.state.viewer = viewer
    return viewer


def router(project: Project) -> APIRouter:
    """The dashboard's routes (relative: `create_app` includes them under `/ui`)."""

    class ProjectPageRoute(PageRoute):
        pass

    ProjectPageRoute.project = project
    pages = APIRouter(route_class=ProjectPageRoute, include_in_schema=False)

    def reader(request: Request) -> Viewer:
        """Who may read this page; LoginRequired when nobody (and reads are not open)."""
        presented = request.cookies.get(COOKIE)
        if presented:
            try:
                token = tokens.authenticate(presented, project=project)
            except Unauthorized as exc:
                raise LoginRequired(exc.message) from None
            return _checked(request, Viewer(token, csrf_token(presented)))
        if project.settings.open_reads:
            return _checked(request, Viewer(None))
        raise LoginRequired("sign in with an API token to see the dashboard")

    def writer(request: Request, sent: str | None) -> Viewer:
        """The token behind a POST form, once its origin and CSRF field check out."""
        _check_origin(request)
        presented = request.cookies.get(COOKIE)
        if not presented:
            raise LoginRequired("sign in with an API token to change anything")
        try:
            token = tokens.authenticate(presented, project=project)
        except Unauthorized as exc:
            raise LoginRequired(exc.message) from None
        # Known before the CSRF check, so even its refusal page shows who is signed in.
        viewer = _checked(request, Viewer(token, csrf_token(presented)))
        _check_csrf(presented, sent)
        return viewer

    def render(request: Request, template: str, viewer: Viewer | None, **values: Any) -> Response:
        return _page(request, template, viewer, project, **values)

    # -- signing in ---------------------------------------------------------------------------

    @pages.get("/login")
    def login_form(request: Request, reason: str = "", next: str = "") -> Response:
        return render(request, "login.html.j2", None, reason=reason[:300], next=_safe_next(next))

    @pages.post("/login")
    def login(request: Request, token: str = Form(""), next: str = Form("")) -> Response:
        _check_origin(request)
        try:
            found = tokens.authenticate(token, project=project)
        except Unauthorized as exc:
            return _page(
                request,
                "login.html.j2",
                None,
                project,
                status=401,
                reason=exc.message,
                next=_safe_next(next),
            )
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            max_age=COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("dashboard sign-in by %s (token %s)", found.owner, found.public_id)
        return response

    @pages.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        _check_origin(request)
        presented = request.cookies.get(COOKIE)
        if presented:
            try:
                tokens.authenticate(presented, project=project)
            except Unauthorized:
                presented = None  # a dead token: clearing it needs no proof
        if presented:
            _check_csrf(presented, csrf)
        response = RedirectResponse(
            f"{PREFIX}/login?{urlencode({'reason': 'signed out'})}", status_code=303
        )
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages --------------------------------------------------------------------------------

    @pages.get("/")
    def overview(request: Request, page: str = "") -> Response:
        viewer = reader(request)
        values = overview_pages.overview(project, common.page_number(page))
        return render(request, "overview.html.j2", viewer, nav="overview", **values)

    @pages.get("/models/{name}")
    def model(request: Request, name: str, page: str = "") -> Response:
        viewer = reader(request)
        found, pager = version_pages.model_versions(project, name, common.page_number(page))
        return render(
            request,
            "model.html.j2",
            viewer,
            nav="overview",
            name=name,
            versions=found,
            pager=pager,
            when=common.when,
        )

    @pages.get("/models/{name}/{version}")
    def model_version(request: Request, name: str, version: str) -> Response:
        viewer = reader(request)
        values = version_pages.model_version(project, name, version)
        return render(request, "model_version.html.j2", viewer, nav="overview", **values)

    @pages.get("/rollouts")
    def rollout_list(request: Request, page: str = "") -> Response:
        viewer = reader(request)
        found, pager = rollout_pages.rollouts_page(project, common.page_number(page))
        return render(
            request, "rollouts.html.j2", viewer, nav="rollouts", rollouts=found, pager=pager
        )

    @pages.get("/rollouts/{name}")
    def rollout(request: Request, name: str, done: str = "") -> Response:
        viewer = reader(request)
        values = rollout_pages.rollout_page(project, name)
        return render(
            request, "rollout.html.j2", viewer, nav="rollouts", done=DONE.get(done, ""), **values
        )

    @pages.post("/rollouts/{name}/{verb}")
    def rollout_action(
        request: Request, name: str, verb: str, csrf: str = Form(""), reason: str = Form("")
    ) -> Response:
        viewer = writer(request, csrf)
        if verb not in ROLLOUT_ACTIONS:
            raise StarletteHTTPException(
                404, f"no rollout action {verb!r}; expected one of {', '.join(ROLLOUT_ACTIONS)}"
            )
        arguments = {"reason": reason.strip()[:500]} if reason.strip() else {}
        done = actions.perform(
            project, viewer.token, f"rollout.{verb}", name, via="dashboard", **arguments
        )
        target = f"{PREFIX}/rollouts/{quote(done.id, safe='')}?done={verb}"
        return RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)

    @pages.get("/slos")
    def slos(request: Request, model: str = "") -> Response:
        viewer = reader(request)
        values = slo_pages.slos_page(project, common.text_filter(model, "model"))
        return render(request, "slos.html.j2", viewer, nav="slos", **values)

    @pages.get("/drift")
    def drift_index(request: Request) -> Response:
        viewer = reader(request)
        values = drift_pages.drift_index(project)
        return render(request, "drift_index.html.j2", viewer, nav="drift", **values)

    @pages.get("/drift/{model}")
    def drift(request: Request, model: str, windows: str = "") -> Response:
        viewer = reader(request)
        values = drift_pages.drift_page(project, model, drift_pages.window_count(windows))
        return render(request, "drift.html.j2", viewer, nav="drift", **values)

    @pages.get("/predictions")
    def predictions(request: Request) -> Response:
        viewer = reader(request)
        query = prediction_pages.Search.parse(dict(request.query_params))
        found = prediction_pages.search(project, query)
        return render(
            request,
            "predictions.html.j2",
            viewer,
            nav="predictions",
            form=query.form(),
            searched=query.after is not None,
            **found,
        )

    @pages.get("/predictions/{request_id}")
    def prediction(request: Request, request_id: str) -> Response:
        viewer = reader(request)
        values = prediction_pages.prediction(project, request_id)
        return render(
            request, "prediction.html.j2", viewer, nav="predictions", replay=None, **values
        )

    @pages.post("/predictions/{request_id}/replay")
    def replay(
        request: Request, request_id: str, csrf: str = Form(""), arm: str = Form("")
    ) -> Response:
        viewer = writer(request, csrf)
        values = prediction_pages.prediction(project, request_id)  # 404 before any work
        report = actions.perform(
            project, viewer.token, "prediction.replay", request_id, via="dashboard", arm=arm or None
        )
        return render(
            request,
            "prediction.html.j2",
            viewer,
            nav="predictions",
            replay=prediction_pages.replay_view(report),
            **values,
        )

    @pages.get("/runs")
    def runs(request: Request, pipeline: str = "", status: str = "", after: str = "") -> Response:
        viewer = reader(request)
        values = run_pages.runs_page(project, pipeline=pipeline, status=status, after=after)
        return render(request, "runs.html.j2", viewer, nav="runs", **values)

    @pages.get("/runs/compare")
    def runs_compare(request: Request) -> Response:
        viewer = reader(request)
        ids = request.query_params.get("ids") or ",".join(request.query_params.getlist("id"))
        values = run_pages.compare(project, ids)
        return render(request, "runs_compare.html.j2", viewer, nav="runs", **values)

    @pages.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise StarletteHTTPException(404, f"no static file {name!r}")
        body = resources.files("shipyard.ui").joinpath("static", name).read_bytes()
        return Response(
            body,
            media_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    @pages.get("/{rest:path}")
    def unknown(request: Request, rest: str) -> Response:
        reader(request)  # an unknown page tells a stranger nothing they could not guess
        raise StarletteHTTPException(404, f"there is no dashboard page at {request.url.path}")

    return pages
