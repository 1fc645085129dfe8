"""`shipyard monitor run`: the monitoring pass from the CLI (drift, SLOs, quality estimates).

A thin layer over `shipyard.monitoring.watch`; imports are lazy so that `shipyard --help` stays
fast; errors come from the API as ShipyardError and become one red line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.monitoring.watch import Observation

monitor_app = typer.Typer(
    help="The monitoring pass: drift checks, SLO evaluation and alerts, quality estimates.",
    no_args_is_help=True,
)

STATUS_STYLE = {"ok": "green", "alert": "red", "skipped": "yellow", "error": "red"}


def _print(observation: Observation) -> None:
    style = STATUS_STYLE.get(observation.status, "white")
    out.print(
        f"{escape(observation.model)} {observation.part}: [{style}]{observation.status}[/{style}]"
        f" {escape(observation.summary)}"
    )


@monitor_app.command("run")
def run(
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model (default: every one).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between passes.", min=0.1)] = 60.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each observation as a JSON line.")
    ] = False,
) -> None:
    """Check drift, evaluate SLOs (raising and resolving alerts) and estimate quality.

    Every model with a drift or SLO section in shipyard.toml (drift.MODEL, slos.MODEL) is
    watched. Runs until SIGINT or SIGTERM, which stop it after the current pass; --once is one
    pass (for cron).
    """
    import signal
    import threading
    from types import FrameType

    from shipyard.monitoring import watch
    from shipyard.project import current

    project = current()

    def show(observation: Observation) -> None:
        if as_json:
            print(json.dumps(observation.to_dict(), default=str), flush=True)
        else:
            _print(observation)

    if once:
        for observation in watch.watch(model, project=project):
            show(observation)
        return
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if not as_json:
        out.print(f"monitoring, a pass every {poll:g}s; Ctrl-C or SIGTERM stops it")
    try:
        watch.run(poll=poll, model=model, project=project, stop=stop, on_observation=show)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if not as_json:
        out.print("monitoring stopped")
