"""`shipyard quality ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

quality_app = typer.Typer(
    help="Model quality from delayed labels over time, per version, with label coverage; "
    "estimated (CBPE) until labels arrive.",
    no_args_is_help=True,
)

ModelArgument = Annotated[str, typer.Argument(help="The model's name.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Start: ISO 8601 (UTC unless it says), -6h (before now) or now."),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="End (excluded): ISO 8601, -1h or now; default now."),
]


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def _moment(text: str | None, option: str) -> datetime | None:
    """`now`, `-6h` (before now) or ISO 8601 (UTC when it has no offset)."""
    if text is None:
        return None
    from shipyard.errors import InvalidInput
    from shipyard.monitoring.quality import bucket_seconds

    now = datetime.now(UTC)
    if text.strip().lower() == "now":
        return now
    if text.strip().startswith("-"):
        try:
            return now - timedelta(seconds=bucket_seconds(text.strip()[1:]))
        except InvalidInput:
            raise InvalidInput(
                f"{option} {text!r}: a time before now is a minus and a duration such as -6h, "
                "-90m or -1d"
            ) from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is not a time: use now, -6h (before now) or ISO 8601 such as "
            "2024-05-01T09:00"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


@quality_app.command("show")
def show(
    model: ModelArgument,
    by: Annotated[str, typer.Option("--by", help="Time bucket: 15m, 1h, 1d...")] = "1h",
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Quality per time bucket and version: coverage, accuracy (or MAE), and the estimate."""
    from shipyard.monitoring.quality import quality

    points = quality(model, by=by, since=_moment(since, "--since"), until=_moment(until, "--until"))
    if as_json:
        _print_json([point.to_dict() for point in points])
        return
    if not points:
        out.print(f"no predictions of {escape(model)} in this window")
        return
    regression = all(point.task == "regressor" for point in points)
    table = Table(title=f"quality of {escape(model)} per {escape(by)}")
    for column in ("bucket", "version", "predictions", "labelled", "coverage"):
        table.add_column(column, justify="left" if column == "bucket" else "right")
    extra = ("MAE", "RMSE") if regression else ("accuracy", "estimated", "estimate error")
    for column in extra:
        table.add_column(column, justify="right")
    for point in points:
        values = (
            (_number(point.mae), _number(point.rmse))
            if regression
            else (
                _share(point.accuracy),
                _share(point.estimated_accuracy),
                _number(point.estimate_error, signed=True),
            )
        )
        table.add_row(
            f"{point.start:%Y-%m-%d %H:%M}",
            str(point.version),
            str(point.predictions),
            str(point.labelled),
            _share(point.coverage),
            *values,
        )
    out.print(table)


@quality_app.command("estimate")
def estimate(
    model: ModelArgument,
    since: SinceOption = None,
    until: UntilOption = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Default: the version that answered most.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="A dataset version (NAME@N) to calibrate on."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Estimate a classifier's accuracy before labels arrive (CBPE), and store it."""
    from shipyard.monitoring.quality import estimate as run_estimate

    found = run_estimate(
        model,
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        version=version,
        reference=reference,
    )
    if as_json:
        _print_json(found.to_dict())
        return
    low, high = found.interval
    out.print(
        f"{escape(model)}@{found.version}: estimated accuracy {_share(found.estimate)} "
        f"(95% {_share(low)}..{_share(high)}) over {found.predictions} predictions from "
        f"{found.window_start:%Y-%m-%d %H:%M} to {found.window_end:%Y-%m-%d %H:%M} UTC; "
        f"calibrated on: {escape(found.calibration)}; stored as estimate {found.id}"
    )


@quality_app.command("check")
def check(
    model: ModelArgument,
    limit: Annotated[int, typer.Option("--limit", help="The newest estimates to check.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Stored estimates against the labels that have arrived since."""
    from shipyard.monitoring.quality import check_estimates

    checks = check_estimates(model, limit=limit)
    if as_json:
        _print_json([item.to_dict() for item in checks])
        return
    if not checks:
        out.print(f"no stored estimates for {escape(model)}: run `shipyard quality estimate`")
        return
    table = Table(title=f"accuracy estimates of {escape(model)} against the labels")
    for column in ("window", "version", "estimate", "95% interval", "labelled", "coverage",
                   "realised", "error", "inside"):  # fmt: skip
        table.add_column(column, justify="left" if column == "window" else "right")
    for item in checks:
        found = item.estimate
        inside = {True: "[green]yes[/]", False: "[red]no[/]", None: "pending"}
        table.add_row(
            f"{found.window_start:%Y-%m-%d %H:%M}..{found.window_end:%H:%M}",
            str(found.version),
            _share(found.estimate),
            f"{_share(found.interval[0])}..{_share(found.interval[1])}",
            str(item.labelled),
            _share(item.coverage),
            _share(item.realised),
            _number(item.error, signed=True),
            inside[item.within_interval],
        )
    out.print(table)
