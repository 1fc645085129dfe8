"""`shipyard serve`: the model server from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.console import err_console


def serve(
    models: Annotated[
        list[str], typer.Argument(help="Models to serve: NAME, NAME@VERSION or NAME@ALIAS.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    max_body_bytes: Annotated[
        int, typer.Option(help="Larger request bodies are refused with 413.")
    ] = 8 * 1024 * 1024,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Record every prediction in the log.")
    ] = True,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight requests get to finish on shutdown.")
    ] = 30,
    home: Annotated[
        Path | None, typer.Option(help="The project folder (default: found from here).")
    ] = None,
    ui: Annotated[
        bool,
        typer.Option("--ui", help="Also serve the dashboard (/ui) and the control API (/api/v1)."),
    ] = False,
) -> None:
    """Serve models over HTTP: Open Inference Protocol v2, MLflow /invocations, /predict."""
    from shipyard.deploy.local import serve as run_server

    err_console.print(
        f"serving {', '.join(models)} on http://{host}:{port} "
        f"({workers} worker{'s' if workers != 1 else ''}); Ctrl-C stops"
    )
    run_server(
        models,
        host=host,
        port=port,
        workers=workers,
        home=home,
        max_body_bytes=max_body_bytes,
        log=log,
        graceful_timeout_s=graceful_timeout,
        mounts=["shipyard.ui.app:mounted"] if ui else [],
    )
