"""`shipyard runs ...`: tracked runs from the command line: list, show, compare, search."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.store.models import EnvironmentRecord
    from shipyard.tracking import RunInfo

runs_app = typer.Typer(
    help="Tracked runs: list, show, compare and search them.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LimitOption = Annotated[int, typer.Option("--limit", "-l", help="At most this many runs.")]
RunArgument = Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")]

STATUS_STYLES = {"finished": "green", "failed": "bold red", "running": "yellow", "killed": "red"}
SHORT_ID = 12  # like git's short hashes: enough to be unique, short enough to type
DIFFERS = "*"


# -- formatting -------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(_jsonable(value), default=str))


def _jsonable(value: Any) -> Any:
    """Non-finite floats as strings: NaN and Infinity are not JSON that other tools read."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _fmt(value: Any) -> str:
    """A cell: `-` for nothing, numbers to 6 significant digits, text escaped for Rich."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return escape(value)
    return escape(json.dumps(value) if isinstance(value, list | dict) else str(value))


def _param(value: Any) -> str:
    """A parameter as logged: strings bare, anything else as JSON, so 3 and 3.0 look apart."""
    return escape(value if isinstance(value, str) else json.dumps(value))


def _status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'default')}]{status}[/]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover - the loop always returns


def _summary(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "kind": run.kind,
        "pipeline": run.pipeline,
        "user": run.user,
        "started_at": run.started_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration_s": run.duration_s,
        "params": run.params,
        "metrics": run.metrics,
        "tags": run.tags,
    }


def _print_runs(found: list[RunInfo], empty: str) -> None:
    if not found:
        out.print(empty)
        return
    table = Table("run", "name", "status", "pipeline", "user", "started (UTC)", "duration")
    table.columns[0].no_wrap = True
    for run in found:
        table.add_row(
            run.id[:SHORT_ID],
            _fmt(run.name or None),
            _status(run.status),
            _fmt(run.pipeline),
            _fmt(run.user),
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            _duration(run.duration_s),
        )
    out.print(table)


# -- commands ---------------------------------------------------------------------------------


@runs_app.command("list")
def list_(
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this state: running, finished, failed...")
    ] = None,
    limit: LimitOption = 50,
    as_json: JsonFlag = False,
) -> None:
    """The newest runs first."""
    from shipyard.tracking import list_runs

    found = list_runs(pipeline=pipeline, status=status, limit=limit)
    if as_json:
        _print_json([_summary(run) for run in found])
        return
    filtered = pipeline is not None or status is not None
    _print_runs(
        found,
        "no runs match these filters"
        if filtered
        else "no runs yet: start one with `shipyard.start_run()` or `shipyard run`",
    )


@runs_app.command("search")
def search(
    query: Annotated[
        str,
        typer.Argument(
            help="A filter such as \"metrics.auc > 0.9 and params.model = 'rf'\" "
            "(see `shipyard.tracking.search`)."
        ),
    ],
    limit: LimitOption = 100,
    as_json: JsonFlag = False,
) -> None:
    """The newest runs that match a query: metrics.X, params.X, tags.X and attributes."""
    from shipyard.tracking import search_runs

    found = search_runs(query, limit=limit)
    if as_json:
        _print_json([_summary(run) for run in found])
        return
    _print_runs(found, f"no runs match {escape(query)}")


@runs_app.command("show")
def show(run_id: RunArgument, as_json: JsonFlag = False) -> None:
    """Everything recorded about one run: code, environment, params, metrics, artifacts."""
    from shipyard.tracking import get_run
    from shipyard.tracking.runs import get_environment, metric_history

    run = get_run(run_id)
    environment = get_environment(run.environment_id)
    points = {key: len(metric_history(run.id, key)) for key in run.metrics}
    if as_json:
        _print_json(_details(run, environment, points))
        return
    for label, fact in _facts(run, environment):
        out.print(f"[bold]{label:>12}[/]  {fact}")
    _print_pairs("param", {key: _param(value) for key, value in run.params.items()})
    metrics = Table("metric", "last", "points", title="metrics", title_justify="left")
    for key, last in run.metrics.items():
        metrics.add_row(_fmt(key), _fmt(last), str(points[key]))
    if run.metrics:
        out.print(metrics)
    _print_pairs("tag", {key: _fmt(value) for key, value in run.tags.items()})
    _print_artifacts(run)
    if run.error:
        out.print(f"[bold red]{'error':>12}[/]")
        out.print(escape(run.error.rstrip()), soft_wrap=True)


def _facts(run: RunInfo, environment: EnvironmentRecord) -> list[tuple[str, str]]:
    code = "unknown (not a git repository)"
    if run.code_commit:
        dirty = " (dirty: uncommitted changes were recorded)" if run.code_dirty else ""
        code = f"{run.code_commit[:SHORT_ID]}{dirty} in {_fmt(run.code_root)}"
    lock = "no lock file"
    if environment.lock_file:
        lock = f"{_fmt(environment.lock_file)} sha256 {(environment.lock_hash or '')[:SHORT_ID]}"
    facts = [
        ("run", run.id),
        ("status", _status(run.status)),
        ("name", _fmt(run.name or None)),
        ("kind", _fmt(run.kind)),
        ("pipeline", _fmt(run.pipeline)),
        ("source", _fmt(run.source)),
        ("user", _fmt(run.user)),
        ("started", f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("ended", f"{run.ended_at:%Y-%m-%d %H:%M:%S} UTC" if run.ended_at else "-"),
        ("duration", _duration(run.duration_s)),
        ("seed", str(run.seed)),
        ("code", code),
        ("python", f"{_fmt(environment.python)} on {_fmt(environment.platform)}"),
        ("packages", f"{len(environment.packages)} installed; {lock}"),
        ("resumed from", _fmt(run.resumed_from)),
        ("reproduces", _fmt(run.reproduces)),
    ]
    optional = {"pipeline", "source", "resumed from", "reproduces"}
    return [(label, value) for label, value in facts if label not in optional or value != "-"]


def _details(
    run: RunInfo, environment: EnvironmentRecord, points: dict[str, int]
) -> dict[str, Any]:
    return {
        **_summary(run),
        "source": run.source,
        "seed": run.seed,
        "code": {
            "root": run.code_root,
            "commit": run.code_commit,
            "dirty": run.code_dirty,
            "patch": run.code_patch,
        },
        "environment": {
            "id": environment.id,
            "python": environment.python,
            "platform": environment.platform,
            "packages": len(environment.packages),
            "lock_file": environment.lock_file,
            "lock_hash": environment.lock_hash,
        },
        "metrics": {
            key: {"last": value, "points": points[key]} for key, value in run.metrics.items()
        },
        "artifacts": [
            {
                "direction": item.direction,
                "name": item.name,
                "kind": item.kind,
                "size": item.size,
                "digest": item.digest,
                "step": item.step,
            }
            for item in run.artifacts
        ],
        "resumed_from": run.resumed_from,
        "reproduces": run.reproduces,
        "error": run.error,
    }


def _print_pairs(what: str, pairs: dict[str, str]) -> None:
    if not pairs:
        return
    table = Table(what, "value", title=f"{what}s", title_justify="left")
    for key, value in pairs.items():
        table.add_row(escape(key), value)
    out.print(table)


def _print_artifacts(run: RunInfo) -> None:
    if not run.artifacts:
        return
    table = Table("", "name", "kind", "size", "sha256", title="artifacts", title_justify="left")
    for item in run.artifacts:
        table.add_row(
            "in" if item.direction == "input" else "out",
            _fmt(item.name),
            _fmt(item.kind),
            _size(item.size),
            item.digest[:SHORT_ID],
        )
    out.print(table)


@runs_app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids or prefixes.")],
    as_json: JsonFlag = False,
) -> None:
    """Params and metrics of runs side by side; rows whose values differ are marked."""
    from shipyard.errors import InvalidInput
    from shipyard.tracking import get_run

    if len(run_ids) < 2:
        raise InvalidInput(f"compare needs at least two runs; got {len(run_ids)}")
    found = [get_run(run_id) for run_id in run_ids]
    rows = _comparison_rows(found)
    if as_json:
        _print_json(
            {
                "runs": [{"id": run.id, "name": run.name} for run in found],
                "rows": [
                    {"key": key, "values": values, "differs": not _same(values)}
                    for key, values in rows
                ],
            }
        )
        return
    table = Table("", "key", *(f"{run.id[:SHORT_ID]}\n{escape(run.name)}" for run in found))
    table.columns[0].no_wrap = True
    for key, values in rows:
        differs = not _same(values)
        show_value = _param if key.startswith("params.") else _fmt
        table.add_row(
            DIFFERS if differs else "",
            escape(key),
            *("-" if value is None else show_value(value) for value in values),
            style="bold yellow" if differs else None,
        )
    out.print(table)
    differing = sum(1 for _, values in rows if not _same(values))
    if differing:
        out.print(f"[dim]{DIFFERS} values differ ({differing} of {len(rows)} rows)[/]")
    else:
        out.print("[dim]every param and metric is the same[/]")


def _comparison_rows(found: list[RunInfo]) -> list[tuple[str, list[Any]]]:
    """`params.*` rows, then `metrics.*` rows: one value per run, None where it has none."""
    rows: list[tuple[str, list[Any]]] = []
    for prefix, values_of in (("params", _params_of), ("metrics", _metrics_of)):
        keys = sorted({key for run in found for key in values_of(run)})
        rows.extend((f"{prefix}.{key}", [values_of(run).get(key) for run in found]) for key in keys)
    return rows


def _params_of(run: RunInfo) -> dict[str, Any]:
    return run.params


def _metrics_of(run: RunInfo) -> dict[str, Any]:
    return run.metrics


def _same(values: list[Any]) -> bool:
    """Whether every run shows the same value; two NaNs count as the same."""
    first = values[0]
    return all(_equal(first, value) for value in values[1:])


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)
