"""`shipyard score` and `shipyard stream`: a model over a dataset version, or over a Kafka topic."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shipyard.cli.console import err_console, out

if TYPE_CHECKING:
    from shipyard.scoring.batch import ScoreResult
    from shipyard.scoring.streaming import StreamStats

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def score(
    ref: Annotated[str, typer.Argument(help="The model: NAME, NAME@VERSION or NAME@ALIAS.")],
    dataset: Annotated[str, typer.Argument(help="The dataset version to score: NAME or NAME@N.")],
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write the scores to this .parquet file."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="Dataset to store the scores as (default DATASET-scored)."
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            "-k",
            help="A dataset column to copy next to the scores; repeat (default: all).",
        ),
    ] = None,
    predictions_only: Annotated[
        bool, typer.Option("--predictions-only", help="Copy no dataset column: the scores alone.")
    ] = False,
    chunk_rows: Annotated[int, typer.Option(help="Rows scored per chunk.")] = 10_000,
    runner: Annotated[
        str, typer.Option(help="local, dask (a LocalCluster) or dask://host:port")
    ] = "local",
    as_json: JsonFlag = False,
) -> None:
    """Score a dataset version in chunks; the scores become a dataset version with lineage."""
    from shipyard.errors import InvalidInput
    from shipyard.scoring.batch import score as score_dataset

    if predictions_only and keep:
        raise InvalidInput("--predictions-only and --keep contradict each other; give one")
    keep_columns: list[str] | None = [] if predictions_only else (keep or None)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(f"scoring {dataset}", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = score_dataset(
            ref,
            dataset,
            out=out_path,
            name=name,
            chunk_rows=chunk_rows,
            runner=runner,
            keep_columns=keep_columns,
            progress=advance,
        )
    if as_json:
        print(json.dumps(_score_json(result), default=str))
        return
    verb = "[green]scored[/]" if result.created else "[yellow]scored[/] (same scores as before:"
    stored = result.dataset.ref + ("" if result.created else ", no new version)")
    out.print(
        f"{verb} {escape(result.source.ref)} with {escape(result.model)}: {result.rows:,} rows "
        f"-> {escape(stored)} in {result.seconds:.1f} s ({escape(result.runner)}; run "
        f"{result.run_id[:12]})"
    )
    if result.withheld:
        withheld = ", ".join(f"{rule} {count:,}" for rule, count in result.withheld.items())
        out.print(f"  withheld by filters: {escape(withheld)}")
    if result.out_of_range:
        outside = ", ".join(f"{col} {count:,}" for col, count in result.out_of_range.items())
        out.print(f"  values outside the training range: {escape(outside)}")
    if result.out is not None:
        out.print(f"  wrote {escape(str(result.out))}")


def _score_json(result: ScoreResult) -> dict[str, Any]:
    return {
        "dataset": result.dataset.ref,
        "created": result.created,
        "source": result.source.ref,
        "model": result.model,
        "run_id": result.run_id,
        "rows": result.rows,
        "columns": result.columns,
        "withheld": result.withheld,
        "out_of_range": result.out_of_range,
        "out": None if result.out is None else str(result.out),
        "runner": result.runner,
        "seconds": round(result.seconds, 3),
    }


def stream(
    ref: Annotated[str, typer.Argument(help="The model: NAME, NAME@VERSION or NAME@ALIAS.")],
    source: Annotated[
        str,
        typer.Option("--from", help="Topic to read JSON records from: kafka://HOST:PORT/TOPIC."),
    ],
    sink: Annotated[
        str, typer.Option("--to", help="Topic to write scores to: kafka://HOST:PORT/TOPIC.")
    ],
    errors: Annotated[
        str | None,
        typer.Option(
            "--errors", help="Dead-letter topic for bad records (default: the --to topic)."
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default shipyard-stream-MODEL-TOTOPIC).")
    ] = None,
    id_field: Annotated[
        str | None,
        typer.Option(help="A field of each record echoed as `id`, not given to the model."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Records scored (and committed) together.")] = 500,
    max_records: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a record.")
    ] = None,
    kafka_option: Annotated[
        list[str] | None,
        typer.Option("-X", help="A librdkafka setting KEY=VALUE for every client; repeat."),
    ] = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not record the predictions in the prediction log.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Score JSON records from a Kafka topic into another, as a consumer group; Ctrl-C stops
    after the batch in hand is written and committed."""
    from shipyard.project import current
    from shipyard.scoring.kafka import parse_topic
    from shipyard.scoring.streaming import stream as stream_topic

    config = _kafka_options(kafka_option or [])
    # Refused before the prediction log and the model are opened: a typo fails at once.
    parse_topic(source, what="the source (--from)")
    parse_topic(sink, what="the output (--to)")
    if errors is not None:
        parse_topic(errors, what="the error topic (--errors)")
    project = current()
    log = None
    if not no_log:
        from shipyard.predictions import open_log

        log = open_log(project.settings)
    if not as_json:
        out.print(f"streaming {escape(ref)}: {escape(source)} -> {escape(sink)}; Ctrl-C stops")
    try:
        with _LiveStats(enabled=not as_json) as live:
            stats = stream_topic(
                ref,
                source,
                sink,
                group=group,
                project=project,
                max_records=max_records,
                idle_timeout=idle_timeout,
                batch_size=batch_size,
                errors=errors,
                id_field=id_field,
                config=config,
                prediction_log=log,
                on_batch=live.update,
            )
    finally:
        if log is not None:
            log.close()
    if as_json:
        print(json.dumps(asdict(stats)))
        return
    out.print(
        f"stopped ({stats.stopped_by}) after {stats.seconds:.1f} s: {_counts(stats)}; "
        f"model {escape(stats.model)}, group {escape(stats.group)}"
    )


def _counts(stats: StreamStats) -> str:
    text = f"{stats.consumed:,} records, {stats.scored:,} scored, {stats.errors:,} errors"
    if stats.skipped:
        text += f", {stats.skipped:,} already written before a restart"
    if stats.withheld:
        text += f", {stats.withheld:,} withheld by filters"
    return text


def _kafka_options(pairs: list[str]) -> dict[str, str]:
    from shipyard.errors import InvalidInput

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                f"-X {pair!r} is malformed: expected KEY=VALUE, e.g. -X session.timeout.ms=6000"
            )
        options[key.strip()] = value
    return options


class _LiveStats:
    """A one-line live count on a terminal; nothing on a pipe or in a log."""

    def __init__(self, *, enabled: bool) -> None:
        from rich.live import Live

        self.enabled = enabled and err_console.is_terminal
        self.live = Live("", console=err_console, transient=True, refresh_per_second=4)

    def __enter__(self) -> _LiveStats:
        if self.enabled:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.live.stop()

    def update(self, stats: StreamStats) -> None:
        if self.enabled:
            self.live.update(f"[dim]{stats.seconds:.0f} s[/] {_counts(stats)}")
