"""`shipyard ct ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.training import Firing

ct_app = typer.Typer(
    help="Continuous training: triggers that retrain, gate and roll out; the loop and its history.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
STATUS_STYLE = {
    "running": "cyan",
    "rolling_out": "green",
    "awaiting_approval": "magenta",
    "unchanged": "dim",
    "skipped": "yellow",
    "gates_failed": "red",
    "failed": "bold red",
    "promoted": "green",
    "rolled_back": "red",
    "aborted": "red",
    "paused": "yellow",
}


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else escape(status)


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _announce(as_json: bool) -> Any:
    """Print each firing as it starts and as it ends (one JSON document per line with --json)."""

    def tell(firing: Firing) -> None:
        if as_json:
            _print_json(firing.to_dict())
        else:
            at = _when(firing.finished_at or firing.fired_at)
            out.print(f"{at} {_status(firing.status)} {escape(firing.describe())}", soft_wrap=True)

    return tell


@ct_app.command("run")
def run(
    once: Annotated[
        bool, typer.Option("--once", help="One pass over the triggers, then exit (for cron).")
    ] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between passes.", min=0.05)] = 60.0,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model's triggers.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each firing as a JSON document, one per line.")
    ] = False,
) -> None:
    """Evaluate the triggers and fire: retrain, gate, and roll out or wait for approval.

    Runs until SIGINT (Ctrl-C) or SIGTERM, which stop it after the current firing; with
    --once, one pass (what a crontab line runs). Each firing is printed as it starts and ends.
    """
    from shipyard.project import current
    from shipyard.training import run_once, trigger_states

    project = current()
    tell = _announce(as_json)
    if once:
        fired = run_once(project=project, model=model, on_event=tell)
        if not fired and not as_json:
            held = [s for s in trigger_states(project=project, model=model) if s.verdict.due]
            for state in held:
                out.print(
                    f"{escape(state.model)}: trigger {escape(state.trigger.name)} is due but "
                    f"held: {escape(state.blocked or '')}",
                    soft_wrap=True,
                )
            if not held:
                out.print("no trigger is due")
        return
    _loop(project, poll, model, tell)


def _loop(project: Any, poll: float, model: str | None, tell: Any) -> None:
    import logging
    import signal
    import threading
    from types import FrameType

    from shipyard.training import run as run_loop

    stop = threading.Event()
    previous: dict[int, Any] = {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        for sig, old in previous.items():  # a second signal interrupts the firing itself
            signal.signal(sig, old)

    logger = logging.getLogger("shipyard.training")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)  # the firings themselves are printed by `tell`
    logger.addHandler(handler)
    previous.update(
        {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    )
    out.print(f"continuous training running, a pass every {poll:g}s; Ctrl-C or SIGTERM stops it")
    try:
        passes = run_loop(poll=poll, project=project, stop=stop, model=model, on_event=tell)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        logger.removeHandler(handler)
    out.print(f"continuous training stopped after {passes} pass(es)")


@ct_app.command("history")
def history(
    model: Annotated[str | None, typer.Argument(help="Only this model's firings.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="How many, newest first.", min=1)
    ] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Every trigger firing and what followed: run, version, gates, rollout."""
    from shipyard.training import history as firings

    found = firings(model, limit=limit)
    if as_json:
        _print_json([firing.to_dict() for firing in found])
        return
    if not found:
        out.print("no trigger has fired yet" + (f" for {escape(model)}" if model else ""))
        return
    table = Table(title="continuous-training firings, newest first")
    # On a narrow terminal cells fold rather than lose their end to an ellipsis.
    for column in ("id", "time", "model", "trigger", "kind", "reason", "status", "run"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "status"))
    table.add_column("version", overflow="fold")
    table.add_column("rollout", overflow="fold")
    for firing in found:
        table.add_row(
            str(firing.id),
            _when(firing.fired_at),
            escape(firing.model),
            escape(firing.trigger),
            firing.kind,
            escape(_outcome(firing)),
            _status(firing.status)
            + (f" ({_status(firing.rollout_status)})" if firing.rollout_status else ""),
            (firing.run_id or "-")[:12],
            str(firing.version) if firing.version is not None else "-",
            escape(firing.rollout or "-"),
        )
    out.print(table)


def _outcome(firing: Firing) -> str:
    """The reason it fired, and what stopped it when something did."""
    detail = firing.detail
    if firing.status == "failed":
        return f"{firing.reason}\n-> {detail.get('stage', '?')}: {detail.get('error', '')}"
    if firing.status == "gates_failed":
        failed = ", ".join(detail.get("gates", {}).get("failed", []))
        return f"{firing.reason}\n-> failed gates: {failed}"
    if firing.status == "skipped":
        return f"{firing.reason}\n-> {detail.get('blocker', '')}"
    return firing.reason


@ct_app.command("approve")
def approve(
    firing_id: Annotated[int, typer.Argument(help="The firing awaiting approval (its id).")],
    note: Annotated[str, typer.Option("--note", "-m", help="Why (recorded).")] = "",
) -> None:
    """Roll out the version a firing left awaiting approval (its rollout from the template)."""
    from shipyard.training import approve as approve_firing

    firing = approve_firing(firing_id, note=note)
    out.print(f"[green]approved[/] {escape(firing.describe())}", soft_wrap=True)


@ct_app.command("triggers")
def triggers(
    model: Annotated[str | None, typer.Argument(help="Only this model's triggers.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each configured trigger: whether it is due now and why, and the next scheduled time."""
    from shipyard.training import trigger_states

    states = trigger_states(model=model)
    if as_json:
        _print_json([state.to_dict() for state in states])
        return
    if not states:
        out.print("no continuous training is configured: add \\[training.MODEL] to shipyard.toml")
        return
    table = Table("model", "trigger", "kind", "due", "why", "next", title="triggers, now")
    for state in states:
        if state.fires:
            due = "[green]yes[/]"
        elif state.verdict.due:
            due = "[yellow]yes, held[/]"
        else:
            due = "no"
        why = state.verdict.reason + (
            f"\nheld: {state.blocked}" if state.verdict.due and state.blocked else ""
        )
        table.add_row(
            escape(state.model),
            escape(state.trigger.name),
            state.trigger.kind,
            due,
            escape(why),
            _when(state.verdict.next_at),
        )
    out.print(table)
