"""The `shipyard` command: a thin Typer layer over the Python API, never logic of its own.

Errors from the API become one red line on stderr and a non-zero exit (2, or 1 for a failed
validation); set SHIPYARD_DEBUG=1 to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from shipyard.cli.console import err_console, out
from shipyard.cli.ct import ct_app
from shipyard.cli.data import data_app
from shipyard.cli.deploy import deploy_app
from shipyard.cli.drift import drift_app
from shipyard.cli.gates import approve, gate, gates_app
from shipyard.cli.models import models_app
from shipyard.cli.monitor import monitor_app
from shipyard.cli.pipelines import lineage, reproduce, run
from shipyard.cli.predictions import predictions_app, replay
from shipyard.cli.quality import quality_app
from shipyard.cli.release import feedback_app, flags_app, rollout_app
from shipyard.cli.runs import runs_app
from shipyard.cli.scoring import score, stream
from shipyard.cli.serve import serve
from shipyard.cli.slo import slo_app
from shipyard.cli.tokens import tokens_app
from shipyard.cli.ui import ui

app = typer.Typer(
    name="shipyard",
    help="Continuous delivery for machine learning: versioned data to production models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(gates_app, name="gates")
app.add_typer(deploy_app, name="deploy")
app.command()(gate)
app.command()(approve)
app.add_typer(runs_app, name="runs")
app.command()(run)
app.command()(reproduce)
app.command()(lineage)
app.command()(score)
app.command()(stream)
app.add_typer(predictions_app, name="predictions")
app.command()(replay)
app.command()(serve)
app.add_typer(rollout_app, name="rollout")
app.add_typer(flags_app, name="flags")
app.add_typer(feedback_app, name="feedback")
app.add_typer(drift_app, name="drift")
app.add_typer(slo_app, name="slo")
app.add_typer(quality_app, name="quality")
app.add_typer(monitor_app, name="monitor")
app.add_typer(ct_app, name="ct")
app.add_typer(tokens_app, name="tokens")
app.command()(ui)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version as installed_version

        out.print(installed_version("shipyard"))
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Continuous delivery for machine learning: versioned data to production models."""


@app.command()
def init(
    path: Annotated[
        Path, typer.Argument(help="Folder in which to create .shipyard/ (default: here).")
    ] = Path(),
) -> None:
    """Create a project here: .shipyard/ with settings, a SQLite database and an artifact folder."""
    from shipyard.project import Project

    project = Project.init(path / ".shipyard")
    settings = project.settings
    out.print(f"[green]initialised[/] shipyard project in {settings.home.resolve()}")
    out.print(f"  settings   {settings.settings_file.resolve()}")
    out.print(f"  metadata   {project.metadata.url.render_as_string(hide_password=True)}")
    out.print(f"  artifacts  {settings.resolved_artifact_url}")


@app.command()
def version() -> None:
    """Print shipyard's version."""
    from importlib.metadata import version as installed_version

    out.print(installed_version("shipyard"))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    from shipyard.errors import ShipyardError

    try:
        app(args=argv, prog_name="shipyard")
    except ShipyardError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]; nothing half-written was kept")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SHIPYARD_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} "
            "(set SHIPYARD_DEBUG=1 for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(70)
