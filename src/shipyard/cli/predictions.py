"""`shipyard predictions ...` and `shipyard replay`: the prediction log from the command line."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.predictions.replay import ReplayReport

predictions_app = typer.Typer(
    help="The prediction log: SQL over it, one request, landing a Kafka log to Parquet.",
    no_args_is_help=True,
)

VERDICT_STYLE = {"identical": "green", "close": "cyan", "different": "red"}
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


@predictions_app.command("query")
def query_(
    sql: Annotated[
        str,
        typer.Argument(help="One SELECT over the view `predictions` (DuckDB SQL)."),
    ],
    output: Annotated[
        Format, typer.Option("--format", "-f", help="table (default), json or csv.")
    ] = Format.table,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.", min=0)] = None,
) -> None:
    """Run SQL over the prediction log: "SELECT model, count(*) FROM predictions GROUP BY 1"."""
    from shipyard.predictions.query import query

    table = query(sql, limit=limit)
    rows: list[dict[str, Any]] = table.to_pylist()
    if output is Format.json:
        print(json.dumps(rows, default=str))
        return
    if output is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow([_cell(row[name]) for name in table.column_names])
        return
    view = Table(*(escape(name) for name in table.column_names))
    for row in rows:
        view.add_row(*(escape(_cell(value)) for value in row.values()))
    out.print(view)
    out.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


@predictions_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The request id (the X-Request-ID header).")],
    as_json: JsonFlag = False,
) -> None:
    """Every record logged for one request: model, version, arm, inputs, outputs, latency."""
    from shipyard.predictions.query import find

    records = find(request_id)
    if as_json:
        print(json.dumps(records, default=str))
        return
    for record in records:
        out.print(
            f"[bold]{escape(record['request_id'])}[/]  {escape(record['model'])}@"
            f"{record['version']}  arm {escape(record['arm'])}  {record['protocol']}  "
            f"status {record['status']}"
        )
        facts = {
            "time": f"{record['time']:%Y-%m-%d %H:%M:%S.%f} UTC",
            "latency": f"{record['latency_ms']:.3f} ms",
            "filters": ", ".join(record["filters"] or []) or "-",
            "hooks": record["hooks"] or "-",
        }
        for key, value in facts.items():
            out.print(f"  {key:<9} {escape(str(value))}")
        for key in ("inputs", "outputs"):
            out.print(f"  {key}")
            try:
                out.print_json(record[key], indent=2)
            except (ValueError, TypeError):
                out.print(escape(record[key]), soft_wrap=True)


@predictions_app.command("land")
def land_(
    source: Annotated[
        str, typer.Option("--from", help="The Kafka topic: kafka://HOST:PORT/TOPIC.")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            help="Parquet folder or s3:// URL (default: the project's .shipyard/predictions)."
        ),
    ] = None,
    group: Annotated[str, typer.Option(help="Consumer group (its offsets say what is landed).")] = (
        "shipyard-land"
    ),
    idle: Annotated[
        float, typer.Option(help="Stop after this many seconds without a message.", min=0)
    ] = 10.0,
    follow: Annotated[bool, typer.Option("--follow", help="Never stop (ignores --idle).")] = False,
    max_records: Annotated[
        int | None, typer.Option(help="Stop after this many messages.", min=1)
    ] = None,
) -> None:
    """Consume a Kafka prediction log into partitioned Parquet files; offsets committed after."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from shipyard.predictions.kafka import land
    from shipyard.predictions.log import check_folder_url, storage_options
    from shipyard.predictions.query import default_folder, project_settings

    settings = project_settings()
    folder = check_folder_url(to, what="--to") if to else default_folder()
    with Progress(
        SpinnerColumn(),
        TextColumn("landing {task.fields[source]}: {task.completed} records"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("land", total=None, source=source)
        report = land(
            source,
            folder,
            group=group,
            idle_seconds=None if follow else idle,
            max_records=max_records,
            storage_options=storage_options(settings, str(folder)),
            progress=lambda count: progress.advance(task, count),
        )
    out.print(
        f"[green]landed[/] {report.records} records from {escape(source)} in {report.files} "
        f"files under {escape(report.folder)}"
    )
    if report.invalid:
        out.print(f"[yellow]{report.invalid} messages were not prediction records[/] (skipped):")
        for problem in report.problems:
            out.print(f"  {escape(problem)}")


def replay(
    request_id: Annotated[str, typer.Argument(help="The request id to replay.")],
    arm: Annotated[
        str | None, typer.Option(help="Which arm's record, when several answered the request.")
    ] = None,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for 'close'.", min=0)] = 1e-9,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for 'close'.", min=0)] = 1e-12,
    as_json: JsonFlag = False,
) -> None:
    """Re-run a logged request on its exact model version; show whether the answer is identical."""
    from shipyard.predictions.replay import replay as run_replay

    report = run_replay(request_id, arm=arm, rtol=rtol, atol=atol)
    if as_json:
        print(json.dumps({**report.to_dict(), "reproduced": report.reproduced}, default=str))
    else:
        _print_replay(report)
    if not report.reproduced:
        raise typer.Exit(1)


def _print_replay(report: ReplayReport) -> None:
    style = VERDICT_STYLE.get(report.verdict, "")
    out.print(
        f"replayed request [bold]{escape(report.request_id)}[/] on {escape(report.ref)} "
        f"({report.runtime}, arm {escape(report.arm)}, {report.protocol}, logged "
        f"{report.time:%Y-%m-%d %H:%M:%S} UTC): [{style}]{report.verdict}[/]"
    )
    if report.max_abs_diff is not None and report.max_abs_diff > 0:
        out.print(f"  largest absolute difference: {report.max_abs_diff:.3g}")
    if report.error:
        out.print(f"  [red]the replay failed:[/] {escape(report.error)}")
    if report.differences:
        out.print(f"  {report.different_fields} field(s) differ:")
        for line in report.differences:
            out.print(f"    {escape(line)}")
        if report.different_fields > len(report.differences):
            out.print(f"    … and {report.different_fields - len(report.differences)} more")
    if report.reasons:
        out.print("  since then:" if report.verdict != "identical" else "  note:")
        for line in report.reasons:
            out.print(f"    - {escape(line)}")
    elif report.verdict == "different":
        out.print("  no hook, package, Python or runtime change was found to explain it")
