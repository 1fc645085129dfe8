"""`shipyard drift ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.monitoring.drift import DriftResult

drift_app = typer.Typer(
    help="Drift of served inputs and predictions against the training data's profile: run "
    "a check, list results, write the HTML report.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelArgument = Annotated[str, typer.Argument(help="The registered model.")]
IdArgument = Annotated[int, typer.Argument(help="A drift result id (`drift history` lists them).")]


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _verdict(drifted: bool, alerting: bool = False) -> str:
    if alerting:
        return "[bold red]drift, alerting[/]"
    return "[red]drift[/]" if drifted else "[green]ok[/]"


def _print_result(result: DriftResult) -> None:
    data = result.to_dict()
    out.print(
        f"drift of [bold]{escape(result.model)}[/] v{result.version} against "
        f"{escape(result.reference)}: {data['window_start'] or '?'} to {data['window_end'] or '?'}"
        f", {result.current_rows} rows (reference {result.reference_rows}), id {result.id}"
    )
    table = Table("column", "role", "kind", "method", "statistic", "p-value (adj.)", "threshold",
                  "verdict", "streak")  # fmt: skip
    for column in result.columns:
        adjusted = column.get("adjusted_p_value")
        table.add_row(
            escape(column["name"]),
            column["role"],
            column["kind"],
            column["method"],
            _number(column["statistic"]),
            _number(adjusted),
            _number(column["threshold"]),
            _verdict(column["drifted"], column.get("alerting", False)),
            str(column.get("streak", 0)),
        )
    out.print(table)
    dataset = result.dataset
    out.print(
        f"dataset: {_verdict(result.drifted, result.alerting)}: "
        f"{dataset.get('share', 0.0):.0%} of input columns drifted "
        f"(threshold {dataset.get('threshold_share', 0.5):.0%}), "
        f"{dataset.get('streak', 0)} window(s) in a row"
    )
    for note in result.notes:
        out.print(f"[yellow]note[/] {escape(note)}")


def _write_report(result: DriftResult, path: Path) -> Path:
    from shipyard.monitoring import drift
    from shipyard.monitoring.report import write_report

    earlier = [r.to_dict() for r in drift.history(result.model, limit=20) if r.id != result.id]
    return write_report(result.to_dict(), path, history=earlier)


@drift_app.command("run")
def run(
    model: ModelArgument,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Window start: an ISO time or a duration ago (1h, 30m)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Window end (default now), as --since.")
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", help="The last N predictions instead of a time range.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="The reference dataset version (e.g. weather@1)."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="The model version (default: champion).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the HTML report here.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the current window of the prediction log for drift; store and print the result."""
    from shipyard.monitoring import drift

    result = drift.check(
        model, version=version, since=since, until=until, last=last, reference=reference
    )
    written = _write_report(result, report) if report is not None else None
    if as_json:
        _print_json({**result.to_dict(), "report": str(written) if written else None})
        return
    _print_result(result)
    if written is not None:
        out.print(f"report: {escape(str(written))}")


@drift_app.command("history")
def history(
    model: ModelArgument,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many results.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The model's drift results, newest first."""
    from shipyard.monitoring import drift

    found = drift.history(model, limit=limit)
    if as_json:
        _print_json([result.to_dict() for result in found])
        return
    if not found:
        out.print(f"no drift results for {escape(model)}; run `shipyard drift run {model}`")
        return
    table = Table("id", "created (UTC)", "version", "reference", "window", "rows", "drifted share",
                  "verdict")  # fmt: skip
    for result in found:
        data = result.to_dict()
        table.add_row(
            str(result.id),
            str(data["created_at"])[:19],
            f"v{result.version}",
            escape(result.reference),
            f"{str(data['window_start'])[:16]} .. {str(data['window_end'])[:16]}",
            str(result.current_rows),
            f"{result.drifted_share:.0%}",
            _verdict(result.drifted, result.alerting),
        )
    out.print(table)


@drift_app.command("show")
def show(result_id: IdArgument, as_json: JsonFlag = False) -> None:
    """One drift result, column by column."""
    from shipyard.monitoring import drift

    result = drift.get(result_id)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_result(result)


@drift_app.command("report")
def report(
    result_id: IdArgument,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")],
) -> None:
    """Write the HTML report of one drift result (reference and current histograms)."""
    from shipyard.monitoring import drift

    written = _write_report(drift.get(result_id), out_path)
    out.print(f"report: {escape(str(written))}")
