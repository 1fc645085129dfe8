"""`shipyard ui`: the dashboard and the control API on one local web server."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli.console import err_console


def ui(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Serve the dashboard (/ui) and the control API (/api/v1) until Ctrl-C."""
    import uvicorn

    from shipyard.errors import InvalidInput
    from shipyard.project import current
    from shipyard.ui.app import create_app

    if not 0 < port < 65536:
        raise InvalidInput(f"port must be between 1 and 65535; got {port}")
    project = current()
    reads = "open to anyone" if project.settings.open_reads else "need a token"
    err_console.print(
        f"dashboard on http://{host}:{port}/ui/, API on http://{host}:{port}/api/v1 "
        f"(reads {reads}; changes always need one); Ctrl-C stops"
    )
    # No access log: the dashboard's cookie and request paths stay out of it, and the API
    # never takes a token in a query string.
    uvicorn.run(create_app(project), host=host, port=port, access_log=False, log_level="warning")
