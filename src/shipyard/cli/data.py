"""`shipyard data ...`: versioned datasets from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.data import DatasetDiff, DatasetVersion, ValidationReport

data_app = typer.Typer(
    help="Versioned datasets: add, inspect, validate, diff, split.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _parse_pairs(pairs: list[str], what: str, example: str) -> dict[str, str]:
    from shipyard.errors import InvalidInput

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise InvalidInput(f"{what} {pair!r} is malformed: expected KEY=VALUE, e.g. {example}")
        parsed[key] = value
    return parsed


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@data_app.command("add")
def add(
    path: Annotated[Path, typer.Argument(help="A CSV, TSV or Parquet file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    description: Annotated[str, typer.Option(help="What this data is.")] = "",
    format: Annotated[
        str | None, typer.Option(help="csv, tsv or parquet (default: from the file name).")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Pin a CSV column's type: COLUMN=integer|float|string|category|..."
        ),
    ] = None,
) -> None:
    """Store a file as a new immutable version of a dataset (same content: same version)."""
    import shipyard.data as data

    column_types = _parse_pairs(types or [], "--type", "zip=string")
    size = path.stat().st_size if path.is_file() else 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=True,
        disable=not out.is_terminal,  # a pipe or a log gets the result line only
    ) as bar:
        task = bar.add_task(f"adding {path.name}", total=size or None)
        version = data.add(
            path,
            name,
            description=description,
            format=format,
            column_types=column_types,
            progress=lambda n: bar.advance(task, n),
        )
    if version.created:
        out.print(
            f"[green]added[/] {version.ref}: {version.num_rows:,} rows x {version.num_columns} "
            f"columns, sha256 {version.content_hash[:12]}"
        )
    else:
        out.print(f"[yellow]unchanged[/]: same content as {version.ref}; no new version")


@data_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Every dataset with its latest version."""
    import shipyard.data as data

    summaries = data.list_datasets()
    if as_json:
        _print_json(
            [
                {
                    "name": s.name,
                    "versions": s.versions,
                    "latest": s.latest.ref,
                    "rows": s.latest.num_rows,
                    "columns": s.latest.num_columns,
                    "created_at": s.latest.created_at.isoformat(),
                }
                for s in summaries
            ]
        )
        return
    if not summaries:
        out.print("no datasets yet: add one with `shipyard data add FILE --name NAME`")
        return
    table = Table("latest", "versions", "rows", "columns", "format", "added (UTC)", "by")
    table.columns[0].overflow = "fold"  # a reference is never cut short
    for s in summaries:
        table.add_row(
            _fmt(s.latest.ref),
            str(s.versions),
            f"{s.latest.num_rows:,}",
            str(s.latest.num_columns),
            s.latest.source_format,
            f"{s.latest.created_at:%Y-%m-%d %H:%M}",
            _fmt(s.latest.created_by),
        )
    out.print(table)


@data_app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: JsonFlag = False,
) -> None:
    """Every version of one dataset, oldest first, with where each came from."""
    import shipyard.data as data

    found = data.versions(name)
    if as_json:
        _print_json([_version_facts(version) for version in found])
        return
    table = Table("version", "rows", "columns", "sha256", "from", "added (UTC)", "by")
    table.columns[3].no_wrap = True
    table.columns[4].overflow = "fold"
    for version in found:
        origin = version.parent or version.source
        table.add_row(
            str(version.version),
            f"{version.num_rows:,}",
            str(version.num_columns),
            version.content_hash[:12],
            _fmt(origin),
            f"{version.created_at:%Y-%m-%d %H:%M}",
            _fmt(version.created_by),
        )
    out.print(table)


def _version_facts(version: DatasetVersion) -> dict[str, Any]:
    return {
        "ref": version.ref,
        "rows": version.num_rows,
        "columns": version.num_columns,
        "content_hash": version.content_hash,
        "artifact": version.artifact,
        "size_bytes": version.size_bytes,
        "source": f"{version.source} ({version.source_format})",
        "parent": version.parent,
        "split": version.split,
        "run": version.run_id,
        "description": version.description,
        "created": f"{version.created_at.isoformat()} by {version.created_by}",
    }


def _fmt(value: Any) -> str:
    """A cell: short numbers, and text escaped so '[us]' is not taken for Rich markup."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


@data_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@VERSION.")],
    as_json: JsonFlag = False,
) -> None:
    """A version's facts, lineage, schema and per-column statistics."""
    import shipyard.data as data

    version = data.get(ref)
    profile = version.profile
    if as_json:
        _print_json(
            {
                **_version_facts(version),
                "schema": version.schema.to_dict(),
                "profile": {n: c.summary() for n, c in profile.columns.items()},
            }
        )
        return
    for key, value in _version_facts(version).items():
        if value not in (None, ""):
            out.print(f"[bold]{key:>12}[/]  {_fmt(value)}")
    table = Table("column", "type", "nulls", "min", "mean", "max", "p50", "levels / top")
    for column in version.schema.columns:
        stats = profile.columns[column.name].summary()
        table.add_row(
            _fmt(column.name) + ("" if column.nullable else " *"),
            column.type.value,
            f"{stats['null_share']:.1%}",
            _fmt(stats.get("min")),
            _fmt(stats.get("mean")),
            _fmt(stats.get("max")),
            _fmt(stats.get("p50")),
            _fmt(stats.get("top")),
        )
    out.print(table)
    out.print("[dim]* never null in this version[/]")


@data_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="NAME@A")],
    new: Annotated[str, typer.Argument(help="NAME@B")],
    as_json: JsonFlag = False,
) -> None:
    """Schema changes and per-column statistical differences between two versions."""
    import shipyard.data as data

    result = data.diff(data.get(old), data.get(new))
    if as_json:
        _print_json(result.to_dict())
        return
    _print_diff(result)


def _print_diff(result: DatasetDiff) -> None:
    out.print(
        f"[bold]{result.old}[/] -> [bold]{result.new}[/]: "
        f"rows {result.rows[0]:,} -> {result.rows[1]:,}"
    )
    for name in result.added:
        out.print(f"  [green]+ column {name}[/]")
    for name in result.removed:
        out.print(f"  [red]- column {name}[/]")
    table = Table("column", "schema change", "statistic", "old", "new", "distance (JS)")
    for column in result.columns:
        first = True
        for statistic, (before, after) in column.statistics.items():
            table.add_row(
                column.name if first else "",
                _fmt("; ".join(column.schema_changes)) if first else "",
                statistic,
                _fmt(before),
                _fmt(after),
                _fmt(column.distance) if first else "",
                style="yellow" if before != after else None,
            )
            first = False
    out.print(table)
    if not result.schema_changed:
        out.print("schema unchanged")


@data_app.command("expectations")
def expectations(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] whose expectations to write.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="TOML file to write.")],
) -> None:
    """Write the expectations a version implies to a TOML file you can edit."""
    import shipyard.data as data

    written = data.expectations_for(data.get(ref)).save(output)
    out.print(f"wrote expectations of {ref} to {written}; edit it, then use --expectations")


@data_app.command("validate")
def validate(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] to check against.")],
    path: Annotated[Path, typer.Argument(help="The new batch: CSV, TSV or Parquet.")],
    expectations_file: Annotated[
        Path | None,
        typer.Option("--expectations", "-e", help="TOML expectations (default: from the version)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a new batch against a version's schema and expectations; exit 1 if it fails."""
    import shipyard.data as data
    from shipyard.errors import ValidationFailed

    version = data.get(ref)
    rules = (
        data.Expectations.load(expectations_file)
        if expectations_file
        else data.expectations_for(version)
    )
    report = data.validate(path, rules)
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.passed:
        raise ValidationFailed(
            f"{path} failed {len(report.failures)} of {len(report.checks)} checks against {ref}",
            report,
        )


def _print_report(report: ValidationReport) -> None:
    table = Table(
        "",
        "column",
        "check",
        "expected",
        "observed",
        title=f"{report.source} ({report.rows:,} rows)",
    )
    for check in report.checks:
        mark = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
        table.add_row(
            mark, _fmt(check.column), check.rule, _fmt(check.expected), _fmt(check.observed)
        )
    out.print(table)
    if report.passed:
        out.print(f"[green]passed[/] all {len(report.checks)} checks against {report.expectations}")


@data_app.command("split")
def split(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] to split.")],
    ratios: Annotated[
        list[str] | None,
        typer.Option(
            "--ratio", help="PART=SHARE, repeated (default train=0.7 validation=0.15 test=0.15)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the shuffle: same seed, same parts.")] = 0,
    by_time: Annotated[
        str | None,
        typer.Option("--by-time", help="Split on this time column instead of at random."),
    ] = None,
    cutoffs: Annotated[
        list[str] | None, typer.Option("--cutoff", help="Time cutoff, repeated, increasing.")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Name parts PREFIX-PART (default: the dataset's name).")
    ] = None,
) -> None:
    """Split a version into train/validation/test versions, reproducibly, with lineage."""
    import shipyard.data as data
    from shipyard.errors import InvalidInput

    shares = None
    if ratios:
        pairs = _parse_pairs(ratios, "--ratio", "train=0.8")
        try:
            shares = {part: float(share) for part, share in pairs.items()}
        except ValueError:
            raise InvalidInput(f"--ratio shares must be numbers, got {ratios}") from None
    parts = data.split(
        data.get(ref), shares, seed=seed, by_time=by_time, cutoffs=cutoffs, prefix=prefix
    )
    for part, version in parts.items():
        state = "added" if version.created else "unchanged"
        out.print(f"{part:>12}  {version.ref}  {version.num_rows:,} rows  ({state})")
