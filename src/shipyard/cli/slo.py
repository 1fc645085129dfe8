"""`shipyard slo ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.monitoring.alerting import Incident
    from shipyard.monitoring.slo import SLOStatus

slo_app = typer.Typer(
    help="Service-level objectives and error budgets: status, burn rates, alerts.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelArgument = Annotated[
    str | None, typer.Argument(help="One model (default: every model with SLOs).")
]
SHOWN_WINDOWS = ("1h", "6h", "3d")  # the default rules' long windows
SEVERITY_STYLE = {"page": "red", "ticket": "yellow"}


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


@slo_app.command("status")
def status_command(model: ModelArgument = None, as_json: JsonFlag = False) -> None:
    """Each SLO now: its value, the error budget left and the burn rates (stores nothing)."""
    from shipyard.monitoring import slo

    _show(slo.status(model), as_json)


@slo_app.command("check")
def check(model: ModelArgument = None, as_json: JsonFlag = False) -> None:
    """Evaluate the SLOs, store the evaluation, raise or resolve alerts; exit 1 on a page."""
    from shipyard.monitoring import slo

    results = slo.evaluate(model)
    _show(results, as_json)
    if any(result.pages for result in results):
        raise typer.Exit(1)


@slo_app.command("alerts")
def alerts_command(
    model: ModelArgument = None,
    include_resolved: Annotated[
        bool, typer.Option("--all", "-a", help="The history: resolved incidents too.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The incidents firing now (or, with --all, every incident, newest first)."""
    from shipyard.monitoring import alerting

    found = alerting.alerts(model) if include_resolved else alerting.open_alerts(model)
    if as_json:
        _print_json([incident.to_dict() for incident in found])
        return
    if not found:
        out.print("no incidents" if include_resolved else "no alerts firing")
        return
    out.print(_incidents_table(found))


# -- formatting -------------------------------------------------------------------------------


def _show(results: Sequence[SLOStatus], as_json: bool) -> None:
    if as_json:
        _print_json([result.to_dict() for result in results])
        return
    if not results:
        out.print("no SLOs declared: add \\[\\[slos.MODEL]] tables to shipyard.toml (docs/slos.md)")
        return
    table = Table(
        "model", "SLO", "SLI", "objective", "value", "budget left",
        *(f"burn {window}" for window in SHOWN_WINDOWS), "firing",
    )  # fmt: skip
    for result in results:
        table.add_row(
            escape(result.model),
            escape(result.slo),
            result.sli,
            _percent(result.objective),
            _percent(result.value) + f" ({result.total} events)",
            _budget(result.budget_remaining),
            *(_rate(result.burn_rates.get(window)) for window in SHOWN_WINDOWS),
            _firing(result.firing, result.severities),
        )
    out.print(table)


def _percent(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _budget(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.1%}"
    return f"[red]{text}[/]" if value < 0 else text


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _firing(labels: Sequence[str], severities: Sequence[str]) -> str:
    if not labels:
        return "[green]none[/]"
    style = SEVERITY_STYLE.get(severities[0], "yellow") if severities else "yellow"
    return f"[{style}]{escape(', '.join(labels))}[/]"


def _incidents_table(found: Sequence[Incident]) -> Table:
    table = Table("id", "model", "kind", "severity", "opened (UTC)", "resolved (UTC)", "summary")
    for incident in found:
        style = SEVERITY_STYLE.get(incident.severity)
        severity = f"[{style}]{incident.severity}[/]" if style else escape(incident.severity)
        table.add_row(
            str(incident.id),
            escape(incident.model),
            escape(incident.kind),
            severity,
            _when(incident.opened_at),
            _when(incident.resolved_at),
            escape(incident.summary),
        )
    return table


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
