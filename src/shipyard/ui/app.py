"""The web app of `shipyard ui`: the control API at `/api/v1` and the dashboard at `/ui`.

`create_app(project)` builds it; `mounted()` is the factory the model server imports by name
when `shipyard serve --ui` asks for the dashboard beside the models (the serving layer cannot
import this package, so it takes the import string `shipyard.ui.app:mounted`).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from shipyard.project import Project, current
from shipyard.ui.api import PREFIX, create_api

log = logging.getLogger("shipyard.ui")

DASHBOARD_PREFIX = "/ui"
# The paths `mounted()` answers inside the model server; everything else stays the server's.
MOUNTED_PREFIXES = (PREFIX, DASHBOARD_PREFIX)


def _dashboard_router(project: Project) -> Any | None:
    """The dashboard's router, when the dashboard module is installed."""
    try:
        dashboard = importlib.import_module("shipyard.ui.dashboard")
    except ModuleNotFoundError as exc:
        if exc.name != "shipyard.ui.dashboard":
            raise  # the dashboard exists but something it needs is missing: say so
        log.info("no dashboard module; serving the control API only")
        return None
    return dashboard.router(project)


def create_app(project: Project | None = None, *, dashboard: bool = True) -> FastAPI:
    """The control API at `/api/v1` and, with `dashboard`, the dashboard at `/ui`."""
    project = project or current()
    app = FastAPI(
        title="shipyard",
        docs_url=None,  # no CDN: the API's OpenAPI JSON is at /api/v1/openapi.json
        redoc_url=None,
        openapi_url=None,
    )
    app.state.project = project
    app.mount(PREFIX, create_api(project))
    router = _dashboard_router(project) if dashboard else None
    if router is not None:
        app.include_router(router, prefix=DASHBOARD_PREFIX)

        @app.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            return RedirectResponse(f"{DASHBOARD_PREFIX}/", status_code=307)

    else:

        @app.get("/", include_in_schema=False)
        def api_home() -> RedirectResponse:
            return RedirectResponse(f"{PREFIX}/openapi.json", status_code=307)

    return app


def mounted(home: str | None = None) -> FastAPI:
    """The app the model server mounts for `shipyard serve --ui` (one per worker process)."""
    project = Project.open(home) if home else Project.open()
    return create_app(project)
